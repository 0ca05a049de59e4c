"""The training loop on batched torch envs never synchronizes with the host per iteration.

How it is proved: every Python-level way to pull a value off a tensor (``item``, ``cpu``,
``tolist``, ``numpy``, ``__bool__``, ``__float__``, ``__int__``, ``__index__``, ``nonzero``)
is wrapped with a counter, and the same training run is done for T and for 3T env steps,
with logging, evaluation and intermediate checkpoints pushed past the end. Set-up and the
final flush/checkpoint cost a fixed number of reads; if the loop read anything per
iteration, the longer run would count more. On CUDA the same comparison counts the
warnings of ``torch.cuda.set_sync_debug_mode("warn")``, which sees syncs made inside C++
too.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import gumbel_ac.envs  # noqa: F401  (part of the package: registers the gumbel_ac/ env ids)
from gumbel_ac.config import Config
from gumbel_ac.trainer import train

_GUARDED = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "nonzero")


def _count_reads(monkeypatch: pytest.MonkeyPatch, fn: Callable[[], Any]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for name in _GUARDED:
        original = getattr(torch.Tensor, name)

        def wrapper(self: torch.Tensor, *args: Any, __o: Any = original, __n: str = name, **kw: Any) -> Any:
            counts[__n] += 1
            return __o(self, *args, **kw)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    try:
        fn()
    finally:
        monkeypatch.undo()
    return counts


def _config(tmp: Path, steps: int, device: str, estimator: str) -> Config:
    return Config(
        env="gumbel_ac/CartPole-v1",
        estimator=estimator,
        device=device,  # type: ignore[arg-type]
        total_steps=steps,
        num_envs=64,
        learning_starts=256,
        batch_size=64,
        eval_every=0,
        final_eval_episodes=0,
        checkpoint_every=0,
        log_every=10**9,
        progress=False,
        runs_dir=str(tmp),
        run_name=f"fast{steps}",
    )


@pytest.mark.parametrize("estimator", ["gumbel-st", "score", "exact"])
def test_no_host_reads_per_iteration_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, estimator: str) -> None:
    short = _count_reads(monkeypatch, lambda: train(_config(tmp_path, 64 * 10, "cpu", estimator)))
    long = _count_reads(monkeypatch, lambda: train(_config(tmp_path, 64 * 30, "cpu", estimator)))
    assert long == short, f"reads grew with the number of iterations: {short} -> {long}"


def test_counting_guard_catches_a_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard is not blind: a loop that calls .item() each iteration is counted."""
    x = torch.ones(3)
    counts = _count_reads(monkeypatch, lambda: [x.sum().item() for _ in range(7)])
    assert counts["item"] == 7


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("estimator", ["gumbel-st", "score", "exact"])
def test_no_device_syncs_in_the_loop_cuda(tmp_path: Path, estimator: str) -> None:
    """No host sync in the hot loop: rollout and update run under set_sync_debug_mode("error")
    (a sync there stalls the GPU pipeline every iteration; docs/performance.md, "No host sync in the loop")."""
    config = _config(tmp_path, 64 * 20, "cuda", estimator)
    config.debug_syncs = True
    result = train(config)
    assert result.train_seconds > 0
    assert torch.cuda.get_sync_debug_mode() == 0  # reset after the run


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_debug_syncs_catches_a_sync_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard is not blind: an ``.item()`` planted in the update raises, and the mode is reset."""
    from gumbel_ac.learner import Learner

    original = Learner.step

    def leaky_step(self: Learner, *args: Any, **kwargs: Any) -> Any:
        stats = original(self, *args, **kwargs)
        stats.critic_loss.item()
        return stats

    monkeypatch.setattr(Learner, "step", leaky_step)
    config = dataclasses.replace(_config(tmp_path, 64 * 20, "cuda", "gumbel-st"), debug_syncs=True)
    with pytest.raises(RuntimeError, match="synchroniz"):
        train(config)
    assert torch.cuda.get_sync_debug_mode() == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_no_device_syncs_per_iteration_cuda(tmp_path: Path) -> None:
    """Also from the outside: sync warnings of the whole run do not grow with its length."""

    def syncs(steps: int) -> int:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train(_config(tmp_path, steps, "cuda", "gumbel-st"))
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    syncs(64 * 10)  # first run in the process: one-time CUDA/cuBLAS initialisation syncs
    assert syncs(64 * 30) == syncs(64 * 10)


def test_debug_syncs_is_a_no_op_on_cpu(tmp_path: Path) -> None:
    config = _config(tmp_path, 64 * 10, "cpu", "gumbel-st")
    config.debug_syncs = True
    assert train(config).train_seconds > 0
