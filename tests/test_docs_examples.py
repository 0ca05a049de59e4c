"""Every ```python and ```bash example in README.md and docs/*.md runs, as a reader would run it.

Each fenced block whose info string is ``python`` or ``bash`` is one test (id ``file:line``).
It runs in a new interpreter or ``bash -e`` in a fresh temporary folder that holds links to
``train.py``, ``eval.py`` and ``benchmarks/``, so the ``runs/``, ``lab_out/`` and GIFs an
example writes never land in the repository; ``WANDB_MODE=disabled``, one torch thread.

Markers: an HTML comment on the line just before the opening fence (invisible on GitHub and
on the site) says how a block is run.

* no marker: run exactly as written; any failure fails the test.
* ``<!-- example: shortened -->``: run with the budget rewrites below, so a command that
  trains for minutes (or on a GPU) runs for seconds on the CPU.
* ``<!-- example: skip (REASON) -->``: not run; the reason is required (GPU only, several
  machines, installs packages, needs the ``docs`` extra that the tests' environment lacks).
* ``slow`` after ``shortened`` (``<!-- example: shortened slow -->``) marks the test ``slow``.

Any other marker text fails the test, so a typo cannot silently skip an example. README.md's
first block cannot carry a marker (the README's first lines are the two commands themselves):
it is run as ``shortened``. A block identical (code and marker) to one run earlier, e.g. a
README example repeated in the docs, is not run twice: its test is skipped naming the first.

Always, in every bash block:

* set-up steps are not run: ``python3 -m venv ...``, ``. .venv/bin/activate`` and
  ``pip install ...`` (the test runs inside the environment they make), nor
  ``python -m pytest ...`` (the suite this test belongs to); the rest of a ``&&`` chain runs;
* ``runs/<run-name>`` (any ``runs/<...>`` placeholder) becomes the newest run folder the
  block has made, or a small trained run copied in when it has made none.

The ``shortened`` rewrites (:data:`SHORT`), per command:

* ``train.py`` (also under ``torchrun``): ``--total-steps 2000`` (4000 with ``--resume``),
  ``--eval-every 1000``, ``--eval-episodes 2``, ``--final-eval-episodes 2``; ``--num-envs``
  at most 64, ``--num-seeds`` at most 2;
* ``eval.py``: ``--episodes 2``; ``python -m gumbel_ac.lab``: ``--draws 50 --no-plots``,
  ``--states 4`` with ``--run``; ``benchmarks/compare_estimators.py``: one task, two estimators, one seed,
  1000 steps, no sweep;
* anywhere: ``--device cuda`` becomes ``--device cpu``, ``--seeds a b c ...`` keeps ``a``,
  ``torchrun --nproc_per_node=N`` at most 2;
* python blocks: ``Config(`` gets ``total_steps=2_000, final_eval_episodes=2`` first,
  ``.learn(N`` becomes ``.learn(2_000``, ``episodes=N`` and ``n_eval_episodes=N`` become 2.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TIMEOUT_S = 300

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*example:\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Example:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str  # "" (none), "shortened", "skip", with "slow" optional
    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse_marker(text: str) -> tuple[str, str, bool]:
    """``(kind, reason, slow)`` of a marker's text; ValueError for anything unknown."""
    m = re.fullmatch(r"skip\s*\((.+)\)", text)
    if m:
        return "skip", m.group(1).strip(), False
    words = text.split()
    if words and words[0] == "shortened" and set(words[1:]) <= {"slow"}:
        return "shortened", "", "slow" in words
    raise ValueError(f"unknown example marker {text!r} (shortened, shortened slow, skip (REASON))")


def collect(path: Path) -> list[tuple[Example, bool]]:
    """The python/bash blocks of ``path`` with their markers, and whether each is slow."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[tuple[Example, bool]] = []
    i = 0
    first = True
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        lang = m.group(1)
        if lang in ("python", "bash"):
            prev = lines[i - 1] if i > 0 else ""
            mk = _MARKER.match(prev)
            kind, reason, slow = ("", "", False)
            if mk:
                try:
                    kind, reason, slow = parse_marker(mk.group(1))
                except ValueError as e:
                    kind, reason = "bad", str(e)
            elif first and path.name == "README.md":
                kind = "shortened"
            code = "\n".join(lines[i + 1 : j]) + "\n"
            out.append((Example(path, i + 1, lang, code, kind, reason), slow))
        first = False
        i = j + 1
    return out


EXAMPLES = [ex for path in DOCS for ex in collect(path)]


def _first_of_each() -> dict[tuple[str, str, str], str]:
    first: dict[tuple[str, str, str], str] = {}
    for ex, _ in EXAMPLES:
        first.setdefault((ex.lang, ex.marker, ex.code), ex.id)
    return first


FIRST = _first_of_each()


# ------------------------------------------------------------------------ rewriting


def _set_flag(tokens: list[str], flag: str, value: str) -> list[str]:
    """``flag value`` replaced if present (``--flag v`` or ``--flag=v``), else appended."""
    out = [t for t in tokens]
    for k, t in enumerate(out):
        if t == flag and k + 1 < len(out):
            out[k + 1] = value
            return out
        if t.startswith(flag + "="):
            out[k] = f"{flag}={value}"
            return out
    return out + [flag, value]


def _cap_flag(tokens: list[str], flag: str, cap: int) -> list[str]:
    out = list(tokens)
    for k, t in enumerate(out):
        if t == flag and k + 1 < len(out) and out[k + 1].isdigit():
            out[k + 1] = str(min(int(out[k + 1]), cap))
        elif t.startswith(flag + "=") and t.split("=", 1)[1].isdigit():
            out[k] = f"{flag}={min(int(t.split('=', 1)[1]), cap)}"
    return out


def _keep_first_value(tokens: list[str], flag: str) -> list[str]:
    """``--seeds 0 1 2`` -> ``--seeds 0``."""
    if flag not in tokens:
        return tokens
    k = tokens.index(flag)
    end = k + 1
    while end < len(tokens) and not tokens[end].startswith("-"):
        end += 1
    return tokens[: k + 2] + tokens[end:]


def shorten_command(tokens: list[str]) -> list[str]:
    """The ``shortened`` rewrites of one command (module docstring)."""
    t = list(tokens)
    for k in range(len(t) - 1):
        if t[k] == "--device" and t[k + 1].startswith("cuda"):
            t[k + 1] = "cpu"
    t = _cap_flag(t, "--nproc_per_node", 2)
    t = _keep_first_value(t, "--seeds")
    if any(x.endswith("train.py") for x in t):
        t = _set_flag(t, "--total-steps", "4000" if "--resume" in t else "2000")
        t = _set_flag(t, "--eval-every", "1000")
        t = _set_flag(t, "--eval-episodes", "2")
        t = _set_flag(t, "--final-eval-episodes", "2")
        t = _cap_flag(t, "--num-envs", 64)
        t = _cap_flag(t, "--num-seeds", 2)
    if any(x.endswith("eval.py") for x in t) and "--episodes" in t:
        t = _set_flag(t, "--episodes", "2")
    if "gumbel_ac.lab" in t:
        t = _set_flag(t, "--draws", "50")
        t = t if "--no-plots" in t else t + ["--no-plots"]
        if "--run" in t:
            t = _set_flag(t, "--states", "4")
    if any(x.endswith("compare_estimators.py") for x in t):
        t = [x for x in t if x != "--quick"]
        t = _keep_first_value(t, "--seeds")
        for flag, values in (
            ("--tasks", ["catch"]),
            ("--estimators", ["gumbel-st", "softmax-st"]),
            ("--seeds", ["0"]),
            ("--steps", ["catch=1000"]),
            ("--sweep-task", ["none"]),
            ("--workers", ["1"]),
        ):
            if flag in t:
                t = _keep_first_value(t, flag)
                k = t.index(flag)
                t = t[: k + 1] + values + t[k + 2 :]
            else:
                t += [flag, *values]
    return t


def _is_setup(tokens: list[str]) -> bool:
    """Steps the test environment has already taken, or this suite itself."""
    if not tokens:
        return True
    if tokens[:3] == ["python3", "-m", "venv"] or tokens[0] in (".", "source"):
        return True
    if tokens[0] == "pip" or tokens[:3] == ["python", "-m", "pip"]:
        return True
    return tokens[:3] == ["python", "-m", "pytest"]


def bash_script(code: str, shortened: bool) -> list[list[list[str]]]:
    """Per line, its ``&&`` chain of commands (tokens), set-up steps dropped."""
    joined = code.replace("\\\n", " ")
    lines: list[list[list[str]]] = []
    for raw in joined.splitlines():
        tokens = shlex.split(raw, comments=True)
        if not tokens:
            continue
        chain: list[list[str]] = [[]]
        for tok in tokens:
            if tok == "&&":
                chain.append([])
            else:
                chain[-1].append(tok)
        chain = [c for c in chain if not _is_setup(c)]
        if shortened:
            chain = [shorten_command(c) for c in chain]
        if chain:
            lines.append(chain)
    return lines


def shorten_python(code: str) -> str:
    code = re.sub(r"\bConfig\(", "Config(total_steps=2_000, final_eval_episodes=2, ", code)
    code = re.sub(r"\.learn\(\s*[\d_]+", ".learn(2_000", code)
    code = re.sub(r"\b(n_eval_episodes|episodes)=\d+", r"\1=2", code)
    return code


# ------------------------------------------------------------------------ running


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        WANDB_MODE="disabled",
        WANDB_SILENT="true",
        SDL_VIDEODRIVER="dummy",
        MPLBACKEND="Agg",
        OMP_NUM_THREADS="1",
    )
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _workdir(tmp: Path) -> Path:
    for name in ("train.py", "eval.py", "benchmarks"):
        (tmp / name).symlink_to(ROOT / name)
    return tmp


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained run, for ``runs/<run-name>`` in blocks that make none themselves."""
    work = _workdir(tmp_path_factory.mktemp("example_run"))
    argv = ["python", "train.py", "--total-steps", "2000", "--eval-every", "1000", "--eval-episodes", "2"]
    argv += ["--final-eval-episodes", "2", "--run-name", "example", "--no-progress"]
    _run(argv, work)
    return work / "runs" / "example"


def _run(argv: list[str], cwd: Path) -> None:
    proc = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(
            f"`{shlex.join(argv)}` exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
            f"--- stderr\n{proc.stderr[-6000:]}",
            pytrace=False,
        )


def _fill_placeholders(tokens: list[str], work: Path, example_run: Path) -> list[str]:
    out = []
    for tok in tokens:
        if re.search(r"runs/<[^>]+>", tok):
            runs = work / "runs"
            made = (
                sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
                if runs.exists()
                else []
            )
            # a folder of run folders (--num-seeds, compare) is not itself a run: take a run.
            made = [p for p in made if (p / "config.json").exists()]
            if not made:
                runs.mkdir(exist_ok=True)
                shutil.copytree(example_run, runs / "example")
                made = [runs / "example"]
            tok = re.sub(r"runs/<[^>]+>", f"runs/{made[-1].name}", tok)
        out.append(tok)
    return out


def _params() -> list[object]:
    params: list[object] = []
    for ex, slow in EXAMPLES:
        marks = [pytest.mark.slow] if slow else []
        params.append(pytest.param(ex, id=ex.id, marks=marks))
    return params


@pytest.mark.parametrize("example", _params())
def test_example_runs(example: Example, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if example.marker == "bad":
        pytest.fail(f"{example.id}: {example.reason}", pytrace=False)
    if example.marker == "skip":
        pytest.skip(f"marked skip: {example.reason}")
    same = FIRST[(example.lang, example.marker, example.code)]
    if same != example.id:
        pytest.skip(f"the same block as {same}, which runs it")
    work = _workdir(tmp_path)
    shortened = example.marker == "shortened"
    if example.lang == "python":
        code = shorten_python(example.code) if shortened else example.code
        script = work / "example.py"
        script.write_text(f"import torch\ntorch.set_num_threads(1)\n{code}", encoding="utf-8")
        _run([sys.executable, str(script)], work)
        return
    lines = bash_script(example.code, shortened)
    for chain in lines:
        for tokens in chain:
            if any(re.search(r"runs/<[^>]+>", t) for t in tokens):
                tokens = _fill_placeholders(tokens, work, request.getfixturevalue("example_run"))
            _run(tokens, work)


# ------------------------------------------------------------------------ the rules themselves


def test_every_doc_has_been_scanned_and_markers_parse() -> None:
    """The collector sees the known examples (README's first block among them)."""
    ids = [ex.id for ex, _ in EXAMPLES]
    assert ids[0] == "README.md:3", ids[:3]
    assert EXAMPLES[0][0].marker == "shortened"
    assert all(ex.marker != "bad" for ex, _ in EXAMPLES), [ex.reason for ex, _ in EXAMPLES if ex.marker == "bad"]
    with pytest.raises(ValueError):
        parse_marker("skip")  # a skip without a reason
    with pytest.raises(ValueError):
        parse_marker("shortend")


def test_rewrites() -> None:
    first = bash_script(
        'python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e ".[test]" '
        '&& python train.py\n. .venv/bin/activate && python -m pytest -m "not slow"\n',
        shortened=True,
    )
    assert first == [
        [
            [
                "python",
                "train.py",
                "--total-steps",
                "2000",
                "--eval-every",
                "1000",
                "--eval-episodes",
                "2",
                "--final-eval-episodes",
                "2",
            ]
        ]
    ]
    gpu = shorten_command(shlex.split("python train.py --num-envs 65536 --device cuda --total-steps 9"))
    assert gpu[:6] == ["python", "train.py", "--num-envs", "64", "--device", "cpu"]
    assert gpu[gpu.index("--total-steps") + 1] == "2000"
    assert shorten_python("train(Config(env='x'))\nm.learn(60_000, x)\nevaluate(a, episodes=20)") == (
        "train(Config(total_steps=2_000, final_eval_episodes=2, env='x'))\nm.learn(2_000, x)\nevaluate(a, episodes=2)"
    )
