"""Cost of one gradient step on image observations: separate vs shared convolutional encoders.

    python benchmarks/encoder_cost.py                  # MinAtar 4x10x10 and Atari 4x84x84
    python benchmarks/encoder_cost.py --only minatar --blocks 5 --steps 50

``separate`` (the default, ``share_encoder=False``; SB3's off-policy default and CleanRL's
``sac_atari``): the actor and the critics each have an encoder, each trained by its own loss.
``shared`` (``--share-encoder``; SAC-AE, DrQ): the actor reads the critic's encoder detached,
so the actor's backward pass never runs through the convolutions and the conv weights are held
(with their Adam moments) once instead of twice.

One :meth:`gumbel_ac.learner.Learner.step` on a fixed uint8 minibatch (gumbel-st, the
default hyperparameters), both variants built from the same seed. The variants alternate in
blocks so machine load hits both alike; medians over blocks; ratio = separate / shared (> 1:
shared is faster). Prints torch's CPU capability (AVX2/AVX512): compare within one run only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from gumbel_ac.agent import make_agent
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.learner import Learner, make_estimator
from gumbel_ac.losses import Batch

#: name -> (image shape C, H, W; actions; batch size; hidden sizes; pixel scale): the MinAtar
#: grids (Breakout's 4 channels, 3 minimal actions) and Atari's stacked 84x84 frames (Breakout).
SHAPES: dict[str, tuple[tuple[int, int, int], int, int, tuple[int, ...], float]] = {
    "minatar": ((4, 10, 10), 3, 128, (128,), 1.0),
    "atari": ((4, 84, 84), 4, 32, (256,), 1.0 / 255.0),
}


def make_step(name: str, shared: bool, batch_size: int | None = None) -> Callable[[], object]:
    """A zero-argument callable running one full update of the ``name`` setting."""
    shape, actions, default_batch, hidden, scale = SHAPES[name]
    batch_size = batch_size or default_batch
    torch.manual_seed(0)
    obs_dim = shape[0] * shape[1] * shape[2]
    kind = "minatar" if name == "minatar" else "nature"
    agent = make_agent(
        obs_dim=obs_dim,
        spec=ActionSpec([actions]),
        hidden_sizes=hidden,
        alpha=0.05,
        target_entropy_ratio=0.1,
        encoder=kind,
        image_shape=shape,
        pixel_scale=scale,
        share_encoder=shared,
    )
    gen = torch.Generator().manual_seed(1)
    high = 2 if scale == 1.0 else 256
    batch = Batch(
        obs_BD=torch.randint(0, high, (batch_size, obs_dim), generator=gen, dtype=torch.uint8),
        action_BH=torch.randint(0, actions, (batch_size, 1), generator=gen),
        reward_B=torch.rand(batch_size, generator=gen),
        next_obs_BD=torch.randint(0, high, (batch_size, obs_dim), generator=gen, dtype=torch.uint8),
        terminated_B=torch.rand(batch_size, generator=gen) < 0.02,
    )
    learner = Learner(
        agent,
        estimator=make_estimator("gumbel-st"),
        actor_lr=3e-3,
        critic_lr=3e-3,
        alpha_lr=3e-3,
        autotune_alpha=True,
        gamma=0.995,
        target_update_rate=0.2,
    )
    return lambda: learner.step(batch, temperature=0.6, generator=gen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=list(SHAPES), nargs="+", default=list(SHAPES))
    parser.add_argument("--batch-size", type=int, default=None, help="override the setting's batch size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=7, help="timed blocks per variant")
    parser.add_argument("--steps", type=int, default=30, help="updates per block")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, CPU, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{args.threads} thread(s); median of {args.blocks} blocks of {args.steps} updates, interleaved"
    )
    print("\n| setting | batch | separate ms/update | shared ms/update | separate / shared |")
    print("|---|---:|---:|---:|---:|")
    for name in args.only:
        steps = {"separate": make_step(name, False, args.batch_size), "shared": make_step(name, True, args.batch_size)}
        for step in steps.values():  # warm-up
            for _ in range(3):
                step()
        times: dict[str, list[float]] = {v: [] for v in steps}
        for _ in range(args.blocks):
            for variant, step in steps.items():
                tic = time.perf_counter()
                for _ in range(args.steps):
                    step()
                times[variant].append((time.perf_counter() - tic) / args.steps * 1e3)
        sep, sha = statistics.median(times["separate"]), statistics.median(times["shared"])
        batch = args.batch_size or SHAPES[name][2]
        print(f"| {name} | {batch} | {sep:.2f} | {sha:.2f} | {sep / sha:.2f}x |")


if __name__ == "__main__":
    main()
