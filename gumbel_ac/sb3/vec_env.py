"""Our batched torch envs (``gumbel_ac.envs``) as an SB3 ``VecEnv``.

SB3 2.9 rejects Gymnasium ``VectorEnv``s (docs/DESIGN.md §6), and its algorithms want numpy.
:class:`TorchVecEnvAdapter` wraps one ``TorchVectorEnv`` (``N`` episodes stepped by one
call) so that any SB3 algorithm -- ``GumbelAC``, and SB3's own PPO, A2C, DQN -- trains on it.

This is the **compatibility path**: every step copies observations, rewards and flags from
the env's device to host numpy, and actions back. The native trainer (``train.py``,
:func:`gumbel_ac.train`) keeps envs, replay and networks on one device and never copies:
it is the fast path.

Semantics (those of SB3's ``DummyVecEnv``, which our envs share: SAME_STEP autoreset):

* ``step`` returns the reset observation for rows that ended; the true last observation is
  ``infos[i]["terminal_observation"]``;
* ``infos[i]["TimeLimit.truncated"]`` is ``truncated and not terminated`` (as DummyVecEnv
  sets it), so SB3's replay buffer and PPO's GAE bootstrap on time limits;
* ``infos[i]["episode"] = {"r", "l", "t"}`` where an episode ended, the record SB3's
  ``Monitor`` writes: ``ep_info_buffer`` (``rollout/ep_rew_mean``) fills and
  ``evaluate_policy`` reads returns from it. The env computes these statistics itself, so
  ``env_is_wrapped(Monitor)`` answers True (no Monitor needed or possible on a batched env).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    """A host copy (never a view of env memory the env might later reuse)."""
    return x.detach().to("cpu", copy=True).numpy()


class TorchVecEnvAdapter(VecEnv):
    """A batched torch ``gymnasium.vector.VectorEnv`` (SAME_STEP autoreset) as an SB3 ``VecEnv``.

    Compatibility path: copies to numpy every step (see the module docstring); for speed use
    the native trainer.

    Args:
        env: e.g. ``gymnasium.make_vec("gumbel_ac/CartPole-v1", num_envs=16, device="cpu")``.
        env_id: the Gymnasium id (default: ``env.spec.id``), kept for
            :func:`gumbel_ac.sb3.export_checkpoint`.

    Seeding: the batched env has one ``torch.Generator`` for all rows, so ``seed(s)`` reseeds
    it with ``s`` at the next ``reset()`` (SB3's per-row seeds ``s + i`` are not used).
    Attributes and methods (``get_attr``, ``set_attr``, ``env_method``) are those of the one
    batched env: a method is called once, on all rows, and its result repeated per index.
    """

    def __init__(self, env: gym.vector.VectorEnv, env_id: str | None = None) -> None:
        mode = env.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"TorchVecEnvAdapter needs an env with SAME_STEP autoreset (SB3's semantics), got {mode}; "
                "for Gymnasium's numpy envs use stable_baselines3.common.env_util.make_vec_env instead"
            )
        self.env = env
        spec = getattr(env, "spec", None)
        self.env_id = env_id or (spec.id if spec is not None else None)
        self.device = torch.device(getattr(env, "device", "cpu"))
        self._actions: np.ndarray | None = None
        self._t_start = time.time()
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    # ------------------------------------------------------------------ reset / step
    def reset(self) -> VecEnvObs:
        # One generator for the whole batch: the first row's seed reseeds it.
        seed = self._seeds[0]
        options = self._options[0] or None
        obs, info = self.env.reset(seed=seed, options=options)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return _to_numpy(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions)")
        actions = np.asarray(self._actions)
        if not np.issubdtype(actions.dtype, np.integer):
            raise TypeError(f"actions must be integer indices, got dtype {actions.dtype}")
        # One integer per env for a Discrete space, one per head ([N, H]) for a MultiDiscrete one.
        shape = (self.num_envs, *(self.action_space.shape or ()))
        actions_N = torch.as_tensor(actions.reshape(shape), dtype=torch.int64, device=self.device)
        self._actions = None
        obs, reward, terminated, truncated, info = self.env.step(actions_N)

        obs_np = _to_numpy(obs)
        rewards = _to_numpy(reward).astype(np.float32, copy=False)
        term = _to_numpy(terminated).astype(bool, copy=False)
        trunc = _to_numpy(truncated).astype(bool, copy=False)
        dones = term | trunc
        timeouts = trunc & ~term
        infos: list[dict[str, Any]] = [{"TimeLimit.truncated": bool(timeouts[i])} for i in range(self.num_envs)]
        if dones.any():
            # Only rows that ended need their final observation / episode record.
            idx = np.flatnonzero(dones)
            idx_t = torch.as_tensor(idx, device=self.device)
            final = _to_numpy(info["final_obs"][idx_t])
            ep_mask = _to_numpy(info["_episode"][idx_t]).astype(bool, copy=False)
            ep_r = _to_numpy(info["episode"]["r"][idx_t])
            ep_l = _to_numpy(info["episode"]["l"][idx_t])
            elapsed = round(time.time() - self._t_start, 6)
            for j, i in enumerate(idx):
                infos[i]["terminal_observation"] = final[j]
                if ep_mask[j]:
                    infos[i]["episode"] = {"r": float(ep_r[j]), "l": int(ep_l[j]), "t": elapsed}
        return obs_np, rewards, dones, infos

    def close(self) -> None:
        self.env.close()

    # ------------------------------------------------------------------ attributes
    def _indices(self, indices: VecEnvIndices) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """``getattr(env, attr_name)`` repeated per index (one batched env holds them all)."""
        value = getattr(self.env, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of the batched env; only for all rows at once."""
        if sorted(self._indices(indices)) != list(range(self.num_envs)):
            raise ValueError(
                "TorchVecEnvAdapter wraps ONE batched env: attributes can be set for all rows only "
                f"(indices=None), got indices={indices!r}"
            )
        setattr(self.env, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a method of the batched env once (it acts on all rows); repeat its result per index."""
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """True only for ``Monitor``: the batched env reports Monitor's episode records itself."""
        answer = wrapper_class is Monitor
        return [answer for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """One ``rgb_array`` frame per row (the env renders row ``render_env_index``)."""
        if self.render_mode != "rgb_array":
            warnings.warn(f"render_mode is {self.render_mode!r}; get_images needs 'rgb_array'", stacklevel=2)
            return [None for _ in range(self.num_envs)]
        env: Any = self.env  # our TorchVectorEnv: renders the row at ``render_env_index``
        old = getattr(env, "render_env_index", 0)
        images: list[np.ndarray | None] = []
        try:
            for i in range(self.num_envs):
                env.render_env_index = i
                images.append(env.render())
        finally:
            env.render_env_index = old
        return images


def make_torch_vec_env(
    env_id: str = "gumbel_ac/CartPole-v1",
    n_envs: int = 16,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    **env_kwargs: Any,
) -> TorchVecEnvAdapter:
    """``n_envs`` rows of one of our batched torch envs, wrapped for SB3.

    ``env_kwargs`` go to the env's constructor (``max_episode_steps``, ``render_mode``, ...).
    ``seed`` is used at the first ``reset()`` (as SB3's ``make_vec_env``).
    """
    import gumbel_ac.envs  # noqa: F401  (registers the gumbel_ac/ ids)

    env = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point", device=device, **env_kwargs)
    adapter = TorchVecEnvAdapter(env, env_id=env_id)
    if seed is not None:
        adapter.seed(seed)
    return adapter
