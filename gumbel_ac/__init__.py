"""gumbel_ac: discrete-action actor-critic with straight-through Gumbel-Softmax actions.

The public API (imported lazily so ``import gumbel_ac`` stays light and never pulls in
wandb, SB3 or the batched envs):

    from gumbel_ac import Config, train, train_seeds, Learner, load_run, evaluate
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Config", "train", "train_seeds", "Learner", "load_run", "evaluate", "ESTIMATORS", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from gumbel_ac.checkpoint import load_run
    from gumbel_ac.config import Config
    from gumbel_ac.estimators import ESTIMATORS
    from gumbel_ac.evaluation import evaluate
    from gumbel_ac.learner import Learner
    from gumbel_ac.trainer import train, train_seeds

_LAZY = {
    "Config": "gumbel_ac.config",
    "train": "gumbel_ac.trainer",
    "train_seeds": "gumbel_ac.trainer",
    "Learner": "gumbel_ac.learner",
    "load_run": "gumbel_ac.checkpoint",
    "evaluate": "gumbel_ac.evaluation",
    "ESTIMATORS": "gumbel_ac.estimators",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gumbel_ac' has no attribute {name!r}")
