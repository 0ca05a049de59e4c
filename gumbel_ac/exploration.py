"""A count-based exploration bonus: ``beta / sqrt(n(s'))`` added to replayed rewards.

MountainCar-v0 is the classic case it exists for: its reward is -1 on every step until the car
reaches the flag, random actions almost never get there in 200 steps, and an entropy-regularised
actor-critic (ours, SB3's PPO without tuning) then learns that every action is equally bad and
never sees the goal. A bonus for visiting rarely seen states gives the critic something that
differs between actions before the first success.

The bonus is MBIE-EB's ``beta / sqrt(n)`` (Strehl & Littman 2008, "An analysis of model-based
interval estimation for Markov decision processes") on state counts over a grid, the simplest
of the count-based family that #Exploration (Tang et al. 2017, arXiv:1611.04717) extends to
large spaces with hashing:

* each dimension of the agent's observation row is cut into ``bins`` equal cells between the
  observation space's bounds (values outside are clamped to the edge cells);
* the cell of a row is its mixed-radix index when the grid has at most ``table_size`` cells,
  else a fixed random linear hash of the cell coordinates modulo ``table_size`` (collisions
  merge a few cells' counts; Tang et al.'s SimHash accepts the same);
* ``observe`` adds the next observations of each vector step to the counts; ``bonus`` reads
  the counts of a minibatch's next observations *at sampling time*, so an old transition's
  bonus shrinks as its state is revisited (a bonus frozen into the replay at insertion would
  keep paying for states long since explored).

It needs finite bounds on every observation dimension (a grid over an infinite range has no
cells): MountainCar, Acrobot, LunarLander and one-hot (``Discrete``) observations have them,
CartPole's velocities do not. Image observations are refused: a grid over pixels counts every
frame as new (Tang et al. hash learned features for those).

Every operation is a fixed-shape tensor op on the counts' device, so the update that calls
:meth:`CountBonus.bonus` can still be captured in a CUDA graph. Under torchrun each rank counts
its own envs' visits, as each keeps its own replay; a checkpoint holds rank 0's counts, and
resumed ranks > 0 start from none, as they start from an empty replay.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["CountBonus", "MAX_COUNT_BINS", "TABLE_SIZE"]

#: Cells a count table holds (int64 counts: 8 MiB). Grids with more cells are hashed into it.
TABLE_SIZE = 1 << 20
#: Cells per dimension: above this a cell is narrower than float32 noise on a unit range.
MAX_COUNT_BINS = 1 << 16
#: Multipliers of the hash are below this, so ``sum(cell * mult)`` stays far below 2**63 for
#: any row of up to 2**16 dimensions and cells below :data:`MAX_COUNT_BINS`.
_HASH_MULT_BOUND = 1 << 31


class CountBonus:
    """Visit counts over a grid of the observation box, and the bonus ``scale / sqrt(n)``.

    Args:
        low, high: ``[D]`` finite bounds of the agent's observation row.
        bins: cells per dimension (>= 2).
        scale: ``beta``, the bonus of a never-seen cell (a count of 0 is read as 1); a
            schedule changes it with :meth:`set_scale`.
        device: where the counts live (the training device).
        table_size: cells of the count table.
    """

    def __init__(
        self,
        low: np.ndarray | torch.Tensor,
        high: np.ndarray | torch.Tensor,
        *,
        bins: int,
        scale: float,
        device: torch.device | str = "cpu",
        table_size: int = TABLE_SIZE,
    ) -> None:
        low_t = torch.as_tensor(np.asarray(low, dtype=np.float64).reshape(-1))
        high_t = torch.as_tensor(np.asarray(high, dtype=np.float64).reshape(-1))
        if low_t.shape != high_t.shape or low_t.numel() == 0:
            raise ValueError(f"low and high must be non-empty and of one shape, got {low_t.shape} and {high_t.shape}")
        bad = (~torch.isfinite(low_t) | ~torch.isfinite(high_t)).nonzero().reshape(-1).tolist()
        if bad:
            raise ValueError(
                f"the count bonus needs finite observation bounds, but dimensions {bad[:8]} are unbounded; "
                "use it on bounded observations (MountainCar, Acrobot, LunarLander, Discrete), or wrap the env "
                "to clip and bound them (gymnasium.wrappers.ClipObservation)"
            )
        if not 2 <= bins <= MAX_COUNT_BINS:
            raise ValueError(f"bins must be in [2, {MAX_COUNT_BINS}], got {bins}")
        if not (scale > 0 and np.isfinite(scale)):
            raise ValueError(f"scale must be a finite number > 0, got {scale}")
        self.device = torch.device(device)
        self.bins, self.table_size = int(bins), int(table_size)
        #: ``beta`` as a device scalar: a schedule changes it in place (no sync, graph-safe).
        self.scale = torch.tensor(float(scale), dtype=torch.float32, device=self.device)
        dims = low_t.numel()
        # A constant dimension (low == high) has one cell: a zero width maps it to cell 0.
        width = (high_t - low_t).clamp_min(0.0)
        self.low = low_t.to(torch.float32).to(self.device)
        self.inv_width = torch.where(width > 0, bins / width, torch.zeros_like(width)).to(torch.float32).to(self.device)
        self.exact = dims * np.log2(bins) <= np.log2(self.table_size)
        if self.exact:  # mixed radix: cell d weighs bins**d
            mult = torch.tensor([bins**d for d in range(dims)], dtype=torch.int64)
        else:  # a fixed hash: the same multipliers for every run of this grid and seed-free
            gen = torch.Generator().manual_seed(dims * MAX_COUNT_BINS + bins)
            mult = torch.randint(1, _HASH_MULT_BOUND, (dims,), generator=gen, dtype=torch.int64)
        self.mult = mult.to(self.device)
        self.counts = torch.zeros(self.table_size, dtype=torch.int64, device=self.device)
        self._ones = torch.ones(0, dtype=torch.int64, device=self.device)

    @classmethod
    def for_encoder(cls, encode: Any, **kwargs: Any) -> CountBonus:
        """The bonus over the rows ``encode`` makes (a gumbel_ac
        :class:`~gumbel_ac.vector.ObsEncoder`; :meth:`~gumbel_ac.vector.ObsEncoder.row_bounds`:
        one-hot rows lie in [0, 1], ``Box`` rows within the box's bounds times the encoder's scale). Raises
        ``ValueError`` for image observations and unbounded boxes."""
        if encode.kind == "image":
            raise ValueError(
                "the count bonus does not take image observations: a grid over pixels counts every frame as "
                "new; use it on low-dimensional observations"
            )
        low, high = encode.row_bounds()
        return cls(low, high, **kwargs)

    def set_scale(self, scale: float) -> None:
        """Set ``beta`` (>= 0; 0 turns the bonus off without changing the counts)."""
        if not (scale >= 0 and np.isfinite(scale)):
            raise ValueError(f"scale must be a finite number >= 0, got {scale}")
        self.scale.fill_(float(scale))

    def cells(self, obs_BD: torch.Tensor) -> torch.Tensor:
        """``[B]`` int64 table index of each row's grid cell."""
        scaled = (obs_BD.to(torch.float32) - self.low) * self.inv_width
        # NaN rows (never stored by the replay) would map to cell 0 rather than fail here.
        cell = torch.nan_to_num(scaled, nan=0.0).floor().clamp_(0, self.bins - 1).to(torch.int64)
        index = (cell * self.mult).sum(dim=-1)
        return index if self.exact else index.remainder(self.table_size)

    def observe(self, obs_BD: torch.Tensor, mask_B: torch.Tensor | None = None) -> None:
        """Count one visit to each row's cell (rows where ``mask_B`` is False are skipped)."""
        if mask_B is not None:
            visits = mask_B.to(torch.int64)
        else:  # every vector step has the same rows: one tensor of ones, made once
            if self._ones.shape[0] != obs_BD.shape[0]:
                self._ones = torch.ones(obs_BD.shape[0], dtype=torch.int64, device=self.device)
            visits = self._ones
        self.counts.index_add_(0, self.cells(obs_BD), visits)

    def bonus(self, obs_BD: torch.Tensor) -> torch.Tensor:
        """``[B]`` float32 ``scale / sqrt(max(n, 1))`` of each row's cell."""
        n = self.counts[self.cells(obs_BD)].clamp_min(1).to(torch.float32)
        return self.scale * n.rsqrt()

    @property
    def cells_visited(self) -> torch.Tensor:
        """Table cells with at least one visit: a 0-dim device tensor (reading it is the caller's
        choice; the trainer packs it into its one transfer per log window)."""
        return (self.counts > 0).sum()

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"counts": self.counts.clone()}

    def check_state_dict(self, state: dict[str, Any]) -> None:
        """``ValueError`` unless ``state`` is a count table this bonus can take."""
        counts = state.get("counts") if isinstance(state, dict) else None
        if not isinstance(counts, torch.Tensor) or counts.dtype != torch.int64 or counts.shape != self.counts.shape:
            got = (counts.dtype, tuple(counts.shape)) if isinstance(counts, torch.Tensor) else type(counts).__name__
            raise ValueError(
                f"exploration counts must be an int64 tensor of shape {tuple(self.counts.shape)}, got {got}"
            )
        if bool((counts < 0).any()):
            raise ValueError("exploration counts must be >= 0")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state_dict(state)
        self.counts.copy_(state["counts"].to(self.device))
