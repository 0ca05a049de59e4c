"""Replay buffer of torch tensors on the training device.

A ring buffer whose write position and fill level are Python integers: with a batched env
whose every row is a transition (``valid is None``), adding and sampling never read a value
back from the device. Only Gymnasium NEXT_STEP envs, whose step after a done is not a
transition, need a mask and hence one host sync per add (``nonzero``).

Shape legend: ``C`` capacity, ``N`` rows added at once, ``B`` batch, ``D`` observation
features, ``H`` action heads.
"""

from __future__ import annotations

import torch

from gumbel_ac.losses import Batch


class ReplayBuffer:
    """Fixed-capacity FIFO of transitions ``(obs, action, reward, next_obs, terminated)``."""

    def __init__(self, capacity: int, obs_dim: int, num_heads: int, device: torch.device | str) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.obs_CD = torch.zeros(capacity, obs_dim, device=self.device)
        self.next_obs_CD = torch.zeros(capacity, obs_dim, device=self.device)
        self.action_CH = torch.zeros(capacity, num_heads, dtype=torch.long, device=self.device)
        self.reward_C = torch.zeros(capacity, device=self.device)
        self.terminated_C = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        self.pos = 0
        #: ``size`` mirrored on the device, for :meth:`sample_on_device` (a CUDA graph bakes in
        #: Python numbers at capture, so a replayed sampler must read the size from a tensor).
        self.size_t = torch.zeros((), dtype=torch.long, device=self.device)
        self._size = 0

    @property
    def size(self) -> int:
        """Rows filled (a Python int; :attr:`size_t` holds the same on the device)."""
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        if value != self._size:  # once full, no more ops
            self._size = int(value)
            self.size_t.fill_(self._size)  # a kernel with a host scalar: no sync

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs_ND: torch.Tensor,
        action_NH: torch.Tensor,
        reward_N: torch.Tensor,
        next_obs_ND: torch.Tensor,
        terminated_N: torch.Tensor,
        valid_N: torch.Tensor | None = None,
    ) -> None:
        """Append ``N`` transitions (only the ``valid`` rows when a mask is given)."""
        if valid_N is not None:
            keep = valid_N.nonzero().squeeze(-1)  # host sync: the NEXT_STEP path only
            obs_ND, action_NH, reward_N = obs_ND[keep], action_NH[keep], reward_N[keep]
            next_obs_ND, terminated_N = next_obs_ND[keep], terminated_N[keep]
        n = obs_ND.shape[0]
        if n == 0:
            return
        if n > self.capacity:  # keep the newest rows
            obs_ND, action_NH, reward_N = obs_ND[-self.capacity :], action_NH[-self.capacity :], reward_N[-self.capacity :]
            next_obs_ND, terminated_N = next_obs_ND[-self.capacity :], terminated_N[-self.capacity :]
            n = self.capacity
        end = self.pos + n
        if end <= self.capacity:
            rows: slice | torch.Tensor = slice(self.pos, end)
        else:
            rows = torch.arange(self.pos, end, device=self.device) % self.capacity
        self.obs_CD[rows] = obs_ND
        self.action_CH[rows] = action_NH.reshape(n, -1)
        self.reward_C[rows] = reward_N
        self.next_obs_CD[rows] = next_obs_ND
        self.terminated_C[rows] = terminated_N
        self.pos = end % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """A uniformly random minibatch (with replacement), as a :class:`Batch`."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        return self._gather(torch.randint(0, self.size, (batch_size,), device=self.device, generator=generator))

    def sample_on_device(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """Like :meth:`sample`, with the size read from :attr:`size_t`: safe to capture in a
        CUDA graph. Indices are ``randint(0, 2**62) mod size`` (modulo bias below 2**-40 for any
        buffer that fits in memory); they differ from :meth:`sample`'s for the same seed."""
        idx = torch.randint(0, 2**62, (batch_size,), device=self.device, generator=generator).remainder_(self.size_t)
        return self._gather(idx)

    def _gather(self, idx: torch.Tensor) -> Batch:
        return Batch(
            obs_BD=self.obs_CD[idx],
            action_BH=self.action_CH[idx],
            reward_B=self.reward_C[idx],
            next_obs_BD=self.next_obs_CD[idx],
            terminated_B=self.terminated_C[idx],
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The filled part, oldest first (for checkpoints; tensors only, no pickle)."""
        order = (torch.arange(self.size, device=self.device) + (self.pos - self.size)) % self.capacity
        return {
            "obs": self.obs_CD[order].cpu(),
            "next_obs": self.next_obs_CD[order].cpu(),
            "action": self.action_CH[order].cpu(),
            "reward": self.reward_C[order].cpu(),
            "terminated": self.terminated_C[order].cpu(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Refill from :meth:`state_dict` output (newest rows kept if it exceeds capacity)."""
        self.pos, self.size = 0, 0
        self.add(
            state["obs"].to(self.device),
            state["action"].to(self.device),
            state["reward"].to(self.device),
            state["next_obs"].to(self.device),
            state["terminated"].to(self.device),
        )
