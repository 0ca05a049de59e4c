"""DeepSea (bsuite), batched in torch: the deep-exploration chain.

Reference: bsuite/environments/deep_sea.py (Osband et al. 2019, "Behaviour Suite for
Reinforcement Learning"; deterministic version). An ``size x size`` grid; the agent starts top
left and falls one row per step, moving one column left or right (clipped at the walls).
Which action index means "right" is drawn per cell (bsuite's
``action_mapping = rng.binomial(1, 0.5, [size, size])`` from its ``mapping_seed``). By default
one mapping, drawn from ``mapping_seed=0``, is shared by every sub-env and by every env built
with the same seed -- one task, as bsuite's single environment is, so the training
population and the evaluation env agree (the observation does not reveal the mapping; a
population of different mappings behind identical observations cannot be solved).
``mapping_seed=None`` draws a mapping per sub-env from the env's generator instead (fixed for
its life, redrawn when ``reset(seed=...)`` reseeds). Moving right costs
``unscaled_move_cost / size``; moving right from the last column pays +1 (possible only on the
last row, after ``size - 1`` rights). The episode terminates after ``size`` steps; the optimal
return is ``1 - unscaled_move_cost`` = 0.99, and a uniformly random policy collects the +1 with
probability ``2**-size`` (it needs ``size`` right moves in a row).

Observation: bsuite's ``[size, size]`` float32 one-hot of the agent's cell (all zeros after the
last step, bsuite's "end of episode null observation"); ``flatten=True`` gives ``[size*size]``.
Not implemented: bsuite's stochastic ("windy") variant.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from .base import State, TorchVectorEnv
from .render import grid_image


class DeepSeaEnv(TorchVectorEnv):
    """Batched DeepSea (actions 0/1, mapped to left/right per cell and per env).

    Args:
        num_envs, device, max_episode_steps, render_mode, validate_actions, seed, compile,
            compile_mode, reset_block, noise: see :class:`~gumbel_ac.envs.base.TorchVectorEnv`.
        size: grid size ``N`` (episode length ``N``).
        unscaled_move_cost: cost of a right move times ``size`` (bsuite default 0.01).
        randomize_actions: bsuite's option; ``False`` makes action 1 "right" everywhere (debug).
        flatten: observations ``[size*size]`` instead of bsuite's ``[size, size]``.
        mapping_seed: seed of the one action mapping all sub-env share (bsuite's name);
            ``None``: an independent mapping per sub-env from the env's generator.
    """

    #: Largest ``size``: a 1024 x 1024 float32 observation is 4 MiB per env, ~20x bsuite's sweep.
    MAX_SIZE: ClassVar[int] = 1024

    metadata: dict[str, Any] = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": ["rgb_array"],
        "render_fps": 4,
    }
    reset_noise_dim: ClassVar[int] = 0  # every episode starts at (0, 0)

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        validate_actions: bool = True,
        seed: int | None = None,
        compile: bool = False,
        compile_mode: str | None = None,
        reset_block: int = 64,
        noise: str = "auto",
        size: int = 10,
        unscaled_move_cost: float = 0.01,
        randomize_actions: bool = True,
        flatten: bool = False,
        mapping_seed: int | None = 0,
    ) -> None:
        # Checked before anything is built: the observation is size*size floats per env (a
        # mistyped size of 40000 is 6.4 GB for ONE env), so the cap comes first.
        if not 1 <= size <= self.MAX_SIZE:
            raise ValueError(f"size must be in [1, {self.MAX_SIZE}], got {size}.")
        self.size = int(size)
        self.unscaled_move_cost = float(unscaled_move_cost)
        self.randomize_actions = randomize_actions
        self.flatten = flatten
        self.mapping_seed = mapping_seed
        super().__init__(
            num_envs=num_envs,
            device=device,
            max_episode_steps=max_episode_steps,
            render_mode=render_mode,
            validate_actions=validate_actions,
            seed=seed,
            compile=compile,
            compile_mode=compile_mode,
            reset_block=reset_block,
            noise=noise,
        )
        shape = (size * size,) if flatten else (size, size)
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=shape, dtype=np.float32)
        self.single_action_space = spaces.Discrete(2)
        self.action_mapping: torch.Tensor = torch.ones(0)
        self._setup()

    def _on_seed(self, generator: torch.Generator) -> None:
        n = self.size
        if self.randomize_actions and self.mapping_seed is not None:
            # One task: the same mapping for every sub-env, from bsuite's mapping_seed.
            shared = torch.Generator(device=self.device).manual_seed(int(self.mapping_seed))
            one = torch.randint(0, 2, (1, n * n), generator=shared, device=self.device)
            mapping = one.expand(self.num_envs, -1).contiguous()
        elif self.randomize_actions:
            # The action index that means "right" in each cell: bsuite's binomial(1, 0.5).
            mapping = torch.randint(0, 2, (self.num_envs, n * n), generator=generator, device=self.device)
        else:
            mapping = torch.ones((self.num_envs, n * n), dtype=torch.int64, device=self.device)
        self.action_mapping = mapping  # [N, size*size], cell index row * size + column

    def _reset_from_uniform(self, u: torch.Tensor) -> State:
        zeros = torch.zeros(u.shape[:-1], dtype=torch.int64, device=u.device)
        return (zeros, zeros.clone())  # (row, column)

    def _dynamics(self, state: State, actions_N: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        row, column = state
        n = self.size
        right_action = self.action_mapping.gather(1, (row * n + column).unsqueeze(1)).squeeze(1)
        action_right = actions_N == right_action
        # bsuite: +1 for "right" in the last column; each right move costs move_cost / size.
        reward = (action_right & (column == n - 1)).to(torch.float32) - action_right.to(torch.float32) * (
            self.unscaled_move_cost / n
        )
        column = torch.where(action_right, column + 1, column - 1).clamp(0, n - 1)
        row = row + 1
        terminated = row == n
        return (row, column), reward, terminated

    def _observe(self, state: State) -> torch.Tensor:
        row, column = state
        n = self.size
        cells = torch.arange(n * n, device=row.device)
        # One-hot of the cell; all zeros once row == size (bsuite's null terminal observation).
        obs = ((cells == (row * n + column).unsqueeze(1)) & (row < n).unsqueeze(1)).to(torch.float32)
        return obs if self.flatten else obs.view(-1, n, n)

    def _render_rgb(self, state_i: State) -> np.ndarray:
        row, column = (int(t) for t in state_i)
        grid = np.zeros((self.size, self.size), dtype=np.float32)
        if row < self.size:
            grid[row, column] = 1.0
        return grid_image(grid)
