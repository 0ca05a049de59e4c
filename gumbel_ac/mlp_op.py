"""ReLU MLPs with a hand-written backward: one autograd node per network call.

What: two :class:`torch.autograd.Function` s, generic in depth and width,

- :class:`MLPFunction` -- ``x [B, in] -> Linear -> ReLU -> ... -> Linear`` with ``nn.Linear``
  parameters (weight ``[out, in]``, bias ``[out]``): the :class:`~gumbel_ac.networks.Actor`;
- :class:`TwinMLPFunction` -- the stacked twin critic of
  :class:`~gumbel_ac.networks.TwinCritic`: weights ``[2, in, out]``, biases ``[2, 1, out]``
  applied with ``torch.baddbmm``, a split first layer
  ``h1 = relu(obs @ W_obs + a @ W_act + b_in)`` whose inputs ``obs [B, D]`` and
  ``a [B, K]`` are shared by both twins, and output ``Q [2, B]``.

Why: at the sizes of this project (width 64, batch 32-128) a gradient step on a CPU is
bound by per-op overhead, not arithmetic. Autograd records a node per op in the forward and
replays it in the backward (for ``addmm`` + ``relu`` that is two nodes, a saved-tensor
bookkeeping step each, and an ``AccumulateGrad`` per parameter). Here a whole network call
is one node, and its backward issues only the matmuls and reductions the gradient needs.
The losses (:mod:`gumbel_ac.losses`) stay the single copy of the algorithm's maths: they
call the networks, which call these ops; everything around the networks is still autograd.

Measured (``benchmarks/update_cost.py``, torch 2.13 CPU, AVX512, one thread, width 64): the
whole gumbel-st update is *not* faster with the ops than with plain autograd -- 0.94x-1.01x
at batch 32-128 (the fused whole-step backward: 1.2x-1.5x; ``torch.compile`` of the loss:
1.24x-1.48x). Per step the ops cut the backward nodes from ~126 to ~86 but the aten calls only
from ~656 to ~633: the networks are a small share of the step's ops (the estimator, entropy,
target, Adam and the masking are the rest), and a Python ``Function`` costs about what the
C++ autograd nodes it replaces cost.

Backward (standard reverse-mode for an affine layer followed by a ReLU; e.g. Goodfellow,
Bengio, Courville, *Deep Learning*, 2016, §6.5; the PyTorch "Extending torch.autograd"
tutorial for the ``Function`` contract). With input activation ``h`` and upstream
gradient ``g = dL/dz`` of the layer's pre-activation ``z = h W + b``:

    dW = h^T g          db = sum_B g          dh = g W^T            (then, one layer down)
    dz_prev = dh * (h > 0)                    (ReLU, ``h`` the saved post-ReLU activation)

``nn.Linear`` stores ``W^T`` (``[out, in]``), so there ``dW = g^T h`` and ``dh = g W``. For the
twin layers every product is a ``bmm`` over the twin axis; the shared inputs of the first
layer get ``d obs = sum_i g_i W_obs,i^T`` and ``d a = sum_i g_i W_act,i^T`` (summed over the
twins, since both twins read the same tensor), and ``d W_obs,i = obs^T g_i``.

Only what ``ctx.needs_input_grad`` asks for is computed: the actor loss evaluates the critic
with detached parameters and needs only ``d a``, the critic loss needs only the parameter
gradients, and SB3's CNN policy also needs ``d obs`` (its features). The propagation stops
at the lowest layer anything is needed from.

ReLU at exactly zero: autograd's ``relu`` backward passes the gradient where the output is
``> 0`` and gives exactly 0 where it is 0 (a dead unit, or a tie at zero); so does
``g * (h > 0)`` here. The two differ only when something is already non-finite: autograd
gives 0 at a dead unit even for an infinite upstream gradient (here ``inf * 0 = NaN``) and
passes the gradient at a NaN activation (here NaN). Both cases need a non-finite loss, and
the update then drops the whole step's gradient either way (its non-finite guard).

No host synchronization and no Python branch on tensor values (the step is captured in a
CUDA graph on GPU); only public torch APIs. Under ``torch.no_grad()`` (or when nothing
requires a gradient) :func:`mlp` and :func:`twin_mlp` just run the forward and save nothing.

Switch: :func:`set_enabled` / the context manager :func:`disabled` make the networks use
their plain autograd forward instead (the equality tests and ``benchmarks/update_cost.py``
compare both). The switch is a process-wide flag read at call time.

Shape legend: ``B`` batch, ``D`` observation features, ``K`` action width, ``W`` hidden
width, ``2`` the twin axis.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

__all__ = [
    "MLPFunction",
    "TwinMLPFunction",
    "disabled",
    "is_enabled",
    "mlp",
    "set_enabled",
    "twin_mlp",
]

_ENABLED = True


def is_enabled() -> bool:
    """Whether the networks use the hand-written-backward ops (the default) or plain autograd."""
    return _ENABLED


def set_enabled(flag: bool) -> None:
    """Turn the ops on (``True``, default) or off (the networks' plain autograd forward)."""
    global _ENABLED
    _ENABLED = bool(flag)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """``with mlp_op.disabled(): ...`` runs the networks on plain autograd ops (then restores)."""
    previous = _ENABLED
    set_enabled(False)
    try:
        yield
    finally:
        set_enabled(previous)


def _relu_backward_(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``g * (h > 0)`` for a post-ReLU activation ``h`` (in place: ``g`` is ours).

    Computed as ``g * sign(h)``: for ``h >= 0``, ``sign(h)`` *is* ``(h > 0)`` as a float (1 or
    exactly 0), and it is a plain float op. Measured here (torch 2.13, CPU, one thread, a
    ``[256, 64]`` float32 tensor): ``sign`` + ``mul_`` ~5 us, ``g * (h > 0)`` ~21 us (the bool
    mask and the mixed-dtype multiply), ``torch.where(h > 0, g, 0)`` and ``masked_fill_`` ~58 us.
    """
    return g.mul_(torch.sign(h))


def _needs_graph(tensors: Sequence[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


# ----------------------------------------------------------------------------- plain MLP


def _mlp_forward(x: torch.Tensor, params: Sequence[torch.Tensor], acts: list[torch.Tensor] | None) -> torch.Tensor:
    """``params = (W_0, b_0, W_1, b_1, ...)`` in ``nn.Linear`` layout; appends post-ReLU
    activations (the input of each layer after the first) to ``acts`` when given."""
    n_layers = len(params) // 2
    h = x
    for i in range(n_layers):
        h = torch.addmm(params[2 * i + 1], h, params[2 * i].t())
        if i < n_layers - 1:
            h = torch.relu_(h)
            if acts is not None:
                acts.append(h)
    return h


class MLPFunction(torch.autograd.Function):
    """``x [B, in]`` through ``Linear -> ReLU -> ... -> Linear``; ``apply(x, W_0, b_0, W_1, b_1, ...)``.

    Weights ``W_i`` are ``[out, in]`` and biases ``[out]`` (``nn.Linear``'s layout). Saves the
    input and the post-ReLU activations; the backward is written out (module docstring).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        acts: list[torch.Tensor] = [x]
        out = _mlp_forward(x, params, acts)
        ctx.save_for_backward(*acts, *params[0::2])
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        needs: tuple[bool, ...] = ctx.needs_input_grad
        saved = ctx.saved_tensors
        n_layers = len(saved) // 2
        acts, weights = saved[:n_layers], saved[n_layers:]
        grads: list[torch.Tensor | None] = [None] * len(needs)
        # Lowest layer whose input gradient is still needed by someone below it.
        lowest = 0 if needs[0] else next((i for i in range(n_layers) if needs[1 + 2 * i] or needs[2 + 2 * i]), n_layers)
        g = grad_out
        for i in range(n_layers - 1, lowest - 1, -1):
            h = acts[i]
            if needs[1 + 2 * i]:
                grads[1 + 2 * i] = torch.mm(g.t(), h)  # dW = g^T h  ([out, in])
            if needs[2 + 2 * i]:
                grads[2 + 2 * i] = g.sum(0)  # db = sum_B g
            if i > lowest:
                g = _relu_backward_(torch.mm(g, weights[i]), h)  # dz_prev = g W * (h > 0)
            elif i == 0 and needs[0]:
                grads[0] = torch.mm(g, weights[0])  # dx = g W
        return tuple(grads)


def mlp(x: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The ReLU MLP ``params = (W_0, b_0, W_1, b_1, ...)`` on ``x``: :class:`MLPFunction` when a
    gradient is wanted, else just the forward (nothing saved)."""
    if _needs_graph([x, *params]):
        return MLPFunction.apply(x, *params)
    return _mlp_forward(x, params, None)


# ----------------------------------------------------------------------------- twin MLP


def _twin_forward(
    obs_BD: torch.Tensor,
    action_BK: torch.Tensor,
    params: Sequence[torch.Tensor],
    acts: list[torch.Tensor] | None,
) -> torch.Tensor:
    """``params = (W_obs, W_act, b_in, *hidden_w, *hidden_b, W_out, b_out)``; ``Q [2, B]``.

    Appends the post-ReLU activations ``[2, B, W]`` of every hidden layer to ``acts`` when given.
    """
    w_obs, w_act, b_in = params[0], params[1], params[2]
    n_hidden = (len(params) - 5) // 2
    hidden_w, hidden_b = params[3 : 3 + n_hidden], params[3 + n_hidden : 3 + 2 * n_hidden]
    h = torch.baddbmm(b_in, obs_BD.expand(2, -1, -1), w_obs)
    h = torch.relu_(h.baddbmm_(action_BK.expand(2, -1, -1), w_act))
    if acts is not None:
        acts.append(h)
    for weight, bias in zip(hidden_w, hidden_b):
        h = torch.relu_(torch.baddbmm(bias, h, weight))
        if acts is not None:
            acts.append(h)
    return torch.baddbmm(params[-1], h, params[-2]).squeeze(-1)


class TwinMLPFunction(torch.autograd.Function):
    """The twin critic trunk: ``apply(obs, action, W_obs, W_act, b_in, *hidden_w, *hidden_b, W_out, b_out)``.

    ``obs [B, D]`` and ``action [B, K]`` are shared by both twins; weights are ``[2, in, out]``,
    biases ``[2, 1, out]``; the output is ``Q [2, B]``. Backward formulas: module docstring.
    """

    @staticmethod
    def forward(ctx: Any, obs_BD: torch.Tensor, action_BK: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        acts: list[torch.Tensor] = []
        q = _twin_forward(obs_BD, action_BK, params, acts)
        n_hidden = (len(params) - 5) // 2
        # Saved: obs, action, W_obs, W_act, the weights after the first layer, activations.
        ctx.save_for_backward(obs_BD, action_BK, params[0], params[1], *params[3 : 3 + n_hidden], params[-2], *acts)
        ctx.n_hidden = n_hidden
        return q

    @staticmethod
    def backward(ctx: Any, grad_q: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        needs: tuple[bool, ...] = ctx.needs_input_grad
        n_hidden: int = ctx.n_hidden
        saved = ctx.saved_tensors
        obs, action, w_obs, w_act = saved[:4]
        hidden_w = saved[4 : 4 + n_hidden]
        w_out = saved[4 + n_hidden]
        acts = saved[5 + n_hidden :]  # n_hidden + 1 post-ReLU activations
        grads: list[torch.Tensor | None] = [None] * len(needs)
        # Input index of: obs 0, action 1, W_obs 2, W_act 3, b_in 4, hidden_w 5.., hidden_b, W_out, b_out.
        i_hw, i_hb, i_wout, i_bout = 5, 5 + n_hidden, 5 + 2 * n_hidden, 6 + 2 * n_hidden

        g = grad_q.unsqueeze(-1)  # [2, B, 1]
        if needs[i_wout]:
            grads[i_wout] = torch.bmm(acts[-1].transpose(1, 2), g)  # dW = h^T g
        if needs[i_bout]:
            grads[i_bout] = g.sum(1, keepdim=True)  # db = sum_B g
        # Layers below the output (layer n_hidden is the first hidden layer's input side, 0).
        # need_below[j]: something at or below hidden layer j (0 = first layer) needs a gradient.
        first_needed = any(needs[:5])
        need_below = [first_needed or any(needs[i_hw + k] or needs[i_hb + k] for k in range(j)) for j in range(n_hidden + 1)]
        if not need_below[n_hidden]:
            return tuple(grads)
        g = _relu_backward_(g * w_out.transpose(1, 2), acts[-1])  # [2, B, W]
        for k in range(n_hidden - 1, -1, -1):  # hidden layer k maps acts[k] -> acts[k + 1]
            h = acts[k]
            if needs[i_hw + k]:
                grads[i_hw + k] = torch.bmm(h.transpose(1, 2), g)
            if needs[i_hb + k]:
                grads[i_hb + k] = g.sum(1, keepdim=True)
            if not need_below[k]:
                return tuple(grads)
            g = _relu_backward_(torch.bmm(g, hidden_w[k].transpose(1, 2)), h)
        # First layer: g = dL/dz1 [2, B, W] with z1 = obs W_obs + a W_act + b_in.
        if needs[0]:
            grads[0] = torch.bmm(g, w_obs.transpose(1, 2)).sum(0)  # sum over twins
        if needs[1]:
            grads[1] = torch.bmm(g, w_act.transpose(1, 2)).sum(0)
        if needs[2]:
            grads[2] = torch.bmm(obs.t().expand(2, -1, -1), g)
        if needs[3]:
            grads[3] = torch.bmm(action.t().expand(2, -1, -1), g)
        if needs[4]:
            grads[4] = g.sum(1, keepdim=True)
        return tuple(grads)


def twin_mlp(obs_BD: torch.Tensor, action_BK: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """``Q [2, B]`` of the twin trunk ``params = (W_obs, W_act, b_in, *hidden_w, *hidden_b, W_out, b_out)``:
    :class:`TwinMLPFunction` when a gradient is wanted, else just the forward (nothing saved)."""
    if _needs_graph([obs_BD, action_BK, *params]):
        return TwinMLPFunction.apply(obs_BD, action_BK, *params)
    return _twin_forward(obs_BD, action_BK, params, None)
