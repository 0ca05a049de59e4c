"""Data-parallel training: CPU, gloo, two ranks.

- one all-reduced step of two ranks on two half batches equals one single-process step on
  the concatenated batch (gradient and parameters, float tolerance), and the two ranks end
  bit-identical (tested at the ``Learner.step`` level with two in-process gloo ranks);
- ``torchrun --nproc_per_node=2 train.py``: after N updates every rank holds the same
  parameters, Adam moments and target critic bit for bit; rank 0 alone writes the run
  folder and its checkpoint loads like a single-process one; resume works;
- a rank that raises makes torchrun exit non-zero within a bounded time, the error shown;
  a rank that hangs makes the others time out (``--dist-timeout-s``) instead of waiting.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

import gumbel_ac.envs  # noqa: F401  (part of the package: registers the gumbel_ac/ env ids)
from gumbel_ac.agent import make_agent
from gumbel_ac.checkpoint import list_checkpoints, load_run
from gumbel_ac.distributed import make_grad_hook
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.learner import Learner, make_estimator
from gumbel_ac.logger import read_metrics
from gumbel_ac.losses import Batch

ROOT = Path(__file__).resolve().parents[1]
OBS_DIM, ACTIONS, HALF = 4, 3, 16


# --- one step at the losses.update level ---------------------------------------------------


def _global_batch() -> Batch:
    g = torch.Generator().manual_seed(123)
    n = 2 * HALF
    return Batch(
        obs_BD=torch.randn(n, OBS_DIM, generator=g),
        action_BH=torch.randint(0, ACTIONS, (n, 1), generator=g),
        reward_B=torch.randn(n, generator=g),
        next_obs_BD=torch.randn(n, OBS_DIM, generator=g),
        terminated_B=torch.rand(n, generator=g) < 0.2,
    )


def _one_step(batch: Batch, grad_hook: Any = None) -> dict[str, torch.Tensor]:
    """One ``update`` from a fixed initialization; the flat parameters and reduced gradient."""
    import gymnasium as gym

    torch.manual_seed(0)
    agent = make_agent(
        obs_dim=OBS_DIM,
        spec=ActionSpec.from_space(gym.spaces.Discrete(ACTIONS)),
        hidden_sizes=(32, 32),
        alpha=0.1,
        target_entropy_ratio=0.3,
    )
    # "exact" draws no noise: the split and the concatenated batch see the same maths.
    learner = Learner(
        agent,
        estimator=make_estimator("exact"),
        actor_lr=1e-3,
        critic_lr=3e-3,
        alpha_lr=3e-3,
        autotune_alpha=True,
        gamma=0.99,
        target_update_rate=0.2,
        grad_hook=grad_hook,
    )
    learner.step(batch, temperature=1.0, generator=None)
    return {
        "param": learner.flat_param.clone(),
        "grad": learner.flat_grad.clone(),
        "target": learner.flat_critic_target.clone(),
        "log_alpha": agent.log_alpha.detach().reshape(1).clone(),
    }


def _rank_worker(rank: int, store_path: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    store = dist.FileStore(store_path, 2)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2)
    try:
        full = _global_batch()
        rows = slice(rank * HALF, (rank + 1) * HALF)
        mine = Batch(
            *(getattr(full, f)[rows] for f in ("obs_BD", "action_BH", "reward_B", "next_obs_BD", "terminated_B"))
        )
        out = _one_step(mine, grad_hook=make_grad_hook(2))
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_allreduced_step_matches_single_process_step_on_concatenated_batch(tmp_path: Path) -> None:
    mp.spawn(_rank_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    single = _one_step(_global_batch())  # global batch = 2 x per-rank batch
    for key in r0:
        assert torch.equal(r0[key], r1[key]), f"ranks differ in {key}"
    # The reduced gradient is the mean-over-the-global-batch gradient (a sum instead of a mean
    # would be 2x off; Adam's first step alone would hide that, hence the gradient check).
    torch.testing.assert_close(r0["grad"], single["grad"], rtol=1e-5, atol=1e-6)
    for key in ("param", "target", "log_alpha"):
        torch.testing.assert_close(r0[key], single[key], rtol=1e-5, atol=1e-6)
    assert not torch.equal(single["log_alpha"], torch.full((1,), torch.log(torch.tensor(0.1)).item()))


# --- torchrun end to end --------------------------------------------------------------------

RUN_FLAGS = [
    "--env",
    "gumbel_ac/CartPole-v1",
    "--num-envs",
    "8",
    "--learning-starts",
    "64",
    "--batch-size",
    "32",
    "--log-every",
    "160",
    "--eval-every",
    "0",
    "--final-eval-episodes",
    "0",
    "--checkpoint-every",
    "320",
    "--no-progress",
    "--hidden-sizes",
    "32",
    "32",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(args: list[str], hooks: list[str], timeout: float) -> tuple[int, str, float]:
    """``torchrun`` of train.py's main through tests/dist_launch.py, which installs the test-only
    ``hooks`` (``--dump DIR``, ``--fault RANK:UPDATE:MODE``) from outside the package."""
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=localhost:{_free_port()}",
        "--nnodes=1",
        "--monitor-interval=0.5",
        str(ROOT / "tests" / "dist_launch.py"),
        *hooks,
        "--",
        *args,
    ]
    tic = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - tic


def _dumps(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return load_file(str(folder / "rank0.safetensors")), load_file(str(folder / "rank1.safetensors"))


def test_torchrun_ranks_stay_bit_identical_and_resume(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    rc, out, _ = _torchrun(
        [*RUN_FLAGS, "--total-steps", "640", "--runs-dir", str(tmp_path), "--run-name", "d"],
        ["--dump", str(dump)],
        timeout=120,
    )
    assert rc == 0, out
    r0, r1 = _dumps(dump)
    assert set(r0) == {"flat_param", "flat_critic_target", "log_alpha", "exp_avg", "exp_avg_sq"}
    for key in r0:
        assert torch.equal(r0[key], r1[key]), f"ranks differ in {key}"
    assert r0["exp_avg_sq"].abs().sum() > 0  # updates happened
    # Rank 0 wrote the run folder: global steps count both ranks' envs (2 x 8 per iteration).
    rows = [r for r in read_metrics(tmp_path / "d" / "metrics.jsonl") if "charts/updates" in r]
    assert [r["global_step"] for r in rows] == [160, 320, 480, 640]
    assert sum(r["charts/updates"] for r in rows) == (640 - 64) // 16
    assert "charts/episodic_return" in rows[-1]
    final = list_checkpoints(tmp_path / "d")[-1]
    loaded = load_run(final)  # the single-process loader (eval.py's) reads it unchanged
    assert torch.equal(
        torch.cat([p.detach().reshape(-1) for p in loaded.agent.actor.parameters()]),
        r0["flat_param"][: sum(p.numel() for p in loaded.agent.actor.parameters())],
    )

    # Resume with a longer budget: rank 0 restores its state, rank 1 re-seeds; still identical.
    rc, out, _ = _torchrun(
        ["--resume", str(tmp_path / "d"), "--total-steps", "960"], ["--dump", str(dump)], timeout=120
    )
    assert rc == 0, out
    s0, s1 = _dumps(dump)
    for key in s0:
        assert torch.equal(s0[key], s1[key]), f"ranks differ in {key} after resume"
    assert not torch.equal(s0["flat_param"], r0["flat_param"])
    steps = [r["global_step"] for r in read_metrics(tmp_path / "d" / "metrics.jsonl") if "charts/updates" in r]
    assert steps == [160, 320, 480, 640, 800, 960]


@pytest.mark.parametrize("mode", ["raise", "hang"])
def test_failing_rank_makes_torchrun_exit_nonzero_in_bounded_time(tmp_path: Path, mode: str) -> None:
    rc, out, seconds = _torchrun(
        [
            *RUN_FLAGS,
            "--total-steps",
            "100000",
            "--runs-dir",
            str(tmp_path),
            "--run-name",
            "f",
            "--dist-timeout-s",
            "5",
        ],
        ["--fault", f"1:3:{mode}"],
        timeout=90,
    )
    assert rc != 0, out
    assert seconds < 60, f"took {seconds:.0f} s"
    if mode == "raise":
        assert "injected failure on rank 1" in out, out[-3000:]
    else:  # rank 0 gave up waiting for the hung rank 1
        assert "timed out" in out.lower() or "timeout" in out.lower(), out[-3000:]
