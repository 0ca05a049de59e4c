"""rliable's interval estimates, reproducible.

``rliable.library.StratifiedBootstrap.update_indices`` (rliable 1.2) draws its resampling
indices from NumPy's *global* generator (``np.random.choice``), not from the ``random_state``
it is given (that one reaches ``arch``'s ``IIDBootstrap`` and is never used for the indices).
Passing ``random_state=np.random.RandomState(0)`` therefore does not fix the interval: two
calls in one process gave different bounds for the same scores. This wrapper seeds the global
generator for the call and puts its state back afterwards, so an interval depends only on the
scores, ``reps`` and ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np


def interval_estimates(
    score_dict: Mapping[str, np.ndarray],
    func: Callable[[np.ndarray], np.ndarray],
    *,
    reps: int,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``rliable.library.get_interval_estimates`` (percentile, 95%) with a fixed seed."""
    from rliable import library as rly  # type: ignore[import-not-found]

    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        return rly.get_interval_estimates(dict(score_dict), func, reps=reps)
    finally:
        np.random.set_state(saved)
