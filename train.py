"""Train a Gumbel-Softmax actor-critic: ``python train.py --help`` lists every option.

    python train.py                                   # CartPole-v1, gumbel-st, seed 0
    python train.py --env Acrobot-v1 --estimator score --seed 3 --track
    python train.py --resume runs/<name>              # continue a stopped or killed run
    python train.py --resume runs/<name> --total-steps 200000   # ... and train it longer

Writes ``runs/<run-name>/`` (config.json, metrics.jsonl, tensorboard/, checkpoints/, best/); evaluate it with
``python eval.py runs/<run-name>``. Bad input exits non-zero with one line saying what to fix.
With ``--resume`` the run's saved config is the starting point: other flags override it,
and only the ones that do not change the experiment are accepted (docs/resume.md).
"""

from __future__ import annotations

import dataclasses
import sys

import tyro

from gumbel_ac.cli import exit_status, guarded, named_fields, one_line_parse_errors, reflow_field_help, run_cli
from gumbel_ac.config import Config


def _resume_arg(argv: list[str]) -> str | None:
    """The value of ``--resume`` in ``argv`` (either ``--resume X`` or ``--resume=X``)."""
    for i, arg in enumerate(argv):
        if arg == "--resume" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--resume="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), train, and return the exit status.

    The status (0 ok, 2 bad input) is returned, never raised, so tests and other Python code
    can call ``main([...])`` in-process instead of starting an interpreter.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    default: Config | None = None
    resume = _resume_arg(args)
    if resume and "-h" not in args and "--help" not in args:
        # The run's own config becomes the flags' defaults, so `--resume X --total-steps N`
        # changes exactly the flags given.
        from gumbel_ac.checkpoint import saved_config

        loaded = guarded(lambda: saved_config(resume))
        if isinstance(loaded, int):
            return loaded
        default = loaded
    reflow_field_help()
    try:
        with one_line_parse_errors():  # tyro's multi-line error box becomes one `error:` line
            config = tyro.cli(Config, args=args, default=default, description=__doc__)
    except SystemExit as exc:  # --help (0) or a flag tyro cannot parse (2, message already printed)
        return exit_status(exc)
    if resume and default is not None:
        # Exactly the flags that changed a value are overrides (the rest are the run's own),
        # the same rule as resume_config() from Python.
        from gumbel_ac.resume import resume_config

        named = {
            f.name: getattr(config, f.name)
            for f in dataclasses.fields(Config)
            if f.name != "resume" and getattr(config, f.name) != getattr(default, f.name)
        }
        resumed = guarded(lambda: resume_config(resume, **named))
        if isinstance(resumed, int):
            return resumed
        config = resumed
    else:
        config = config.naming(named_fields(args))  # the preset fills in only the flags not given
    return run_cli(config)


if __name__ == "__main__":
    sys.exit(main())
