"""CUDA graphs for the update phase (``--cuda-graphs``).

Why: on a GPU with small batches the update is bound by the CPU launching ~250 small kernels
(measured on an H200: ~4.9 ms per 16-env iteration, the GPU mostly idle). A CUDA graph records
the kernels of one whole update -- replay sampling, forward, ONE backward, the non-finite
mask, Adam, Polyak, the metric accumulators -- once, and replays them with one launch
(PyTorch, "CUDA Graphs", whole-network capture: https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs).

What a replay cannot see is any Python value read at capture time, so the captured body must
read everything that changes from device tensors: the replay buffer's size
(:meth:`ReplayBuffer.sample_on_device`), Adam's step count and lr scale
(``FlatAdam(capturable=True)``), the Gumbel temperature (a 0-dim tensor the trainer fills each
iteration). Random numbers come from the trainer's own generators, registered with the graph
so each replay draws fresh values.

Falls back cleanly: on a CPU, under torchrun, with a torch that cannot register custom
generators, or if capture itself fails, :class:`CapturedStep` says so once and runs the same
body eagerly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["CapturedStep"]


class CapturedStep:
    """Call ``body()`` eagerly ``warmup`` times, then capture it into a CUDA graph and replay it.

    The warm-up calls are real steps (they update the model); they run on a side stream as
    PyTorch requires before capture (lazy cuBLAS/autograd initialisation must not happen during
    capture). Capturing records kernels without running them, so the call that captures also
    replays once: every call does exactly one step.

    Args:
        body: the step; all its inputs and outputs must be tensors with fixed addresses.
        generators: the CUDA generators ``body`` draws from (registered with the graph).
        enabled: False runs ``body`` eagerly (the clean fallback).
        report: called once with a one-line message if capture turns out to be impossible.
    """

    def __init__(
        self,
        body: Callable[[], None],
        *,
        generators: Sequence[torch.Generator],
        enabled: bool = True,
        warmup: int = 3,
        report: Callable[[str], None] = print,
    ) -> None:
        self.body = body
        self.generators = list(generators)
        self.warmup = warmup
        self.report = report
        self.graph: torch.cuda.CUDAGraph | None = None
        self.calls = 0
        self.enabled = enabled

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def _disable(self, why: str) -> None:
        self.enabled = False
        self.graph = None
        self.report(f"--cuda-graphs: {why}; running the update eagerly")

    def __call__(self) -> None:
        self.calls += 1
        if self.graph is not None:
            self.graph.replay()
            return
        if not self.enabled:
            self.body()
            return
        if self.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.body()
            torch.cuda.current_stream().wait_stream(side)
            return
        if self.generators and not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
            self._disable("this torch cannot register custom generators with a CUDA graph (needs torch >= 2.5)")
            self.body()
            return
        graph = torch.cuda.CUDAGraph()
        for gen in self.generators:
            graph.register_generator_state(gen)
        try:
            with torch.cuda.graph(graph):
                self.body()
        except RuntimeError as exc:  # nothing ran during the failed capture: do the step eagerly
            self._disable(f"capture failed ({str(exc).splitlines()[0]})")
            self.body()
            return
        self.graph = graph
        graph.replay()
