"""Evaluate a policy: returns of whole episodes, and GIFs of one.

Evaluation runs ``episodes`` environments side by side, one episode each, and stops when all
have finished (the first episode of each env counts; later ones are discarded), so it costs
one batched rollout. It uses the same env adapters as training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gumbel_ac.agent import Agent
from gumbel_ac.vector import make_env

#: Hard cap on evaluation length, for envs without a time limit.
MAX_EVAL_STEPS = 100_000


@torch.no_grad()
def evaluate(
    agent: Agent,
    env_id: str,
    *,
    episodes: int = 10,
    seed: int = 0,
    deterministic: bool = True,
    device: torch.device | str = "cpu",
    env_kwargs: dict[str, Any] | None = None,
) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes (float64 array)."""
    env = make_env(env_id, num_envs=episodes, device=device, **(env_kwargs or {}))
    try:
        generator = torch.Generator(device=torch.device(device)).manual_seed(seed + 10_007)
        obs = env.reset(seed=seed)
        returns = torch.zeros(episodes, dtype=torch.float64, device=device)
        finished = torch.zeros(episodes, dtype=torch.bool, device=device)
        for _ in range(MAX_EVAL_STEPS):
            action = agent.act(obs, deterministic=deterministic, generator=generator)
            step = env.step(action)
            newly = step.episode_done & ~finished
            returns = torch.where(newly, step.episode_return.double(), returns)
            finished |= step.episode_done
            obs = step.obs
            if bool(finished.all()):
                break
        else:
            raise RuntimeError(f"evaluation on {env_id} did not finish within {MAX_EVAL_STEPS} steps")
        return returns.cpu().numpy()
    finally:
        env.close()


@torch.no_grad()
def record_gif(
    agent: Agent,
    env_id: str,
    path: str | Path,
    *,
    seed: int = 0,
    deterministic: bool = True,
    max_steps: int = 1000,
    fps: int = 30,
    env_kwargs: dict[str, Any] | None = None,
) -> float:
    """Render one episode to a GIF at ``path``; returns the episode's return.

    Raises ValueError if the env cannot render ``rgb_array`` frames.
    """
    import imageio.v2 as imageio

    try:
        env = make_env(env_id, num_envs=1, device="cpu", render_mode="rgb_array", **(env_kwargs or {}))
    except Exception as exc:  # gymnasium raises various errors for unsupported render modes
        raise ValueError(f"{env_id} cannot render rgb_array frames for a GIF: {exc}") from None
    try:
        generator = torch.Generator().manual_seed(seed + 10_007)
        obs = env.reset(seed=seed)
        frames = []
        total = 0.0
        for _ in range(max_steps):
            frame = env.render()
            if isinstance(frame, (list, tuple)):
                frame = frame[0]
            if frame is None:
                raise ValueError(f"{env_id} returned no frame in rgb_array mode; it cannot make a GIF")
            frames.append(np.asarray(frame))
            step = env.step(agent.act(obs, deterministic=deterministic, generator=generator))
            total += float(step.reward[0])
            obs = step.obs
            if bool(step.episode_done[0]):
                break
        imageio.mimsave(str(path), frames, duration=1.0 / fps, loop=0)  # type: ignore[arg-type]  # ndarray frames
        return total
    finally:
        env.close()
