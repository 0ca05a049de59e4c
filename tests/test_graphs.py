"""--cuda-graphs: the pieces that make the update capturable, and the capture itself (CUDA).

On a CPU: the capturable Adam computes the same steps as the Python-scalar one, the on-device
replay sampler is uniform over the filled rows, and asking for graphs on a CPU falls back
with one message. On CUDA: a captured step replays exactly what the eager step computes,
fresh random numbers included, and training with graphs runs with no host sync.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gumbel_ac.agent import make_agent
from gumbel_ac.buffer import ReplayBuffer
from gumbel_ac.config import Config
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.graphs import CapturedStep
from gumbel_ac.learner import Learner, make_estimator
from gumbel_ac.optim import FlatAdam
from gumbel_ac.trainer import train

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _adam_pair(device: str) -> tuple[FlatAdam, FlatAdam]:
    gen = torch.Generator(device=device).manual_seed(0)
    init = torch.randn(50, generator=gen, device=device)
    pair = []
    for capturable in (False, True):
        param = init.clone()
        grad = torch.zeros_like(param)
        pair.append(FlatAdam(param, grad, [("a", 20, 1e-2), ("b", 30, 3e-3)], capturable=capturable))
    return pair[0], pair[1]


def test_capturable_adam_matches_python_scalar_adam() -> None:
    plain, captured = _adam_pair("cpu")
    gen = torch.Generator().manual_seed(1)
    for step in range(25):
        grad = torch.randn(50, generator=gen)
        for opt in (plain, captured):
            opt.lr_scale = 1.0 if step < 10 else 0.5  # a schedule change mid-way
            opt.flat_grad.copy_(grad)
            opt.step()
    torch.testing.assert_close(captured.flat_param, plain.flat_param, rtol=1e-6, atol=1e-7)
    assert captured.steps == plain.steps == 25


def test_capturable_adam_state_round_trips_into_plain_adam() -> None:
    plain, captured = _adam_pair("cpu")
    captured.flat_grad.fill_(0.5)
    for _ in range(3):
        captured.step()
    captured.lr_scale = 0.25
    plain.load_state_dict(captured.state_dict())
    assert plain.steps == 3 and plain.lr_scale == 0.25
    fresh, again = _adam_pair("cpu")
    again.load_state_dict(captured.state_dict())  # capturable <- capturable: the device scalars too
    assert again.steps == 3 and float(again._step_t) == 3.0 and float(again._lr_scale_t) == 0.25


def test_sample_on_device_is_uniform_over_filled_rows() -> None:
    buffer = ReplayBuffer(1000, obs_dim=1, num_heads=1, device="cpu")
    rows = torch.arange(10, dtype=torch.float32).unsqueeze(-1)
    buffer.add(rows, torch.zeros(10, 1, dtype=torch.long), torch.zeros(10), rows, torch.zeros(10, dtype=torch.bool))
    assert int(buffer.size_t) == 10
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(10)
    for _ in range(200):
        obs = buffer.sample_on_device(100, generator=gen).obs_BD.squeeze(-1).long()
        counts += torch.bincount(obs, minlength=10).float()
    assert counts.sum() == 20_000 and counts.min() > 0
    # Chi-square with 9 degrees of freedom: P(X > 27.9) = 0.001 for a uniform sampler.
    expected = 2_000.0
    assert float(((counts - expected) ** 2 / expected).sum()) < 27.9


def test_device_size_follows_every_way_the_size_changes() -> None:
    buffer = ReplayBuffer(8, obs_dim=2, num_heads=1, device="cpu")
    for n in (3, 4, 5):  # fills, then wraps around
        buffer.add(
            torch.ones(n, 2),
            torch.zeros(n, 1, dtype=torch.long),
            torch.zeros(n),
            torch.ones(n, 2),
            torch.zeros(n, dtype=torch.bool),
        )
        assert int(buffer.size_t) == buffer.size == min(sum(range(3, n + 1)), 8)
    state = buffer.state_dict()
    other = ReplayBuffer(8, obs_dim=2, num_heads=1, device="cpu")
    other.load_state_dict(state)
    assert int(other.size_t) == other.size == 8
    buffer.save_cap = 5  # the newest 5 rows: loaded through add()
    other.load_state_dict(buffer.state_dict())
    assert int(other.size_t) == other.size == 5


def test_cuda_graphs_on_cpu_falls_back_with_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Config(
        env="gumbel_ac/CartPole-v1",
        device="cpu",
        total_steps=640,
        num_envs=16,
        learning_starts=128,
        eval_every=0,
        final_eval_episodes=0,
        checkpoint_every=0,
        progress=False,
        runs_dir=str(tmp_path),
        run_name="g",
        cuda_graphs=True,
    )
    result = train(config)
    assert result.train_seconds > 0
    out = capsys.readouterr()
    assert (out.out + out.err).count("--cuda-graphs needs a CUDA device; running the update eagerly") == 1


def test_captured_step_disabled_runs_the_body_every_call() -> None:
    calls = []
    step = CapturedStep(lambda: calls.append(1), generators=[], enabled=False)
    for _ in range(5):
        step()
    assert len(calls) == 5 and not step.captured


# --- CUDA ---------------------------------------------------------------------------------


@needs_cuda
def test_captured_random_step_replays_like_eager() -> None:
    """Registered generators: each replay draws new numbers, the same ones eager code draws."""
    results = []
    for graphed in (False, True):
        gen = torch.Generator(device="cuda").manual_seed(0)
        x = torch.zeros(1000, device="cuda")
        # Bound late on purpose: the closure is called (and captured) within this iteration only.
        body = lambda: x.add_(torch.rand(1000, device="cuda", generator=gen))  # noqa: E731, B023
        step = CapturedStep(body, generators=[gen], enabled=graphed, warmup=2)
        for _ in range(6):
            step()
        torch.cuda.synchronize()
        assert step.captured == graphed
        results.append(x.clone())
    torch.testing.assert_close(results[1], results[0])


def _update_setup(seed: int, estimator: str) -> tuple[Learner, ReplayBuffer]:
    torch.manual_seed(seed)
    spec = ActionSpec([2])
    agent = make_agent(obs_dim=4, spec=spec, hidden_sizes=(64, 64), alpha=0.5, target_entropy_ratio=0.1).cuda()
    learner = Learner(
        agent,
        estimator=make_estimator(estimator),
        actor_lr=3e-3,
        critic_lr=3e-3,
        alpha_lr=3e-3,
        autotune_alpha=True,
        gamma=0.99,
        target_update_rate=0.2,
        capturable=True,
    )
    buffer = ReplayBuffer(1000, 4, 1, "cuda")
    gen = torch.Generator(device="cuda").manual_seed(seed)
    n = 500
    buffer.add(
        torch.randn(n, 4, device="cuda", generator=gen),
        torch.randint(0, 2, (n, 1), device="cuda", generator=gen),
        torch.rand(n, device="cuda", generator=gen),
        torch.randn(n, 4, device="cuda", generator=gen),
        torch.rand(n, device="cuda", generator=gen) < 0.05,
    )
    return learner, buffer


@needs_cuda
@pytest.mark.parametrize("estimator", ["gumbel-st", "score", "gumbel-rao"])
def test_captured_update_matches_eager_update(estimator: str) -> None:
    params = []
    for graphed in (False, True):
        learner, buffer = _update_setup(0, estimator)
        replay_gen = torch.Generator(device="cuda").manual_seed(1)
        update_gen = torch.Generator(device="cuda").manual_seed(2)
        temperature = torch.tensor(0.6, device="cuda")

        def body() -> None:  # used within this iteration only: late binding is what we want
            batch = buffer.sample_on_device(128, generator=replay_gen)  # noqa: B023
            learner.step(batch, temperature=temperature, generator=update_gen)  # noqa: B023

        step = CapturedStep(body, generators=[replay_gen, update_gen], enabled=graphed)
        for _ in range(12):
            step()
        torch.cuda.synchronize()
        assert step.captured == graphed
        assert learner.optimizer.steps == 12
        params.append(torch.cat([learner.flat_param, learner.flat_critic_target]).detach().clone())
    torch.testing.assert_close(params[1], params[0], rtol=1e-5, atol=1e-6)


@needs_cuda
def test_training_with_cuda_graphs_has_no_host_sync_in_the_loop(tmp_path: Path) -> None:
    config = Config(
        env="gumbel_ac/CartPole-v1",
        device="cuda",
        total_steps=64 * 30,
        num_envs=64,
        learning_starts=256,
        batch_size=64,
        eval_every=0,
        final_eval_episodes=0,
        checkpoint_every=0,
        log_every=64 * 10,
        progress=False,
        runs_dir=str(tmp_path),
        run_name="g",
        cuda_graphs=True,
        debug_syncs=True,
    )
    result = train(config)
    assert result.train_seconds > 0
    rows = (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()
    assert any('"losses/critic"' in row for row in rows)
