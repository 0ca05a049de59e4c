"""Test-wide settings: one torch thread (2-core CI), wandb never online, headless rendering;
and the ``script_main`` fixture that runs ``train.py`` / ``eval.py`` in-process."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("WANDB_SILENT", "true")

import torch  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def script_main() -> Callable[[str], Callable[[list[str]], int]]:
    """``script_main("eval")`` is ``main`` of the top-level ``eval.py`` (likewise ``train``).

    The scripts are not importable package modules; loading them by path lets a test call
    ``main(argv)`` in-process (no new interpreter importing torch, ~1 s each) and read the
    exit status it returns and what it printed (``capsys``).
    """

    def load(name: str) -> Callable[[list[str]], int]:
        module_name = f"_gumbel_ac_script_{name}"
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, ROOT / f"{name}.py")
            assert spec is not None and spec.loader is not None, name
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        return module.main

    return load
