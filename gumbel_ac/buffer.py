"""Replay buffer of torch tensors on the training device.

A ring buffer whose write position and fill level are Python integers: with a batched env
whose every row is a transition (``valid is None``), adding and sampling never read a value
back from the device. Only Gymnasium NEXT_STEP envs, whose step after a done is not a
transition, need a mask and hence one host sync per add (``nonzero``).

With ``n_step > 1`` the ring stores n-step transitions (Sutton 1988; Rainbow, Hessel et al.
2018, arXiv:1710.02298): :class:`NStepWriter` holds each env's last ``n - 1`` steps and writes a
row ``(s_t, a_t, sum_{j<k} gamma^j r_{t+j}, s_{t+k}, terminated, gamma^k)`` once ``k = n`` steps
have passed, or earlier (``k < n``) when the episode ends. The entropy bonuses of the ``k - 1``
intermediate states are left out of the return (the policy that acted there is stale; SB3's
``NStepReplayBuffer`` does the same): the bonus enters only at the bootstrap state.

Shape legend: ``C`` capacity, ``N`` rows added at once, ``B`` batch, ``D`` observation
features, ``H`` action heads, ``K`` pending steps per env (``n_step``).
"""

from __future__ import annotations

from typing import Any

import torch

from gumbel_ac.losses import Batch


class NStepWriter:
    """Per-env queues of the last ``n`` steps that turn one-step transitions into n-step rows.

    The queues are ``[K, N]`` tensors indexed by ``step mod n`` (every env steps at once), so a
    vector step is a handful of tensor ops: push the step's rows, add ``gamma^len * r`` to every
    live entry of that env, emit the entries that reached ``n`` steps and all entries of envs
    whose episode ended (terminated or truncated: ``next_obs`` is then the episode's final
    observation, so a truncated row bootstraps from it). How many rows leave a step depends on
    the episodes that ended, so emitting reads one count back from the device (a sync per step).

    A row that is not a transition (``valid`` False: the reset step of a NEXT_STEP env) adds
    nothing; a row with a non-finite value is dropped and discards that env's pending steps
    (their returns would run through it).
    """

    #: Checkpoint key -> attribute of each queue (:meth:`state_dict`), and the ``pending_slot`` int.
    FIELDS = {
        "pending_obs": "obs_KND",
        "pending_action": "action_KNH",
        "pending_return": "return_KN",
        "pending_length": "length_KN",
        "pending_active": "active_KN",
    }
    KEYS = frozenset({*FIELDS, "pending_slot"})

    def __init__(self, n: int, gamma: float, device: torch.device, obs_dtype: torch.dtype) -> None:
        if n < 2:
            raise ValueError(f"an n-step writer needs n >= 2, got {n}")
        self.n, self.gamma, self.device, self.obs_dtype = int(n), float(gamma), device, obs_dtype
        #: ``gamma ** k`` for ``k = 0 .. n``: an entry's factor and discount, indexed by its length.
        self.powers_K = torch.full((self.n + 1,), self.gamma, device=device).pow(
            torch.arange(self.n + 1, device=device)
        )
        self.reset()

    def reset(self) -> None:
        """Empty queues, sized at the next :meth:`push`."""
        device = self.device
        self.slot = 0
        self.obs_KND = torch.zeros(0, dtype=self.obs_dtype, device=device)
        self.action_KNH = torch.zeros(0, dtype=torch.long, device=device)
        self.return_KN = torch.zeros(0, device=device)
        self.length_KN = torch.zeros(0, dtype=torch.long, device=device)
        self.active_KN = torch.zeros(0, dtype=torch.bool, device=device)

    @property
    def num_envs(self) -> int:
        """Envs the queues were sized for (0 before the first :meth:`push`)."""
        return int(self.active_KN.shape[1]) if self.active_KN.dim() == 2 else 0

    def _allocate(self, n_envs: int, obs_dim: int, num_heads: int) -> None:
        k, dev = self.n, self.device
        self.obs_KND = torch.zeros(k, n_envs, obs_dim, dtype=self.obs_dtype, device=dev)
        self.action_KNH = torch.zeros(k, n_envs, num_heads, dtype=torch.long, device=dev)
        self.return_KN = torch.zeros(k, n_envs, device=dev)
        self.length_KN = torch.zeros(k, n_envs, dtype=torch.long, device=dev)
        self.active_KN = torch.zeros(k, n_envs, dtype=torch.bool, device=dev)

    def push(
        self,
        obs_ND: torch.Tensor,
        action_NH: torch.Tensor,
        reward_N: torch.Tensor,
        next_obs_ND: torch.Tensor,
        terminated_N: torch.Tensor,
        truncated_N: torch.Tensor | None,
        live_N: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """Take one vector step (``live_N``: rows that are finite transitions); return the rows
        it completes: ``(obs, action, return, next_obs, terminated, discount)``."""
        n_envs = obs_ND.shape[0]
        if self.num_envs == 0:
            self._allocate(n_envs, obs_ND.shape[1], action_NH.reshape(n_envs, -1).shape[1])
        elif n_envs != self.num_envs:
            raise ValueError(f"an n-step replay takes one step of {self.num_envs} envs per add, got {n_envs} rows")
        s = self.slot
        # A non-live row ends its env's chain (a valid but non-finite one drops its pending steps).
        self.active_KN &= live_N.unsqueeze(0)
        self.obs_KND[s] = obs_ND
        self.action_KNH[s] = action_NH.reshape(n_envs, -1)
        self.return_KN[s] = 0.0
        self.length_KN[s] = 0
        self.active_KN[s] = live_N
        self.return_KN += torch.where(self.active_KN, self.powers_K[self.length_KN] * reward_N.unsqueeze(0), 0.0)
        self.length_KN += self.active_KN.long()
        done_N = terminated_N if truncated_N is None else terminated_N | truncated_N
        emit_KN = self.active_KN & ((self.length_KN >= self.n) | done_N.unsqueeze(0))
        k_idx, e_idx = emit_KN.nonzero(as_tuple=True)  # host sync: the count varies with episode ends
        self.active_KN &= ~emit_KN
        self.slot = (s + 1) % self.n
        discount = self.powers_K[self.length_KN[k_idx, e_idx]]
        return (
            self.obs_KND[k_idx, e_idx],
            self.action_KNH[k_idx, e_idx],
            self.return_KN[k_idx, e_idx],
            next_obs_ND[e_idx],
            terminated_N[e_idx],
            discount,
        )

    def state_dict(self) -> dict[str, Any]:
        """The queues and the slot (tensors and an int: no pickle)."""
        return {**{key: getattr(self, attr) for key, attr in self.FIELDS.items()}, "pending_slot": self.slot}

    def check_state_dict(self, state: dict[str, Any], obs_dim: int, num_heads: int) -> None:
        """Raise ``ValueError`` unless ``state`` holds queues of this writer's ``n`` and dtypes."""
        slot, active = state.get("pending_slot"), state.get("pending_active")
        if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot < self.n:
            raise ValueError(f"n-step replay state: pending_slot must be an int in [0, {self.n}), got {slot!r}")
        if not isinstance(active, torch.Tensor) or active.dim() != 2 or active.shape[0] != self.n:
            raise ValueError(f"n-step replay state: pending_active must be [{self.n}, envs] (n_step {self.n})")
        e = active.shape[1]
        want = {
            "pending_obs": ((self.n, e, obs_dim), self.obs_dtype),
            "pending_action": ((self.n, e, num_heads), torch.long),
            "pending_return": ((self.n, e), torch.float32),
            "pending_length": ((self.n, e), torch.long),
            "pending_active": ((self.n, e), torch.bool),
        }
        if e == 0:  # saved before the first add: nothing pending
            return
        for key, (shape, dtype) in want.items():
            got = state.get(key)
            if not isinstance(got, torch.Tensor) or tuple(got.shape) != shape or got.dtype != dtype:
                raise ValueError(f"n-step replay state: {key} must be {shape} {dtype}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (checked by the buffer first)."""
        self.reset()
        if state["pending_active"].shape[1] > 0:  # else saved before the first add: nothing pending
            for key, attr in self.FIELDS.items():
                setattr(self, attr, state[key].to(self.device).clone())
        self.slot = state["pending_slot"]


class ReplayBuffer:
    """Fixed-capacity FIFO of transitions ``(obs, action, reward, next_obs, terminated)``."""

    #: Whether ``next_obs`` is a stored column (False: :class:`SharedObsReplayBuffer`).
    stores_next_obs = True

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        num_heads: int,
        device: torch.device | str,
        obs_dtype: torch.dtype = torch.float32,
        n_step: int = 1,
        gamma: float = 1.0,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        self.capacity = int(capacity)
        self.device = torch.device(device)
        #: The writer that builds n-step rows (None: plain one-step transitions).
        self.nstep = NStepWriter(n_step, gamma, self.device, obs_dtype) if n_step > 1 else None
        #: ``gamma ** k`` of each n-step row (allocated only when ``n_step > 1``).
        self.discount_C = torch.ones(capacity if n_step > 1 else 0, device=self.device)
        # Observations in their own dtype: image rows are uint8 (one byte per pixel; the
        # agent's encoder converts them on the sampled batch only).
        self.obs_CD = torch.zeros(capacity, obs_dim, dtype=obs_dtype, device=self.device)
        # A subclass that derives the next observation from the ring stores none (no allocation).
        next_rows = capacity if self.stores_next_obs else 0
        self.next_obs_CD = torch.zeros(next_rows, obs_dim, dtype=obs_dtype, device=self.device)
        self.action_CH = torch.zeros(capacity, num_heads, dtype=torch.long, device=self.device)
        self.reward_C = torch.zeros(capacity, device=self.device)
        self.terminated_C = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        self.pos = 0
        #: Rows a checkpoint keeps (:meth:`state_dict`); ``None`` keeps all, 0 none.
        self.save_cap: int | None = None
        #: ``size`` mirrored on the device, for :meth:`sample_on_device` (a CUDA graph bakes in
        #: Python numbers at capture, so a replayed sampler must read the size from a tensor).
        self.size_t = torch.zeros((), dtype=torch.long, device=self.device)
        self._size = 0

    @property
    def n_step(self) -> int:
        """Steps per stored return (1: plain one-step transitions)."""
        return 1 if self.nstep is None else self.nstep.n

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
        truncated_N: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Append ``N`` transitions (only the ``valid`` rows when a mask is given); return how
        many had a non-finite observation, next observation or reward and were NOT stored (a
        0-dim device tensor: counting never syncs).

        Why screen here: one NaN row in replay poisons every minibatch that draws it, so most
        updates would be skipped for as long as it stays in the ring. With a mask (Gymnasium's
        NEXT_STEP envs, which sync here anyway) such rows are dropped. Without one, the write
        position must stay a host integer, so a non-finite row's slot gets a copy of a real
        transition instead: the step's first finite row, or, when every row of the step is
        non-finite (envs that fail in lockstep), the newest row already in the ring. Only a
        first step with no finite row at all, into an empty buffer, is stored as it is; the
        learner's non-finite guard then skips the updates that draw it. Cost, measured against
        the unscreened add on the 2-core CPU (AVX512): ~66 vs ~9 µs for 16 rows, about 4% of a
        16-env training iteration -- paid for never training on a poisoned ring.

        ``truncated_N`` is not needed for one-step rows (the true next observation is stored, so
        a truncated row bootstraps from it); the n-step writer ends an episode's returns there, and
        :class:`SharedObsReplayBuffer` stores such rows as terminated.

        With ``n_step > 1`` the step goes through :class:`NStepWriter` first; the rows it
        completes are stored (a non-finite row is dropped, with its env's pending steps).
        """
        finite_N = self._finite_rows(obs_ND, next_obs_ND, reward_N)
        if self.nstep is not None:
            live_N = finite_N if valid_N is None else valid_N & finite_N
            dropped = (~finite_N).sum() if valid_N is None else (valid_N & ~finite_N).sum()
            rows = self.nstep.push(obs_ND, action_NH, reward_N, next_obs_ND, terminated_N, truncated_N, live_N)
            self._store(*rows)
            return dropped
        if valid_N is not None:
            dropped = (valid_N & ~finite_N).sum()
            keep = (valid_N & finite_N).nonzero().squeeze(-1)  # host sync: the NEXT_STEP path only
            obs_ND, action_NH, reward_N = obs_ND[keep], action_NH[keep], reward_N[keep]
            next_obs_ND, terminated_N = next_obs_ND[keep], terminated_N[keep]
        else:
            dropped = (~finite_N).sum()
            n = finite_N.shape[0]
            if n <= self.capacity:
                # Store as given, then point each bad row's slot at a good row's slot.
                newest = (self.pos - 1) % self.capacity if self.size > 0 else None
                slots_N = (torch.arange(n, device=finite_N.device) + self.pos) % self.capacity
                self._store(obs_ND, action_NH, reward_N, next_obs_ND, terminated_N)
                # The fallback of an all-bad step is the ring's newest row before this write (an
                # empty ring has none: the rows stay as they are).
                first_good = slots_N[finite_N.to(torch.uint8).argmax()]
                all_bad = slots_N if newest is None else torch.full_like(slots_N, newest)
                src_N = torch.where(finite_N, slots_N, torch.where(finite_N.any(), first_good, all_bad))
                for column in self._columns().values():
                    column[slots_N] = column[src_N]
                return dropped
        self._store(obs_ND, action_NH, reward_N, next_obs_ND, terminated_N)
        return dropped

    @staticmethod
    def _finite_rows(obs_ND: torch.Tensor, next_obs_ND: torch.Tensor, reward_N: torch.Tensor) -> torch.Tensor:
        """``[N]``: every value of the transition is finite (integer observations always are)."""
        parts = [reward_N.unsqueeze(-1)]
        if obs_ND.is_floating_point():
            parts += [obs_ND.flatten(1).to(reward_N.dtype), next_obs_ND.flatten(1).to(reward_N.dtype)]
        return torch.isfinite(torch.cat(parts, dim=1)).all(dim=1)

    def _store(
        self,
        obs_ND: torch.Tensor,
        action_NH: torch.Tensor,
        reward_N: torch.Tensor,
        next_obs_ND: torch.Tensor,
        terminated_N: torch.Tensor,
        discount_N: torch.Tensor | None = None,
    ) -> None:
        """Write ``N`` rows at the ring's position (the newest ``capacity`` if more);
        ``discount_N``: the rows' bootstrap discounts (n-step rings only)."""
        n = obs_ND.shape[0]
        if n == 0:
            return
        if n > self.capacity:  # keep the newest rows
            obs_ND, action_NH, reward_N = (
                obs_ND[-self.capacity :],
                action_NH[-self.capacity :],
                reward_N[-self.capacity :],
            )
            next_obs_ND, terminated_N = next_obs_ND[-self.capacity :], terminated_N[-self.capacity :]
            if discount_N is not None:
                discount_N = discount_N[-self.capacity :]
            n = self.capacity
        end = self.pos + n
        if end <= self.capacity:
            rows: slice | torch.Tensor = slice(self.pos, end)
        else:
            rows = torch.arange(self.pos, end, device=self.device) % self.capacity
        self.obs_CD[rows] = obs_ND
        self.action_CH[rows] = action_NH.reshape(n, -1)
        self.reward_C[rows] = reward_N
        if self.stores_next_obs:
            self.next_obs_CD[rows] = next_obs_ND
        self.terminated_C[rows] = terminated_N
        if self.n_step > 1:
            if discount_N is None:
                raise ValueError("an n-step replay stores each row's discount")
            self.discount_C[rows] = discount_N
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
            discount_B=self.discount_C[idx] if self.n_step > 1 else None,
        )

    def _columns(self) -> dict[str, torch.Tensor]:
        columns = {"obs": self.obs_CD, "next_obs": self.next_obs_CD}
        if not self.stores_next_obs:
            del columns["next_obs"]
        columns = {**columns, "action": self.action_CH, "reward": self.reward_C, "terminated": self.terminated_C}
        if self.n_step > 1:
            columns["discount"] = self.discount_C
        return columns

    def state_dict(self) -> dict[str, Any]:
        """Rows for a checkpoint, at most :attr:`save_cap` (tensors and plain values only: no pickle), and how they
        were taken (``mode``):

        * ``exact`` (``size <= cap``, or no cap): the physical rows ``[0, size)`` and the write
          position, so the restored buffer is the same ring and :meth:`sample` draws the same
          transitions -- what makes a resumed run bit-identical;
        * ``newest``: the buffer holds more than ``cap`` rows; the newest ``cap``, oldest
          first (a resumed run then samples differently);
        * ``none``: ``cap == 0`` or an empty buffer; nothing is saved.

        An n-step ring adds its writer's pending steps (``pending_*``) unless nothing is saved.
        """
        size, cap = self.size, self.save_cap
        if size == 0 or cap == 0:
            return {"mode": "none", "size": 0, "pos": 0}
        pending = self.nstep.state_dict() if self.nstep is not None else {}
        if cap is None or size <= cap:
            rows = {k: t[:size] for k, t in self._columns().items()}
            return {"mode": "exact", "size": size, "pos": self.pos, **rows, **pending}
        order = (torch.arange(cap, device=self.device) + (self.pos - cap)) % self.capacity
        newest = {k: t[order] for k, t in self._columns().items()}
        return {"mode": "newest", "size": cap, "pos": 0, **newest, **pending}

    def check_state_dict(self, state: dict[str, Any]) -> None:
        """Raise ``ValueError`` unless ``state`` is a valid :meth:`state_dict` for this buffer."""
        mode, size, pos = state.get("mode"), state.get("size"), state.get("pos")
        if not (isinstance(size, int) and isinstance(pos, int)) or isinstance(size, bool) or isinstance(pos, bool):
            raise ValueError(f"replay state size/pos must be integers, got {size!r}, {pos!r}")
        if (
            mode not in ("exact", "newest", "none")
            or not 0 <= size <= self.capacity
            or not 0 <= pos < self.capacity
            or (mode == "exact" and size < self.capacity and pos != size)
            or (mode != "exact" and pos != 0)
            or (mode == "none" and size != 0)
        ):
            raise ValueError(
                f"replay state is invalid (mode={mode!r}, size={size!r}, pos={pos!r}, capacity {self.capacity})"
            )
        columns = self._columns() if mode != "none" else {}
        pending_keys: set[str] = set()
        if self.nstep is not None and mode != "none":
            pending_keys = set(NStepWriter.KEYS)
            missing = sorted(pending_keys - set(state))
            if missing:
                raise ValueError(f"n-step replay state lacks {missing} (saved by a one-step run? use the same n_step)")
            self.nstep.check_state_dict(state, self.obs_CD.shape[1], self.action_CH.shape[1])
        extra = sorted(set(state) - {"mode", "size", "pos"} - set(columns) - pending_keys)
        if extra:
            raise ValueError(f"replay state has unexpected entries {extra[:5]}")
        for key, like in columns.items():
            got = state.get(key)
            if (
                not isinstance(got, torch.Tensor)
                or tuple(got.shape) != (size, *like.shape[1:])
                or got.dtype != like.dtype
            ):
                raise ValueError(f"replay column {key!r} must be {(size, *like.shape[1:])} {like.dtype}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (checked first; the buffer is emptied before)."""
        self.check_state_dict(state)
        self.pos, self.size = 0, 0
        if self.nstep is not None:
            if state["mode"] == "none":
                self.nstep.reset()
            else:
                self.nstep.load_state_dict(state)
        if state["mode"] == "exact":
            size = state["size"]
            for key, column in self._columns().items():
                column[:size] = state[key].to(self.device)
            self.pos, self.size = state["pos"], size
        elif state["mode"] == "newest":
            c = {k: state[k].to(self.device) for k in self._columns()}
            self._store(c["obs"], c["action"], c["reward"], c["next_obs"], c["terminated"], c.get("discount"))


class SharedObsReplayBuffer(ReplayBuffer):
    """A replay buffer that stores each observation once: the next observation of a row is the
    observation of the same env one vector step later, ``N`` rows further on the ring.

    For image observations this halves the replay's memory (a 100k-transition ring of 4x84x84
    uint8 Atari frames is ~2.8 GB instead of ~5.6 GB), the trick behind SB3's
    ``optimize_memory_usage`` and the Nature DQN replay. It needs every :meth:`add` to be one
    vector step of the same ``N`` envs with SAME_STEP autoreset (``valid`` is None): row ``r``
    then holds env ``r mod N``'s transition and row ``r + N`` its successor. The newest step's
    next observations have no successor row yet; they are kept in ``tail_ND``.

    At an episode's end the successor row holds the NEW episode's first observation, not the
    final one: a terminated row does not bootstrap, so that is harmless; a truncated row
    (time limit) is stored as terminated, as SB3 does when ``optimize_memory_usage`` is on (it
    refuses ``handle_timeout_termination`` there) -- pass ``truncated_N`` to :meth:`add`.
    Time limits of image benchmarks are long (Atari: 108k frames), so the bias is small.
    """

    stores_next_obs = False

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        num_heads: int,
        device: torch.device | str,
        obs_dtype: torch.dtype = torch.uint8,
        n_step: int = 1,
        gamma: float = 1.0,
    ) -> None:
        if n_step != 1:
            raise ValueError(
                "n-step returns need the plain replay; the shared-observation ring (image observations) "
                "stores one-step rows only: use n_step=1"
            )
        super().__init__(capacity, obs_dim, num_heads, device, obs_dtype)
        #: Rows per add (the number of envs), fixed by the first add.
        self.rows_per_add = 0
        #: Ring position of the newest add's first row (a Python int, mirrored on the device for
        #: CUDA-graph replays as ``size_t`` is), and that add's next observations (updated in place).
        self.last_start = 0
        self.last_start_t = torch.zeros((), dtype=torch.long, device=self.device)
        self.tail_ND = torch.zeros(0, obs_dim, dtype=obs_dtype, device=self.device)

    def add(
        self,
        obs_ND: torch.Tensor,
        action_NH: torch.Tensor,
        reward_N: torch.Tensor,
        next_obs_ND: torch.Tensor,
        terminated_N: torch.Tensor,
        valid_N: torch.Tensor | None = None,
        truncated_N: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Append one vector step (see the class docstring); returns the count of rows with a
        non-finite value, whose action, reward and termination are replaced by the step's first
        finite row's (the observation stays: it is the previous row's next observation)."""
        n = obs_ND.shape[0]
        if valid_N is not None:
            raise ValueError("SharedObsReplayBuffer needs SAME_STEP envs (every row a transition, no valid mask)")
        if self.rows_per_add == 0:
            if 2 * n > self.capacity:
                raise ValueError(f"replay capacity {self.capacity} must hold at least two steps of {n} envs")
            self.rows_per_add = n
            self.tail_ND = torch.zeros(n, self.obs_CD.shape[1], dtype=self.obs_CD.dtype, device=self.device)
        elif n != self.rows_per_add:
            raise ValueError(f"every add must be one step of {self.rows_per_add} envs, got {n} rows")
        if truncated_N is not None:
            terminated_N = terminated_N | truncated_N
        finite_N = self._finite_rows(obs_ND, next_obs_ND, reward_N)
        dropped = (~finite_N).sum()
        start = self.pos
        self._store(obs_ND, action_NH, reward_N, next_obs_ND, terminated_N)
        slots_N = (torch.arange(n, device=finite_N.device) + start) % self.capacity
        src_N = torch.where(finite_N, slots_N, slots_N[finite_N.to(torch.uint8).argmax()])
        for column in (self.action_CH, self.reward_C, self.terminated_C):
            column[slots_N] = column[src_N]
        return dropped

    def _store(
        self,
        obs_ND: torch.Tensor,
        action_NH: torch.Tensor,
        reward_N: torch.Tensor,
        next_obs_ND: torch.Tensor,
        terminated_N: torch.Tensor,
        discount_N: torch.Tensor | None = None,
    ) -> None:
        start = self.pos
        super()._store(obs_ND, action_NH, reward_N, next_obs_ND, terminated_N, discount_N)
        self._set_last_start(start)
        self.tail_ND.copy_(next_obs_ND)

    def _set_last_start(self, value: int) -> None:
        self.last_start = int(value)
        self.last_start_t.fill_(self.last_start)

    def _gather(self, idx: torch.Tensor) -> Batch:
        n = self.rows_per_add
        offset = (idx - self.last_start_t) % self.capacity  # < n: a row of the newest step
        in_tail = (offset < n).unsqueeze(-1)
        successor = self.obs_CD[(idx + n) % self.capacity]
        from_tail = self.tail_ND[offset.clamp(max=n - 1)]
        return Batch(
            obs_BD=self.obs_CD[idx],
            action_BH=self.action_CH[idx],
            reward_B=self.reward_C[idx],
            next_obs_BD=torch.where(in_tail, from_tail, successor),
            terminated_B=self.terminated_C[idx],
        )

    def nbytes(self) -> int:
        """Bytes of the ring (the tail of one step aside)."""
        return sum(t.numel() * t.element_size() for t in self._columns().values())

    def state_dict(self) -> dict[str, Any]:
        """:meth:`ReplayBuffer.state_dict` plus the tail and the step geometry. ``newest`` keeps
        whole steps (the cap rounded down to a multiple of the envs), so successors stay valid."""
        if self.rows_per_add and self.save_cap is not None and self.size > self.save_cap:
            cap = self.save_cap - self.save_cap % self.rows_per_add
            saved_cap, self.save_cap = self.save_cap, cap
            try:
                state = super().state_dict()
            finally:
                self.save_cap = saved_cap
        else:
            state = super().state_dict()
        if state["mode"] == "none":
            return state
        return {
            **state,
            "tail": self.tail_ND,
            "rows_per_add": self.rows_per_add,
            "last_start": self._saved_last_start(state),
        }

    def _saved_last_start(self, state: dict[str, Any]) -> int:
        return self.last_start if state["mode"] == "exact" else state["size"] - self.rows_per_add

    def check_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("mode") in ("exact", "newest"):
            n, last, tail = state.get("rows_per_add"), state.get("last_start"), state.get("tail")
            if not (isinstance(n, int) and isinstance(last, int)) or isinstance(n, bool) or isinstance(last, bool):
                raise ValueError("shared-observation replay state needs integer rows_per_add and last_start")
            whole_steps = state["size"] % n == 0 or state["size"] == self.capacity
            if not (1 <= n and 2 * n <= self.capacity and 0 <= last < self.capacity and whole_steps):
                raise ValueError(f"shared-observation replay state is invalid (rows_per_add={n}, last_start={last})")
            if not isinstance(tail, torch.Tensor) or tuple(tail.shape) != (n, self.obs_CD.shape[1]):
                raise ValueError(f"shared-observation replay tail must be [{n}, {self.obs_CD.shape[1]}]")
            if tail.dtype != self.obs_CD.dtype:
                raise ValueError(f"shared-observation replay tail must be {self.obs_CD.dtype}")
            state = {k: v for k, v in state.items() if k not in ("tail", "rows_per_add", "last_start")}
        super().check_state_dict(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state_dict(state)
        self.pos, self.size = 0, 0
        if state["mode"] == "none":
            return
        size = state["size"]
        for key, column in self._columns().items():
            column[:size] = state[key].to(self.device)
        self.pos = state["pos"] if state["mode"] == "exact" else size % self.capacity
        self.size = size
        self.rows_per_add = state["rows_per_add"]
        self._set_last_start(state["last_start"])
        self.tail_ND = state["tail"].to(self.device).clone()
