"""Adam over one flat parameter buffer: a whole optimizer step in eight tensor ops.

Why not ``torch.optim.Adam``: at our network sizes the update is per-op overhead bound
(benchmarks/update_cost.py). ``Adam(foreach=True)`` on CPU still loops over every parameter
tensor (17 here), ~0.5 ms of a 1.8 ms gradient step, and reads its step counter with ``.item()``. Here every
trained parameter is a view into ONE flat tensor and every ``.grad`` a view into ONE flat
gradient (see :func:`flatten_parameters_`), so Adam (Kingma & Ba 2015, Algorithm 1, with
PyTorch's placement of ``eps`` after the bias-corrected square root) is a handful of ops on
long vectors; the step count is a Python int (no host sync on any device); per-group
learning rates become one ``lr`` vector.

The public surface mirrors ``torch.optim.Optimizer`` where callers touch it: ``param_groups``
(dicts with ``"lr"``, which SB3's learning-rate schedules write), ``step()``, ``zero_grad()``,
``state_dict()``/``load_state_dict()`` (tensors and plain Python values only: storable as
safetensors + JSON, loadable with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn


def flatten_parameters_(params: Sequence[nn.Parameter]) -> torch.Tensor:
    """Re-point ``params`` to views of one new contiguous tensor (values kept); return it.

    Call after the module is on its final device: ``module.to()`` replaces parameter data
    and breaks the views.
    """
    flat = torch.cat([p.detach().reshape(-1) for p in params]) if params else torch.zeros(0)
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat[offset : offset + n].view_as(p)
        offset += n
    return flat


def attach_flat_grad_(params: Sequence[nn.Parameter], flat_param: torch.Tensor) -> torch.Tensor:
    """Give every parameter a ``.grad`` that is a view into one flat zero tensor; return it.

    Autograd accumulates into an existing ``.grad`` in place, so after ``backward()`` the
    flat tensor holds the whole gradient (checked in tests/test_core.py).
    """
    flat_grad = torch.zeros_like(flat_param)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat_grad[offset : offset + n].view_as(p)
        offset += n
    return flat_grad


class FlatAdam:
    """Adam on a flat parameter/gradient pair with contiguous parameter groups.

    Args:
        flat_param: the parameters (views of it are the model's parameters).
        flat_grad: the gradient buffer (views of it are the parameters' ``.grad``).
        groups: ``(name, numel, lr)`` per group, in buffer order.
        betas, eps: as ``torch.optim.Adam``.
    """

    def __init__(
        self,
        flat_param: torch.Tensor,
        flat_grad: torch.Tensor,
        groups: Iterable[tuple[str, int, float]],
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        capturable: bool = False,
    ) -> None:
        self.flat_param, self.flat_grad = flat_param, flat_grad
        self.betas, self.eps = betas, eps
        self.param_groups: list[dict[str, Any]] = []
        offset = 0
        for name, numel, lr in groups:
            self.param_groups.append({"name": name, "lr": float(lr), "start": offset, "end": offset + numel})
            offset += numel
        if offset != flat_param.numel():
            raise ValueError(f"groups cover {offset} elements, the flat buffer has {flat_param.numel()}")
        self.exp_avg = torch.zeros_like(flat_param)
        self.exp_avg_sq = torch.zeros_like(flat_param)
        #: ``capturable``: the step count, the bias corrections and ``lr_scale`` live in device
        #: tensors, so a CUDA graph that captured ``step()`` stays right on every replay (as
        #: ``torch.optim.Adam(capturable=True)``; a few more ops per step). Otherwise they are
        #: Python numbers: no op and no sync.
        self.capturable = capturable
        self._step_t = torch.zeros((), dtype=torch.float64, device=flat_param.device)
        self._lr_scale_t = torch.ones((), dtype=flat_param.dtype, device=flat_param.device)
        self._steps = 0
        self._lr_scale = 1.0
        self._lr_key: tuple[float, ...] | None = None
        self._lr_vec = torch.empty_like(flat_param)

    @property
    def steps(self) -> int:
        """Adam steps taken (capturable: read from the device -- a sync, for checkpoints only)."""
        return int(self._step_t.item()) if self.capturable else self._steps

    @steps.setter
    def steps(self, value: int) -> None:
        self._steps = int(value)
        self._step_t.fill_(float(value))

    @property
    def lr_scale(self) -> float:
        """Multiplies every group's lr (set each iteration by the trainer's lr schedule)."""
        return self._lr_scale

    @lr_scale.setter
    def lr_scale(self, value: float) -> None:
        if self.capturable and value != self._lr_scale:
            self._lr_scale_t.fill_(value)  # a kernel with a host scalar: no sync
        self._lr_scale = float(value)

    def _lr_vector(self) -> torch.Tensor:
        key = tuple(float(g["lr"]) for g in self.param_groups)
        if key != self._lr_key:  # rebuilt only when a schedule changed an lr
            for group in self.param_groups:
                self._lr_vec[group["start"] : group["end"]] = float(group["lr"])
            self._lr_key = key
        return self._lr_vec

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero the flat gradient (``set_to_none`` is ignored: the views must survive)."""
        del set_to_none
        self.flat_grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step from ``flat_grad``."""
        beta1, beta2 = self.betas
        grad = self.flat_grad
        self.exp_avg.lerp_(grad, 1.0 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        if self.capturable:
            self._step_t += 1
            # Same formula on device scalars (float64 count, as the Python path's powers).
            bias1_t = (1.0 - torch.pow(beta1, self._step_t)).to(grad.dtype)
            bias2_sqrt_t = (1.0 - torch.pow(beta2, self._step_t)).sqrt().to(grad.dtype)
            denom = self.exp_avg_sq.sqrt().div_(bias2_sqrt_t).add_(self.eps)
            update = (self.exp_avg * self._lr_vector()).mul_(self._lr_scale_t / bias1_t)
            self.flat_param.addcdiv_(update, denom, value=-1.0)
            return
        self._steps += 1
        bias1 = 1.0 - beta1**self._steps
        bias2_sqrt = math.sqrt(1.0 - beta2**self._steps)
        denom = self.exp_avg_sq.sqrt().div_(bias2_sqrt).add_(self.eps)
        self.flat_param.addcdiv_(self.exp_avg * self._lr_vector(), denom, value=-self._lr_scale / bias1)

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "exp_avg": self.exp_avg.detach().clone(),
            "exp_avg_sq": self.exp_avg_sq.detach().clone(),
            "param_groups": [dict(g) for g in self.param_groups],
            "betas": list(self.betas),
            "eps": self.eps,
            "lr_scale": self.lr_scale,
        }

    def check_state_dict(self, state: Any) -> None:
        """Raise ``ValueError`` unless ``state`` is a :meth:`state_dict` of an optimizer over
        the same buffer and groups (nothing is changed)."""
        if not isinstance(state, dict):
            raise ValueError("optimizer state must be a dict")
        for key in ("exp_avg", "exp_avg_sq"):
            value = state.get(key)
            if (
                not isinstance(value, torch.Tensor)
                or value.shape != self.flat_param.shape
                or value.dtype != self.flat_param.dtype
            ):
                raise ValueError(f"optimizer state {key!r} does not match this model's parameters")
        groups: Any = state.get("param_groups")
        try:
            same = [(g["name"], g["start"], g["end"]) for g in groups] == [
                (g["name"], g["start"], g["end"]) for g in self.param_groups
            ]
            lrs = [float(g["lr"]) for g in groups]
            betas = [float(b) for b in state["betas"]]
            eps, lr_scale, steps = float(state["eps"]), float(state.get("lr_scale", 1.0)), state["steps"]
        except (KeyError, TypeError, ValueError):
            raise ValueError("optimizer state is missing fields or has the wrong types") from None
        if not same:
            raise ValueError("optimizer parameter groups do not match this model")
        if (
            not isinstance(steps, int)
            or isinstance(steps, bool)
            or steps < 0
            or len(betas) != 2
            or not all(math.isfinite(x) for x in [*lrs, *betas, eps, lr_scale])
        ):
            raise ValueError("optimizer state has an invalid step count, learning rate, beta or eps")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore moments, step count and learning rates in place; checked first
        (:meth:`check_state_dict`)."""
        self.check_state_dict(state)
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.steps = int(state["steps"])
        for group, saved in zip(self.param_groups, state["param_groups"], strict=True):
            group["lr"] = float(saved["lr"])
        self.betas = (float(state["betas"][0]), float(state["betas"][1]))
        self.eps = float(state["eps"])
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self._lr_key = None
