"""Shared hand-checkable inputs for the critic tests: a three-row batch over a 2-d observation
and one 3-way action, small enough that every target can be recomputed by hand."""

from __future__ import annotations

import torch

from gumbel_ac.losses import Batch


def three_row_batch() -> Batch:
    """One transition per action (0, 1, 2), distinct rewards, none terminal."""
    obs = torch.tensor([[0.1, -0.2], [0.5, 0.3], [1.0, 1.0]])
    next_obs = torch.tensor([[0.0, 0.4], [-0.3, 0.2], [0.7, -0.1]])
    return Batch(
        obs, torch.tensor([[0], [1], [2]]), torch.tensor([1.0, -0.5, 2.0]), next_obs, torch.zeros(3, dtype=torch.bool)
    )
