"""Shared command-line plumbing: turn known failures into one clear line and an exit code.

A user who passes a bad env id, an impossible config value or a corrupt checkpoint gets
``error: <what is wrong and how to fix it>`` on stderr and exit status 2 -- no traceback.
Unexpected exceptions keep their traceback (they are bugs, and the trace helps report them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import sys
from collections.abc import Callable, Iterator, Sequence
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


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BOX_BORDER = "│┃|"
_RULE_CHARS = set("─━-═ ")


def _box_sections(text: str) -> list[list[str]]:
    """The text rows of a tyro error box, split at its horizontal rules (borders dropped).

    tyro draws the box with UTF-8 lines when stdout is UTF-8 (the title sits in the top
    border) and in ASCII otherwise (the title is a row of its own above the first rule).
    """
    sections: list[list[str]] = [[]]
    for raw in _ANSI_ESCAPE.sub("", text).splitlines():
        line = raw.strip()
        if not line or line[0] in "╭╰":  # UTF-8 top border (holds the title) or bottom border
            continue
        row = line.strip(_BOX_BORDER).strip()
        if row and set(row) <= _RULE_CHARS:
            sections.append([])
        elif row:
            sections[-1].append(row)
    return sections


def parse_error_line(text: str) -> str:
    """Reduce what tyro printed for a parse error (a multi-line box) to one message.

    The box's first section is the problem ("Error parsing --num-envs: invalid literal for
    int() ...", "Unrecognized options: --num-env"), wrapped over rows when long; later sections
    are argument help, "Arguments similar to X:" (kept as a did-you-mean) and a --help footer.
    Plain text without a box (another tyro version, argparse) gives its last line.
    """
    sections = _box_sections(text)
    if "╭" in text:  # UTF-8 box: the title is in the border, the problem comes first
        problem, rest = sections[0], sections[1:]
    elif len(sections) > 1:  # ASCII box: title row, rule, problem, ...
        problem, rest = sections[1], sections[2:]
    else:  # not a box: the last line is the message
        rows = sections[0]
        problem = [re.sub(r"^(?:\S+: )?error:\s*", "", rows[-1], flags=re.IGNORECASE)] if rows else []
        rest = []
    message = re.sub(r"^Error parsing ", "", " ".join(problem)).rstrip(" .;")
    if not message:
        return "could not parse the command line; --help lists the options"
    similar = [
        s[1].split()[0] for s in rest if len(s) > 1 and s[0].startswith(("Arguments similar to", "Perhaps you meant"))
    ]
    if similar:
        message += f" (did you mean {' or '.join(similar)}?)"
    return f"{message}; --help lists the options"


@contextlib.contextmanager
def one_line_parse_errors() -> Iterator[None]:
    """Turn tyro's parse-error box into one ``error: ...`` line on stderr (exit status kept).

    tyro draws a multi-line box for a bad flag and exits 2; every other user error here is
    one line. tyro has no public option for a plain message, so its stderr is captured for
    the parse and, on a non-zero exit, reduced by :func:`parse_error_line`. Anything else it
    wrote to stderr (warnings, or output before ``--help``'s exit 0) is passed through as is.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    except SystemExit as exc:
        if isinstance(exc.code, int) and exc.code != 0:
            print(f"error: {parse_error_line(captured.getvalue())}", file=sys.stderr)
        else:
            sys.stderr.write(captured.getvalue())
        raise
    except BaseException:
        sys.stderr.write(captured.getvalue())
        raise
    else:
        sys.stderr.write(captured.getvalue())


def named_fields(argv: Sequence[str]) -> frozenset[str]:
    """The Config fields a command line sets: ``--name value``, ``--name=value`` (dashes or
    underscores) and tyro's ``--no-name`` for a boolean. The preset fills in only the others,
    so ``--gamma 0.995`` on LunarLander-v3 keeps 0.995, the default, not the preset's 0.99."""
    from gumbel_ac.config import Config

    names = {f.name for f in dataclasses.fields(Config)}
    found: set[str] = set()
    for token in argv:
        if not token.startswith("--"):
            continue
        key = token[2:].split("=", 1)[0].replace("-", "_")
        if key in names:
            found.add(key)
        elif key.startswith("no_") and key[3:] in names:
            found.add(key[3:])
    return frozenset(found)


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
