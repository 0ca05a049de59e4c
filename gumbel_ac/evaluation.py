"""Evaluate a policy: returns of whole episodes, and GIFs of one.

Evaluation runs ``episodes`` environments side by side, one episode each, and stops when all
have finished (the first episode of each env counts; later ones are discarded), so it costs
one batched rollout. It uses the same env adapters as training.
"""

from __future__ import annotations

import math
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
            action = agent.act(obs, deterministic=deterministic, generator=generator, averaged=True)
            step = env.step(action)
            newly = step.episode_done & ~finished
            returns = torch.where(newly, step.episode_return.double(), returns)
            finished |= step.episode_done
            obs = step.obs
            if bool(finished.all()):
                break
        else:
            raise RuntimeError(
                f"evaluation on {env_id} did not finish within {MAX_EVAL_STEPS} steps: an episode that never "
                "ends (a policy that stalls in an env without a time limit, e.g. MinAtar Seaquest at the surface); "
                "give the env one: --env-kwargs '{\"max_episode_steps\": 10000}'"
            )
        return returns.cpu().numpy()
    finally:
        env.close()


#: Fastest GIF frame rate that plays as written: a GIF stores each frame's delay in whole
#: centiseconds, and browsers play delays under 2 cs (20 ms) at 100 ms instead.
MAX_GIF_FPS = 50


def check_gif_fps(fps: float) -> None:
    """Raise ValueError unless a GIF can play at ``fps`` (see ``MAX_GIF_FPS``)."""
    if not 0 < fps <= MAX_GIF_FPS:
        raise ValueError(f"GIF fps must be in (0, {MAX_GIF_FPS}] (viewers play faster GIFs slower), got {fps}")


def gif_durations_ms(num_frames: int, fps: float) -> list[int]:
    """Per-frame delays (ms, multiples of 10) that play ``num_frames`` frames at ``fps``.

    A GIF delay is a whole number of centiseconds, so 1000/fps ms (33.3 ms at 30 fps) cannot be
    stored as such; the same delay for every frame would drift (30 ms each is 10% fast). Each
    frame instead lasts until the next centisecond boundary nearest to its ideal end time
    (30, 40, 30, 30, 40, ... ms at 30 fps), so the total is within 5 ms of num_frames/fps.
    """
    ends_cs = [math.floor((i + 1) * 100 / fps + 0.5) for i in range(num_frames)]
    return [10 * (end - start) for start, end in zip([0, *ends_cs[:-1]], ends_cs, strict=True)]


def write_gif(path: str | Path, frames: list[np.ndarray], fps: float) -> None:
    """Write RGB ``frames`` to a looping GIF at ``path`` that plays at ``fps`` frames per second.

    Written with Pillow directly, delays in milliseconds: ``imageio.mimsave(duration=...)``
    changed its unit from seconds to milliseconds, and ``duration=1/fps`` became a 0 ms delay
    (played at full speed). Pillow stores identical consecutive frames once with their delays
    added up, so the GIF may hold fewer frames than ``frames`` but always lasts as long.
    Raises ValueError (one line for the CLI) when ``path`` cannot be written.
    """
    from PIL import Image

    if not frames:
        raise ValueError("a GIF needs at least one frame")
    check_gif_fps(fps)
    images = [Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)) for frame in frames]
    try:
        images[0].save(
            str(path),
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=gif_durations_ms(len(images), fps),
            loop=0,
        )
    except OSError as exc:  # a folder, a read-only place, a full disk: the user's to fix
        raise ValueError(f"cannot write the GIF to {path}: {exc.strerror or exc}") from None


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

    One frame per step (the state the action was chosen in), played at ``fps``: a 500-step
    episode at 30 fps lasts 16.7 s. Raises ValueError if the env cannot render ``rgb_array``
    frames or ``fps`` is outside (0, MAX_GIF_FPS].
    """
    check_gif_fps(fps)  # before the rollout, not after it
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
            step = env.step(agent.act(obs, deterministic=deterministic, generator=generator, averaged=True))
            total += float(step.reward[0])
            obs = step.obs
            if bool(step.episode_done[0]):
                break
        write_gif(path, frames, fps)
        return total
    finally:
        env.close()
