"""The checkpoint loader under hostile input: every bad file is one CheckpointError naming it.

A checkpoint is something people share, so ``load_run`` must treat its bytes as hostile:
truncated or bit-flipped files, manifests with the wrong JSON types or absurd sizes, a
safetensors header declaring a terabyte tensor (with a *matching* sha256 in the manifest, so
the checksum passes and the parser itself must refuse), a pickle renamed ``model.safetensors``
(whose ``__reduce__`` would create a marker file if it were ever unpickled), extra or missing
tensors. For each case the loader must either load a valid agent or raise
:class:`CheckpointError` whose message names the checkpoint; no other exception, no crash, no
large allocation (peak RSS is checked), no code execution.

The byte-level cases are a seeded fuzzer (reproducible: the case index is in the failure
message). ``FUZZ_CASES`` runs in the default suite (about 3000 cases, a few seconds);
``@pytest.mark.slow`` runs ten times more.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import random
import resource
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save as st_save

from gumbel_ac.agent import make_agent
from gumbel_ac.checkpoint import META_FILE, MODEL_FILE, TRAINING_FILE, CheckpointError, load_run, save_checkpoint
from gumbel_ac.config import Config
from gumbel_ac.distributions import ActionSpec

#: Per-family case counts in the default suite (x10 under -m slow).
FUZZ_CASES = {"model_flip": 1200, "model_truncate": 300, "meta_flip": 600, "meta_mutate": 900}

SPACES = {
    "observation_space": {"type": "Box", "shape": [4], "dtype": "float32"},
    "action_space": {"type": "Discrete", "n": 2, "start": 0},
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The three files of a small valid checkpoint (weights + training state)."""
    root = tmp_path_factory.mktemp("pristine")
    torch.manual_seed(0)
    cfg = Config(hidden_sizes=(8,))
    agent = make_agent(obs_dim=4, spec=ActionSpec((2,)), hidden_sizes=(8,), alpha=0.05, target_entropy_ratio=0.1)
    ckpt = save_checkpoint(
        root,
        step=32,
        agent=agent,
        config=cfg,
        spaces=SPACES,
        training_state={"rng.act": torch.Generator().manual_seed(1).get_state(), "loop.obs": torch.zeros(2, 4)},
        training_meta={"version": 1},
    )
    load_run(ckpt)  # sanity: the pristine files load
    return {name: (ckpt / name).read_bytes() for name in (MODEL_FILE, TRAINING_FILE, META_FILE)}


class Case:
    """A scratch checkpoint folder rewritten for each case."""

    def __init__(self, root: Path, pristine: dict[str, bytes]) -> None:
        self.dir = root / "checkpoints" / "step_000000032"
        self.dir.mkdir(parents=True)
        self.pristine = pristine

    def write(
        self, model: bytes | None = None, meta: bytes | dict[str, Any] | None = None, fix_checksum: bool = True
    ) -> None:
        """Write the files: ``model`` bytes (default pristine), ``meta`` bytes or a manifest dict
        (default pristine), with the manifest's sha256 of the model updated when asked."""
        model = self.pristine[MODEL_FILE] if model is None else model
        for name in (MODEL_FILE, TRAINING_FILE, META_FILE):
            p = self.dir / name
            if p.is_symlink() or p.exists():
                if p.is_dir() and not p.is_symlink():
                    p.rmdir()
                else:
                    p.unlink()
        (self.dir / MODEL_FILE).write_bytes(model)
        (self.dir / TRAINING_FILE).write_bytes(self.pristine[TRAINING_FILE])
        if meta is None or isinstance(meta, dict):
            manifest = json.loads(self.pristine[META_FILE]) if meta is None else meta
            if fix_checksum and isinstance(manifest.get("files"), dict):
                manifest["files"][MODEL_FILE] = _sha(model)
            meta = json.dumps(manifest).encode()
        (self.dir / META_FILE).write_bytes(meta)

    def check(self, label: str) -> str:
        """Load; return 'ok' or 'error'. Anything but CheckpointError fails the test."""
        try:
            load_run(self.dir)
        except CheckpointError as exc:
            assert str(self.dir) in str(exc), f"{label}: error does not name the checkpoint: {exc}"
            return "error"
        except BaseException as exc:  # noqa: BLE001 - exactly what must never happen
            pytest.fail(f"{label}: {type(exc).__name__} escaped the loader: {exc!r}")
        return "ok"


@pytest.fixture()
def case(tmp_path: Path, pristine: dict[str, bytes]) -> Case:
    return Case(tmp_path, pristine)


def _flip(data: bytes, rng: random.Random, header_bias: bool) -> bytes:
    buf = bytearray(data)
    if not buf:
        return bytes(buf)
    limit = len(buf)
    if header_bias and len(buf) > 8:
        limit = min(len(buf), 8 + struct.unpack("<Q", bytes(buf[:8]))[0] if len(buf) >= 8 else len(buf))
        limit = max(1, min(limit, len(buf)))
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(limit)
        buf[i] ^= rng.randint(1, 255)
    return bytes(buf)


_HOSTILE_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**63,
    10**30,
    -(10**30),
    1e308,
    -1e308,
    float("nan"),
    float("inf"),
    "",
    "x" * 1000,
    "../../etc/passwd",
    [],
    [0],
    [2**40],
    [-1],
    [65536] * 16,
    [1] * 100,
    {},
    {"a": 1},
    [[[]]],
    0.5,
    "64",
]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _mutate(manifest: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Replace or delete one node of the manifest, or add a key, with a hostile value."""
    m = copy.deepcopy(manifest)
    path = rng.choice(_paths(m)[1:])
    parent = m
    for key in path[:-1]:
        parent = parent[key]
    action = rng.random()
    if action < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
    elif action < 0.25 and isinstance(parent, dict):
        parent[f"extra{rng.randint(0, 9)}"] = rng.choice(_HOSTILE_VALUES)
    else:
        parent[path[-1]] = copy.deepcopy(rng.choice(_HOSTILE_VALUES))
    return m


def _run_family(case: Case, name: str, n: int, seed: int, make: Callable[[random.Random, int], None]) -> dict[str, int]:
    rng = random.Random(f"{name}-{seed}")
    outcomes = {"ok": 0, "error": 0}
    rss0 = _rss_mib()
    for i in range(n):
        make(rng, i)
        outcomes[case.check(f"{name} case {i} (seed {seed})")] += 1
    assert _rss_mib() - rss0 < 256, f"{name}: peak memory grew by {_rss_mib() - rss0:.0f} MiB"
    return outcomes


def _families(case: Case, scale: int) -> dict[str, dict[str, int]]:
    pristine = case.pristine
    manifest = json.loads(pristine[META_FILE])
    model = pristine[MODEL_FILE]
    results = {}
    results["model_flip"] = _run_family(
        case,
        "model_flip",
        FUZZ_CASES["model_flip"] * scale,
        scale,
        lambda rng, i: case.write(model=_flip(model, rng, header_bias=i % 2 == 0), fix_checksum=i % 10 != 0),
    )
    results["model_truncate"] = _run_family(
        case,
        "model_truncate",
        FUZZ_CASES["model_truncate"] * scale,
        scale,
        lambda rng, i: case.write(model=model[: rng.randrange(len(model))], fix_checksum=i % 5 != 0),
    )
    results["meta_flip"] = _run_family(
        case,
        "meta_flip",
        FUZZ_CASES["meta_flip"] * scale,
        scale,
        lambda rng, i: case.write(meta=_flip(pristine[META_FILE], rng, header_bias=False)),
    )
    results["meta_mutate"] = _run_family(
        case,
        "meta_mutate",
        FUZZ_CASES["meta_mutate"] * scale,
        scale,
        lambda rng, i: case.write(meta=_mutate(manifest, rng)),
    )
    return results


def test_fuzz_loader(case: Case) -> None:
    """~3000 seeded cases: bit flips/truncations of the weights (checksum fixed up so the
    parser sees them), bit flips of the manifest, structural manifest mutations."""
    results = _families(case, scale=1)
    print("fuzz outcomes:", results)
    # The fuzzer is not vacuous: most mutations are refused, and the flips include some
    # harmless ones (e.g. a weight's low mantissa bits) that still load.
    assert results["model_flip"]["error"] > 100 and results["meta_mutate"]["error"] > 100


@pytest.mark.slow
def test_fuzz_loader_long(case: Case) -> None:
    results = _families(case, scale=10)
    print("fuzz outcomes:", results)


# --- hand-crafted hostile files ------------------------------------------------------------


def _safetensors_with_header(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_huge_declared_shape_is_refused_without_allocating(case: Case) -> None:
    """A header declaring a [1e12] float32 tensor (4 TB) over 8 bytes of data, with the
    manifest's sha256 matching: the checksum passes; safetensors must refuse the header."""
    rss0 = _rss_mib()
    for shape, offsets in [
        ([10**12], [0, 4 * 10**12]),  # consistent header, data missing
        ([10**12], [0, 8]),  # shape and offsets disagree
        ([2**32, 2**32, 2**32], [0, 8]),  # element count overflows 64 bits
        ([2, 1], [0, 2**64 - 1]),  # offset at the u64 limit
    ]:
        header = {"log_alpha": {"dtype": "F32", "shape": shape, "data_offsets": offsets}}
        case.write(model=_safetensors_with_header(header, b"\0" * 8))
        assert case.check(f"shape {shape}") == "error"
    # Header length field claims 2**63 bytes.
    case.write(model=struct.pack("<Q", 2**63) + b"{}")
    assert case.check("header length 2**63") == "error"
    assert _rss_mib() - rss0 < 64


class _Evil:
    """Unpickling this creates the marker file: proof that code ran."""

    marker: Path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_pickle_payload_is_never_unpickled(case: Case, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    _Evil.marker = marker
    evil = _Evil()
    payloads = {f"pickle protocol {p}": pickle.dumps({"w": evil}, protocol=p) for p in (0, 2, 4, 5)}
    zip_path = tmp_path / "torch_save.pt"
    torch.save({"w": evil}, zip_path)  # torch.save's zip: a pickle inside
    payloads["torch.save zip"] = zip_path.read_bytes()
    for label, payload in payloads.items():
        assert not marker.exists()
        case.write(model=payload)  # checksum fixed up: only the format can refuse it
        assert case.check(label) == "error"
        assert not marker.exists(), f"{label}: the pickle payload ran"
    # Sanity: the payload is live (unpickling it does create the marker).
    pickle.loads(payloads["pickle protocol 4"])
    assert marker.exists()


def test_extra_missing_and_mistyped_tensors(case: Case, pristine: dict[str, bytes]) -> None:
    from safetensors.torch import load as st_load

    good = st_load(pristine[MODEL_FILE])
    variants = {
        "extra tensor": {**good, "backdoor": torch.zeros(3)},
        "missing tensor": {k: v for k, v in good.items() if k != "log_alpha"},
        "wrong dtype": {**good, "log_alpha": good["log_alpha"].double()},
        "wrong shape": {**good, "critic.w_out": torch.zeros(2, 9, 1)},
        "NaN weights": {**good, "critic.w_out": torch.full_like(good["critic.w_out"], float("nan"))},
        "log_alpha +inf": {**good, "log_alpha": torch.tensor(float("inf"))},
        "empty file": {},
    }
    for label, tensors in variants.items():
        case.write(model=st_save(tensors) if tensors else b"")
        assert case.check(label) == "error", label


def test_hostile_manifests(case: Case, pristine: dict[str, bytes]) -> None:
    manifest = json.loads(pristine[META_FILE])
    raw_cases = {
        "deeply nested JSON": b"[" * 200_000 + b"]" * 200_000,
        "integer with 10k digits": b'{"format": "gumbel_ac.checkpoint", "step": ' + b"9" * 10_000 + b"}",
        "not UTF-8": b"\xff\xfe{}",
        "a JSON list": b"[1, 2, 3]",
        "empty": b"",
        "NaN literal": json.dumps({**manifest, "step": float("nan")}).encode(),
        "over the size cap": b" " * (2 << 20) + b"{}",
    }
    for label, raw in raw_cases.items():
        case.write(meta=raw)
        assert case.check(label) == "error", label
    dict_cases = {
        "hidden_sizes of a terabyte net": {
            **manifest,
            "config": {**manifest["config"], "hidden_sizes": [65536] * 16},
            "obs_dim": 1 << 24,
        },
        "64 action heads of 2": {**manifest, "action_nvec": [2] * 64},
        "step as string": {**manifest, "step": "32"},
        "files as list": {**manifest, "files": [MODEL_FILE]},
        "config with unknown field": {**manifest, "config": {**manifest["config"], "__class__": "os.system"}},
        "format version 99": {**manifest, "format_version": 99},
    }
    rss0 = _rss_mib()
    for label, m in dict_cases.items():
        case.write(meta=m)
        assert case.check(label) == "error", label
    assert _rss_mib() - rss0 < 64


def test_non_regular_files(case: Case, tmp_path: Path) -> None:
    """A FIFO would block a naive reader forever; /dev/zero behind a symlink never ends."""
    case.write()
    (case.dir / MODEL_FILE).unlink()
    (case.dir / MODEL_FILE).symlink_to("/dev/zero")
    assert case.check("model -> /dev/zero") == "error"
    (case.dir / MODEL_FILE).unlink()
    os.mkfifo(case.dir / MODEL_FILE)
    assert case.check("model is a FIFO") == "error"
    (case.dir / MODEL_FILE).unlink()
    (case.dir / MODEL_FILE).mkdir()
    assert case.check("model is a directory") == "error"
    (case.dir / MODEL_FILE).rmdir()
    case.write()
    (case.dir / META_FILE).unlink()
    (case.dir / META_FILE).symlink_to("/dev/zero")
    with pytest.raises(CheckpointError):  # resolve_checkpoint sees a "meta.json"; reading refuses
        load_run(case.dir)


def test_eval_cli_on_a_hostile_checkpoint(
    case: Case, pristine: dict[str, bytes], script_main: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """eval.py's main: a header-corrupted model with a fixed-up checksum -> exit 2, one line.

    In-process (``main(argv)``): the subprocess smoke test of eval.py lives with the train ->
    eval round trip; starting an interpreter per error case only re-imports torch.
    """
    model = bytearray(pristine[MODEL_FILE])
    model[10:20] = b"\x00" * 10  # inside the JSON header
    case.write(model=bytes(model))
    assert script_main("eval")([str(case.dir)]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and MODEL_FILE in lines[0], err
