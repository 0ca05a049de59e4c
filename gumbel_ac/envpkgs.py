"""Env ids from other packages: ``module:EnvId``, the ALE and MinAtar registries, missing extras.

:func:`gumbel_ac.vector.make_env` and :func:`~gumbel_ac.vector.check_env_id` call
:func:`prepare_env_id` first, which makes an id from another package usable the way
``gymnasium.make`` would, and refuses it with one line when that package is missing:

* ``my_pkg:MyEnv-v0`` imports ``my_pkg`` (whose import registers ``MyEnv-v0``), as
  ``gymnasium.make`` does, and then names ``MyEnv-v0``;
* ``ALE/...`` ids import ``ale_py`` and register its envs (``gym.register_envs(ale_py)``);
  ``MinAtar/...`` ids call ``minatar.gym.register_envs()``;
* a package that is missing (ale-py, minatar, or Box2D when an env's module raises
  ``gymnasium.error.DependencyNotInstalled``: :func:`missing_dependency`) is a
  :class:`MissingEnvPackageError` whose message says what to install. It is an
  :class:`UnknownEnvError`, so the trainer and the command-line tools report it as one
  ``error:`` line with exit status 2 like any unknown id.

The install commands name this project's extras (``pip install -e ".[atari]"``,
pyproject.toml) beside the plain PyPI packages.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import gymnasium as gym


class UnknownEnvError(ValueError):
    """The env id is not registered with Gymnasium (or the package that registers it is missing)."""


class MissingEnvPackageError(UnknownEnvError):
    """The env needs a package that is not installed; the message says how to install it."""


@dataclass(frozen=True)
class EnvPackage:
    """A package that provides (or is needed by) some Gymnasium env ids."""

    #: What the user knows it as, in messages ("ale-py").
    name: str
    #: The project's extra (pyproject.toml) that installs it.
    extra: str
    #: The plain pip requirement(s), for installs outside a checkout of this project.
    pip: str
    #: The module whose absence means the package is missing.
    module: str

    def install_hint(self) -> str:
        return f'pip install {self.pip} (or pip install -e ".[{self.extra}]" in a gumbel_ac checkout)'


BOX2D = EnvPackage("Box2D", "box2d", '"gymnasium[box2d]"', "Box2D")
ATARI = EnvPackage("ale-py", "atari", '"ale-py>=0.9" opencv-python-headless', "ale_py")
MINATAR = EnvPackage("minatar", "minatar", "minatar==1.0.15", "minatar")

#: Id prefixes whose registry is imported on demand, and the package that provides it.
ALE_PREFIX = "ALE/"
MINATAR_PREFIX = "MinAtar/"


def split_module(env_id: str) -> tuple[str | None, str]:
    """``"my_pkg:MyEnv-v0"`` -> ``("my_pkg", "MyEnv-v0")``; an id without ``:`` -> ``(None, env_id)``."""
    if ":" not in env_id:
        return None, env_id
    module, _, name = env_id.rpartition(":")
    return module, name


def env_name(env_id: str) -> str:
    """The registry id named by ``env_id`` (without a ``module:`` prefix)."""
    return split_module(env_id)[1]


def _import_env_module(module: str, env_id: str) -> None:
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise UnknownEnvError(
            f"env id {env_id!r}: {module!r} is not a Python module name; the form is module:EnvId, e.g. my_pkg:MyEnv-v0"
        )
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise UnknownEnvError(
            f"env id {env_id!r}: cannot import module {module!r} ({exc}); the module:EnvId form imports "
            f"the module that registers EnvId: install {module!r} or put it on PYTHONPATH"
        ) from None


def _missing(package: EnvPackage, env_id: str, exc: BaseException) -> MissingEnvPackageError:
    """One line: what ``env_id`` needs and the install command.

    ``exc``'s own text is left out when it only says that this package is missing (e.g.
    ``No module named 'ale_py'``, or Gymnasium's "Box2D is not installed ..." with its own
    install advice); anything else (a missing OpenCV, a broken install) is kept in parentheses.
    """
    text = _one_line(exc)
    own = package.module in {getattr(exc, "name", None), (getattr(exc, "name", None) or "").split(".")[0]}
    if own or package.name.lower() in text.lower():
        return MissingEnvPackageError(
            f"env {env_id} needs {package.name}, which is not installed: {package.install_hint()}"
        )
    return MissingEnvPackageError(
        f"env {env_id} needs a package that is not installed ({text}): {package.install_hint()}"
    )


def _register_ale(env_id: str) -> None:
    try:
        ale_py = importlib.import_module("ale_py")
    except ImportError as exc:
        raise _missing(ATARI, env_id, exc) from None
    gym.register_envs(ale_py)  # importing ale_py registers; this keeps linters from calling it unused
    # ALE prints a two-line banner to the process's stderr for every emulator it starts (one per
    # env, and evaluation builds more); warnings and errors still show.
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Warning)


def _register_minatar(env_id: str) -> None:
    if any(key.startswith(MINATAR_PREFIX) for key in gym.registry):
        return  # registered already: registering again would warn about overriding each id
    try:
        minatar_gym = importlib.import_module("minatar.gym")
    except ImportError as exc:
        raise _missing(MINATAR, env_id, exc) from None
    minatar_gym.register_envs()


def prepare_env_id(env_id: str) -> str:
    """Import what ``env_id`` needs to be registered; return the registry id to make.

    Raises :class:`UnknownEnvError` when a ``module:`` prefix cannot be imported and
    :class:`MissingEnvPackageError` when ale-py or minatar is missing for their ids.
    """
    module, name = split_module(env_id)
    if module is not None:
        _import_env_module(module, env_id)
    if name.startswith(ALE_PREFIX):
        _register_ale(env_id)
    elif name.startswith(MINATAR_PREFIX):
        _register_minatar(env_id)
    return name


def package_for(env_id: str) -> EnvPackage | None:
    """The known package an id needs (Box2D, ale-py, minatar), or ``None``."""
    name = env_name(env_id)
    if name.startswith(ALE_PREFIX):
        return ATARI
    if name.startswith(MINATAR_PREFIX):
        return MINATAR
    spec = gym.registry.get(name)
    entry = spec.entry_point if spec is not None else None
    if isinstance(entry, str) and entry.startswith("gymnasium.envs.box2d"):
        return BOX2D
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def missing_dependency(env_id: str, exc: BaseException) -> MissingEnvPackageError:
    """The error for ``exc`` (``DependencyNotInstalled`` or an ``ImportError``) raised making ``env_id``.

    Known packages (:func:`package_for`) get their install command; any other env gets
    Gymnasium's own message (which names its extra, e.g. ``gymnasium[mujoco]``) on one line.
    """
    package = package_for(env_id)
    if package is not None:
        return _missing(package, env_id, exc)
    return MissingEnvPackageError(f"env {env_id} needs a package that is not installed: {_one_line(exc)}")
