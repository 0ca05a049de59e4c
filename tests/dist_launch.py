"""Test-only launcher for ``torchrun``: train.py's ``main`` with hooks installed from outside.

    torchrun ... tests/dist_launch.py [--dump DIR] [--fault RANK:UPDATE:MODE] -- <train.py args>

``--dump DIR``: after training, every rank writes ``rank<r>.safetensors`` (its flat
parameters, target critic, log-alpha and Adam moments), to check the ranks agree bit for bit.
``--fault RANK:UPDATE:MODE``: rank RANK raises (MODE ``raise``) or hangs (``hang``) in its
UPDATE-th gradient all-reduce. The package has no such switches: they live here, wrapped
around its public seams (the learner's ``grad_hook`` factory and the run's ``finish``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gumbel_ac.distributed as distributed  # noqa: E402
import gumbel_ac.trainer as trainer  # noqa: E402


def install_fault(spec: str) -> None:
    fault_rank, fault_update, mode = spec.split(":")
    make = distributed.make_grad_hook

    def faulty_factory(world_size: int, group: Any = None) -> Callable[[torch.Tensor], None]:
        hook = make(world_size, group)
        rank = int(os.environ.get("RANK", "0"))
        if rank != int(fault_rank):
            return hook
        calls = [0]

        def faulty(flat_grad: torch.Tensor) -> None:
            calls[0] += 1
            if calls[0] == int(fault_update):
                if mode == "hang":
                    # Let torchrun's SIGTERM end us at once (the trainer's stop flag would defer it).
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    time.sleep(3600)
                raise RuntimeError(f"injected failure on rank {rank} at update {calls[0]}")
            hook(flat_grad)

        return faulty

    distributed.make_grad_hook = faulty_factory  # type: ignore[assignment]


def install_dump(folder: str) -> None:
    finish = trainer._Run.finish

    def finish_and_dump(self: Any, interrupted: bool) -> Any:
        from safetensors.torch import save_file

        result = finish(self, interrupted)
        learner = self.learner
        tensors = {
            "flat_param": learner.flat_param,
            "flat_critic_target": learner.flat_critic_target,
            "log_alpha": learner.agent.log_alpha.data,
            "exp_avg": learner.optimizer.exp_avg,
            "exp_avg_sq": learner.optimizer.exp_avg_sq,
        }
        Path(folder).mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().reshape(-1).cpu().clone() for k, v in tensors.items()},
            str(Path(folder) / f"rank{self.dist.rank}.safetensors"),
        )
        return result

    trainer._Run.finish = finish_and_dump  # type: ignore[method-assign]


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser()
    parser.add_argument("--dump")
    parser.add_argument("--fault")
    hooks = parser.parse_args(argv[:split])
    if hooks.fault:
        install_fault(hooks.fault)
    if hooks.dump:
        install_dump(hooks.dump)
    import train

    return train.main(argv[split + 1 :])


if __name__ == "__main__":
    sys.exit(main())
