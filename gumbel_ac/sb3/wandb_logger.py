"""SB3's logged scalars to Weights & Biases.

``wandb.integration.sb3.WandbCallback`` uploads the config and model files, not the scalars
that go through SB3's logger (``rollout/ep_rew_mean``, ``train/critic_loss``, ...); with no
tensorboard installed they never reach wandb (docs/DESIGN.md §6). :class:`WandbOutputFormat` is an
SB3 ``KVWriter`` that sends each ``logger.dump()`` to ``wandb.log``; :func:`configure_logger`
builds SB3's usual stdout/CSV logger with it added::

    model.set_logger(configure_logger("runs/sb3", ["stdout", "csv"], track=True, project="gumbel_ac"))

wandb is imported only when tracking is on, and ``wandb.init`` is never given ``mode``: the
user's ``WANDB_MODE`` decides (``offline`` works without network; an explicit
``mode="online"`` would override it and block ~90 s without network).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.logger import KVWriter, Logger, make_output_format

#: The name to use in ``logger.record(key, value, exclude=...)`` to keep a key out of wandb.
FORMAT_NAME = "wandb"


class WandbOutputFormat(KVWriter):
    """Forward SB3 logger dumps (numeric values only) to a wandb run.

    Each dump becomes one ``run.log({...})`` with ``global_step`` = SB3's ``num_timesteps``,
    declared as the step metric of every key (wandb's own step counter is left alone, so
    callbacks that log to the same run cannot make steps go backwards).

    Args:
        run: a wandb run (or any object with ``log`` and ``define_metric``); ``None`` uses
            the active ``wandb.run`` or starts one with ``init_kwargs`` (no ``mode``).
        init_kwargs: passed to ``wandb.init`` when this format starts the run (it then also
            finishes it on ``close``).
    """

    def __init__(self, run: Any = None, **init_kwargs: Any) -> None:
        self._owns_run = False
        if run is None:
            import wandb

            run = wandb.run
            if run is None:
                if "mode" in init_kwargs and init_kwargs["mode"] == "online":
                    raise ValueError("do not pass mode='online'; set WANDB_MODE instead (docs/DESIGN.md §6)")
                run = wandb.init(**init_kwargs)
                self._owns_run = True
        self.run = run
        self._defined = False

    @staticmethod
    def _scalar(value: Any) -> float | int | None:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, numbers.Number) and not isinstance(value, complex):
            return value  # type: ignore[return-value]
        if isinstance(value, np.ndarray) and value.size == 1 and np.issubdtype(value.dtype, np.number):
            return value.item()
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            return value.item()
        return None  # videos, figures, images, strings: not forwarded

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        data: dict[str, Any] = {}
        for key, value in key_values.items():
            excluded = key_excluded.get(key) or ()
            if FORMAT_NAME in excluded:
                continue
            scalar = self._scalar(value)
            if scalar is not None:
                data[key] = scalar
        if not data:
            return
        if not self._defined:
            self.run.define_metric("global_step")
            self.run.define_metric("*", step_metric="global_step")
            self._defined = True
        data["global_step"] = int(step)
        self.run.log(data)

    def close(self) -> None:
        if self._owns_run:
            self.run.finish()


def configure_logger(
    folder: str | None = None,
    format_strings: Sequence[str] = ("stdout", "csv"),
    *,
    track: bool = False,
    run: Any = None,
    **wandb_init_kwargs: Any,
) -> Logger:
    """SB3's logger with the given output formats, plus wandb when ``track`` (or ``run``).

    ``folder`` is where SB3 writes ``progress.csv``/``log.txt`` (required for those
    formats). Use with ``model.set_logger(...)`` before ``learn``.
    """
    formats = [make_output_format(f, folder or ".", "") for f in format_strings]
    if track or run is not None:
        formats.append(WandbOutputFormat(run, **wandb_init_kwargs))
    return Logger(folder=folder, output_formats=formats)
