"""Shared command-line plumbing: turn known failures into one clear line and an exit code.

A user who passes a bad env id, an impossible config value or a corrupt checkpoint gets
``error: <what is wrong and how to fix it>`` on stderr and exit status 2 -- no traceback.
Unexpected exceptions keep their traceback (they are bugs, and the trace helps report them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from gumbel_ac.config import Config

T = TypeVar("T")

#: Exit status for user errors (bad input), as argparse uses.
USAGE_ERROR = 2


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is meant for the user.

    ``TrainingError`` is included only once the trainer is imported: only training raises it,
    and ``eval.py`` should not import (and depend on) the whole training stack to report a bad
    checkpoint path.
    """
    from gumbel_ac.checkpoint import CheckpointError
    from gumbel_ac.config import ConfigError
    from gumbel_ac.distributions import UnsupportedSpaceError
    from gumbel_ac.vector import UnknownEnvError

    errors: tuple[type[BaseException], ...] = (CheckpointError, ConfigError, UnsupportedSpaceError, UnknownEnvError)
    trainer = sys.modules.get("gumbel_ac.trainer")
    if trainer is not None:
        errors += (trainer.TrainingError,)
    return errors


def exit_status(exc: SystemExit) -> int:
    """The exit status a ``SystemExit`` stands for, as the interpreter would exit with it.

    ``None`` is 0; an int is itself; anything else (a message) is printed to stderr and is 1.
    """
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def guarded(fn: Callable[[], T]) -> T | int:
    """Run ``fn``; print a user error as one line and return ``USAGE_ERROR`` instead."""
    try:
        return fn()
    except user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except ValueError as exc:  # e.g. '--device cuda' without a GPU, invalid estimator options
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR


def reflow_field_help() -> None:
    """Make ``--help`` reflow the Config field docstrings.

    tyro keeps a docstring's line breaks, so text wrapped at 100 columns in config.py came
    out broken mid-sentence. Single newlines are joined (blank-line paragraph breaks kept).
    This wraps a private tyro function; if tyro renames it the help is merely less tidy.
    """
    import re

    try:
        from tyro import _docstrings
    except ImportError:  # pragma: no cover - a different tyro layout
        return
    original = getattr(_docstrings, "get_field_docstring", None)
    if original is None or getattr(original, "_gumbel_ac_reflow", False):
        return

    def joined(*args: object, **kwargs: object) -> str | None:
        text = original(*args, **kwargs)
        return None if text is None else re.sub(r"(?<!\n)\n(?!\n)", " ", text)

    joined._gumbel_ac_reflow = True  # type: ignore[attr-defined]
    _docstrings.get_field_docstring = joined


def run_cli(config: Config) -> int:
    """Entry point of ``train.py``: train (each seed in turn), map the outcome to an exit status."""
    from gumbel_ac.trainer import train_seeds

    result = guarded(lambda: train_seeds(config))
    return result if isinstance(result, int) else 0
