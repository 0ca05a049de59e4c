"""Train a Gumbel-Softmax actor-critic: ``python train.py --help`` lists every option.

    python train.py                                   # CartPole-v1, gumbel-st, seed 0
    python train.py --env Acrobot-v1 --estimator score --seed 3 --track

Writes ``runs/<run-name>/`` (config.json, metrics.jsonl, checkpoints/); evaluate it with
``python eval.py runs/<run-name>``. Bad input exits non-zero with one line saying what to fix.
"""

from __future__ import annotations

import sys

import tyro

from gumbel_ac.cli import run_cli
from gumbel_ac.config import Config


def main(argv: list[str] | None = None) -> int:
    config = tyro.cli(Config, args=argv, description=__doc__)
    return run_cli(config)


if __name__ == "__main__":
    sys.exit(main())
