"""MinAtar games against the reference package (``minatar==1.0.15``), stepped side by side.

The torch env draws one 24-bit integer per random slot per row per step (``envs/minatar.py``);
a test hook records them, and every reference env gets a ``RandomState`` stand-in that answers
each ``rand``/``randint`` call of the reference with the recorded draw of the slot that call
site stands for (found from the calling function's name, in reset or in a step). Both sides then
see the same randomness -- sticky actions, spawns, car speeds, start states -- and must agree
exactly: observations (ours channel-first), rewards, terminations, ``final_obs`` and the
start state after every autoreset.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

minatar = pytest.importorskip("minatar")
from minatar import Environment  # noqa: E402

from gumbel_ac.envs import make  # noqa: E402
from gumbel_ac.envs.minatar import MinAtarEnv  # noqa: E402

# make_vec warns that a -v0 id is "out of date" when a -v1 exists: both are meant here.
pytestmark = pytest.mark.filterwarnings("ignore:.*is out of date")

GAMES = {
    "breakout": "Breakout",
    "freeway": "Freeway",
    "asterix": "Asterix",
    "space_invaders": "SpaceInvaders",
    "seaquest": "Seaquest",
}


class ReplayRandom:
    """A ``RandomState`` stand-in answering the reference's draws from recorded slots.

    ``layout`` maps the reference function that draws (``"act"`` for the sticky draw) to its
    first slot; consecutive draws of one call take consecutive slots. Draws inside a ``reset``
    read the reset slots, all others the step slots.
    """

    def __init__(self, step_layout: dict[str, int], reset_layout: dict[str, int]) -> None:
        self.layout = {"step": step_layout, "reset": reset_layout}
        self.rows: dict[str, np.ndarray] = {}
        self.used: dict[tuple[str, str], int] = {}

    def begin(self, step_row: np.ndarray | None = None, reset_row: np.ndarray | None = None) -> None:
        if step_row is not None:
            self.rows["step"] = step_row
        if reset_row is not None:
            self.rows["reset"] = reset_row
        self.used = {}

    def _take(self, n: int) -> np.ndarray:
        frame = sys._getframe(2)
        name = frame.f_code.co_name
        kind = "step"
        f: Any = frame
        while f is not None:
            if f.f_code.co_name == "reset" and "minatar" in f.f_code.co_filename:
                kind = "reset"
                break
            f = f.f_back
        start = self.layout[kind][name] + self.used.get((kind, name), 0)
        self.used[(kind, name)] = self.used.get((kind, name), 0) + n
        return self.rows[kind][start : start + n].astype(np.int64)

    def rand(self, *size: int) -> Any:
        m = self._take(int(np.prod(size)) if size else 1) / float(1 << 24)
        return m.reshape(size) if size else float(m[0])

    def randint(self, low: int, high: int | None = None, size: int | None = None) -> Any:
        if high is None:
            low, high = 0, low
        m = self._take(size or 1)
        v = low + ((m * (high - low)) >> 24)
        return v if size is not None else int(v[0])


def _layouts(env: MinAtarEnv) -> tuple[dict[str, int], dict[str, int]]:
    def first(slots: tuple[str, ...], offset: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for i, s in enumerate(slots):
            out.setdefault(s.split(".")[0], i + offset)
        return out

    return {"act": 0, **first(env.STEP_SLOTS, 1)}, first(env.RESET_SLOTS, 0)


def _ref_obs(refs: list[Environment]) -> np.ndarray:
    return np.stack([r.state() for r in refs]).transpose(0, 3, 1, 2).astype(np.uint8)


Policy = Callable[[int, torch.Tensor, np.random.Generator], torch.Tensor]


class Probe:
    """Counts events of a game from the reference envs' internals around each step."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.pre: list[Any] = []

    def add(self, key: str, k: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + k

    def most(self, key: str, v: int) -> None:
        self.counts[key] = max(self.counts.get(key, v), v)

    def before(self, refs: list[Environment]) -> None:
        raise NotImplementedError

    def after(self, refs: list[Environment], dones: np.ndarray) -> None:
        raise NotImplementedError


def _random_policy(t: int, obs: torch.Tensor, rng: np.random.Generator, n_actions: int) -> torch.Tensor:
    return torch.as_tensor(rng.integers(0, n_actions, size=obs.shape[0]))


def run_side_by_side(
    game: str,
    steps: int,
    n: int = 8,
    minimal: bool = True,
    sticky: float = 0.1,
    ramping: bool = True,
    seed: int = 0,
    policy: Callable[[int, torch.Tensor, np.random.Generator, int], torch.Tensor] = _random_policy,
    setup: Callable[[MinAtarEnv, list[Environment]], None] | None = None,
    probe: Probe | None = None,
) -> dict[str, int]:
    """Step ours and ``n`` reference envs together; assert equality; return a few counts.

    ``probe`` watches the reference envs around every step (``before``/``after``, the latter
    before the ended ones reset) and adds its event counts to the result.
    """
    env_id = f"MinAtar-{GAMES[game]}-v{1 if minimal else 0}"
    env = make(
        env_id, n, seed=seed, reset_block=1, noise="generator", sticky_action_prob=sticky, difficulty_ramping=ramping
    )
    assert isinstance(env, MinAtarEnv)
    draw_rng = np.random.RandomState(seed)
    recorded: dict[str, np.ndarray] = {}

    def hook(kind: str, shape: tuple[int, ...]) -> torch.Tensor:
        recorded[kind] = draw_rng.randint(0, 1 << 24, size=shape)
        return torch.from_numpy(recorded[kind])

    env.draw_hook = hook
    step_layout, reset_layout = _layouts(env)
    refs = [Environment(game, sticky_action_prob=sticky, difficulty_ramping=ramping) for _ in range(n)]
    fakes = [ReplayRandom(step_layout, reset_layout) for _ in range(n)]
    for ref, fake in zip(refs, fakes, strict=True):
        ref.random = ref.env.random = fake  # type: ignore[assignment]
    obs, _ = env.reset()
    resets = recorded.get("reset", np.zeros((1, n, 0), dtype=np.int64)).reshape(n, -1)
    for i, (ref, fake) in enumerate(zip(refs, fakes, strict=True)):
        fake.begin(reset_row=resets[i])
        ref.reset()
    if setup is not None:
        setup(env, refs)
        obs = env._observe(env.state)
    np.testing.assert_array_equal(obs.numpy(), _ref_obs(refs))
    action_set = np.array(env.action_set)
    n_actions = len(action_set)
    rng = np.random.default_rng(seed)
    counts = {"reward": 0, "done": 0, "sticky": 0}
    for t in range(steps):
        actions = policy(t, obs, rng, n_actions)
        obs, r, term, trunc, info = env.step(actions)
        resets = recorded.get("reset", np.zeros((1, n, 0), dtype=np.int64)).reshape(n, -1)
        rewards, dones = np.zeros(n, dtype=np.float32), np.zeros(n, dtype=bool)
        if probe is not None:
            probe.before(refs)
        for i, (ref, fake) in enumerate(zip(refs, fakes, strict=True)):
            fake.begin(step_row=recorded["step"][i], reset_row=resets[i])
            rewards[i], dones[i] = ref.act(int(action_set[int(actions[i])]))
        final = _ref_obs(refs)
        where = f"{env_id} step {t}"
        np.testing.assert_array_equal(info["final_obs"].numpy(), final, err_msg=where)
        np.testing.assert_array_equal(r.numpy(), rewards, err_msg=where)
        np.testing.assert_array_equal(term.numpy(), dones, err_msg=where)
        assert not trunc.any()
        if probe is not None:
            probe.after(refs, dones)
        for i in np.flatnonzero(dones):
            refs[i].reset()
        np.testing.assert_array_equal(obs.numpy(), _ref_obs(refs), err_msg=where)
        la = env.state[2].numpy()
        assert all(int(la[i]) == refs[i].last_action for i in range(n)), where
        counts["reward"] += int((rewards != 0).sum())
        counts["done"] += int(dones.sum())
        counts["sticky"] += int((recorded["step"][:, 0] < (sticky * (1 << 24))).sum())
    if probe is not None:
        counts.update(probe.counts)
    return counts


@pytest.mark.parametrize("minimal", [True, False], ids=["v1", "v0"])
def test_breakout_matches_reference(minimal: bool) -> None:
    counts = run_side_by_side("breakout", steps=400 if minimal else 200, n=12, minimal=minimal)
    assert counts["reward"] > 20 and counts["done"] > 10 and counts["sticky"] > 100


def _breakout_tracker(t: int, obs: torch.Tensor, rng: np.random.Generator, n_actions: int) -> torch.Tensor:
    """Follow the ball (n l r): long episodes, walls cleared and refilled, strike quirks."""
    ball_x = obs[:, 1].amax(dim=1).float().argmax(dim=1)
    paddle = obs[:, 0, 9].float().argmax(dim=1)
    a = torch.where(ball_x < paddle, 1, torch.where(ball_x > paddle, 2, 0))
    noise = torch.as_tensor(rng.random(obs.shape[0]) < 0.05)
    return torch.where(noise, torch.as_tensor(rng.integers(0, 3, obs.shape[0])), a)


def test_breakout_scripted_long_episodes() -> None:
    counts = run_side_by_side("breakout", steps=1500, n=4, policy=_breakout_tracker, sticky=0.02, seed=3)
    assert counts["reward"] > 150


@pytest.mark.parametrize("game", ["freeway", "asterix", "space_invaders", "seaquest"])
@pytest.mark.parametrize("minimal", [True, False], ids=["v1", "v0"])
def test_random_policy_matches_reference(game: str, minimal: bool) -> None:
    counts = run_side_by_side(game, steps=300 if minimal else 150, n=12, minimal=minimal, seed=1)
    assert counts["sticky"] > 100


def _always(action: int) -> Callable[[int, torch.Tensor, np.random.Generator, int], torch.Tensor]:
    def policy(t: int, obs: torch.Tensor, rng: np.random.Generator, n_actions: int) -> torch.Tensor:
        noise = rng.random(obs.shape[0]) < 0.1
        return torch.as_tensor(np.where(noise, rng.integers(0, n_actions, obs.shape[0]), action))

    return policy


def test_freeway_crossings_and_time_limit() -> None:
    """Mostly "up": many crossings (new car speeds), and the 2501-step episode end."""
    counts = run_side_by_side("freeway", steps=2600, n=3, policy=_always(1), seed=2)
    assert counts["reward"] > 60 and counts["done"] == 3


def _set(env: MinAtarEnv, index: int, values: list[int] | np.ndarray) -> None:
    state = list(env.state)
    state[index] = torch.as_tensor(np.asarray(values), dtype=state[index].dtype).expand_as(state[index]).clone()
    env.state = tuple(state)


def _asterix_hard(env: MinAtarEnv, refs: list[Environment]) -> None:
    """Late-game difficulty: fast spawns and moves, ramps due soon, odd and even ramp levels."""
    rng = np.random.default_rng(7)
    n = len(refs)
    fields = {
        "spawn_speed": rng.integers(1, 4, n),
        "move_speed": rng.integers(1, 4, n),
        "ramp_index": rng.integers(0, 6, n),
        "ramp_timer": rng.integers(-1, 8, n),
        "spawn_timer": rng.integers(0, 2, n),
        "move_timer": rng.integers(0, 2, n),
    }
    index = {
        "spawn_speed": 9,
        "spawn_timer": 10,
        "move_speed": 11,
        "move_timer": 12,
        "ramp_timer": 13,
        "ramp_index": 14,
    }
    for name, values in fields.items():
        _set(env, index[name], values)
        for ref, v in zip(refs, values, strict=True):
            setattr(ref.env, name, int(v))


@pytest.mark.parametrize("ramping", [True, False])
def test_asterix_ramping_and_full_rows(ramping: bool) -> None:
    counts = run_side_by_side("asterix", steps=500, n=10, setup=_asterix_hard, ramping=ramping, seed=4)
    assert counts["reward"] > 20 and counts["done"] > 10


def _space_invaders_sparse(env: MinAtarEnv, refs: list[Environment]) -> None:
    """Few aliens at random places (fast aliens, waves cleared quickly), random timers."""
    rng = np.random.default_rng(8)
    n = len(refs)
    aliens = np.zeros((n, 10, 10), dtype=bool)
    for _ in range(2):
        aliens[np.arange(n), rng.integers(0, 6, n), rng.integers(0, 10, n)] = True
    state = list(env.state)
    state[6] = torch.as_tensor(aliens)
    dirs = rng.choice([-1, 1], n)
    state[7] = torch.as_tensor(dirs)
    intervals = rng.integers(6, 13, n)
    state[8] = torch.as_tensor(intervals)
    env.state = tuple(state)
    for i, ref in enumerate(refs):
        ref.env.alien_map = aliens[i].astype(float)
        ref.env.alien_dir = int(dirs[i])
        ref.env.enemy_move_interval = int(intervals[i])


def _space_invaders_hunter(t: int, obs: torch.Tensor, rng: np.random.Generator, n_actions: int) -> torch.Tensor:
    """n l r f: fire, else move under the nearest alien column; 10% random."""
    cannon = obs[:, 0, 9].float().argmax(dim=1)
    cols = obs[:, 1].amax(dim=1).bool()
    dist = (torch.arange(10) - cannon.unsqueeze(1)).abs() + torch.where(cols, 0, 100)
    target = dist.argmin(dim=1)
    move = torch.where(target < cannon, 1, torch.where(target > cannon, 2, 3))
    a = torch.where(torch.as_tensor(rng.random(obs.shape[0]) < 0.5), 3, move)
    return torch.where(
        torch.as_tensor(rng.random(obs.shape[0]) < 0.1), torch.as_tensor(rng.integers(0, 4, obs.shape[0])), a
    )


def test_space_invaders_waves_and_ramping() -> None:
    counts = run_side_by_side(
        "space_invaders", steps=800, n=6, setup=_space_invaders_sparse, policy=_space_invaders_hunter, seed=5
    )
    assert counts["reward"] > 100 and counts["done"] > 3


class SeaquestProbe(Probe):
    """Seaquest's branches, read off ``minatar/environments/seaquest.py``'s ``Env`` attributes."""

    def before(self, refs: list[Environment]) -> None:
        self.pre = [
            (e.diver_count, e.oxygen, e.surface, [list(b) for b in e.e_bullets])
            for e in (r.env for r in refs)  # type: ignore[attr-defined]
        ]

    def after(self, refs: list[Environment], dones: np.ndarray) -> None:
        for (dc, oxygen, surface, _), ref, done in zip(self.pre, refs, dones, strict=True):
            e: Any = ref.env
            player = [e.sub_x, e.sub_y]
            surfaced = not surface and e.surface
            self.add("surface_6_divers", int(surfaced and dc == 6))
            self.add("surface_some_divers", int(surfaced and 0 < dc < 6))
            self.add("surface_negative_divers", int(surfaced and dc < 0))
            self.add("surface_no_divers_ends", int(done and not surface and e.sub_y == 0 and e.diver_count == 0))
            self.add("oxygen_out", int(done and oxygen <= 0))
            self.add("pickups", max(0, e.diver_count - dc) if not surfaced else 0)
            hit_e = any(b[0:2] == player or [b[0] - (1 if b[2] else -1), b[1]] == player for b in e.e_bullets)
            self.add("enemy_bullet_hits", int(done and hit_e))
            self.add("enemy_hits", int(done and any(z[0:2] == player for z in e.e_fish + e.e_subs)))
            self.most("max_ramp", e.ramp_index)
            self.most("max_enemies", len(e.e_fish) + len(e.e_subs))
            self.most("max_divers", len(e.divers))


_N, _L, _U, _R, _D, _F = range(6)


def _seaquest_pilot(t: int, obs: torch.Tensor, rng: np.random.Generator, n_actions: int) -> torch.Tensor:
    """Rescue divers, surface with them, dodge and shoot; per env ``i % 4``: 0-1 as said, 2 never
    surfaces (runs out of oxygen), 3 also surfaces on a timer (with no divers too)."""
    o = obs.numpy().astype(bool)
    return torch.as_tensor([_pilot_one(i, t, o[i], rng) for i in range(o.shape[0])])


def _pilot_one(i: int, t: int, o: np.ndarray, rng: np.random.Generator) -> int:
    sy, sx = np.argwhere(o[0])[0]
    back = np.argwhere(o[1])
    facing_right = len(back) > 0 and back[0][1] < sx
    oxygen, divers = int(o[7, 9].sum()), int(o[8, 9].sum())
    enemies, danger, trail = o[5] | o[6], o[5] | o[6] | o[4], o[3]

    def threat(y: int, x: int) -> int:
        score = 0
        for dx in (-2, -1, 0, 1, 2) if y > 0 else ():
            c = x + dx
            if 0 <= c <= 9 and danger[y, c]:
                # Coming this way: the trail is behind a moving object (enemy bullets: always).
                toward = (
                    (dx < 0 and c >= 1 and trail[y, c - 1]) or (dx > 0 and c <= 8 and trail[y, c + 1]) or o[4, y, c]
                )
                score += 10 if dx == 0 else (5 if abs(dx) == 1 else (2 if toward else 0))
        return score

    timer_surfacer, never_surfaces = i % 4 == 3, i % 4 == 2
    up = divers == 6 or (divers >= 1 and oxygen <= 3) or (timer_surfacer and (t // 25) % 3 == 2)
    if up and not never_surfaces:
        goal = (0, sx)
    else:
        ds = np.argwhere(o[9])
        goal = (5, 5)
        if len(ds):
            d = ds[np.argmin(np.abs(ds[:, 0] - sy) + np.abs(ds[:, 1] - sx))]
            goal = (int(d[0]), int(d[1]))
    moves = {_N: (sy, sx), _L: (sy, max(0, sx - 1)), _R: (sy, min(9, sx + 1)), _U: (max(0, sy - 1), sx)}
    moves[_D] = (min(8, sy + 1), sx)
    if sy == 1 and ((divers == 0 and not timer_surfacer) or never_surfaces):
        moves.pop(_U)
    row = enemies[sy]
    ahead = row[sx + 1 : sx + 5] if facing_right else row[max(0, sx - 4) : sx]
    if ahead.any() and threat(sy, sx) < 10 and rng.random() < 0.7:
        return _F
    if rng.random() < 0.05:
        return int(rng.integers(0, 6))
    scores = {a: 3 * threat(y, x) + abs(goal[0] - y) + abs(goal[1] - x) for a, (y, x) in moves.items()}
    return min(scores, key=lambda a: scores[a])


def test_seaquest_pilot_reaches_every_branch() -> None:
    """A pilot that rescues divers: surfacing with 6 divers (and the count's fall to -1), with
    some, with none; oxygen running out; deaths by enemy bullets and enemies; ramping."""
    probe = SeaquestProbe()
    counts = run_side_by_side("seaquest", steps=1500, n=8, policy=_seaquest_pilot, seed=6, probe=probe)
    for key in (
        "surface_6_divers",
        "surface_some_divers",
        "surface_negative_divers",
        "surface_no_divers_ends",
        "oxygen_out",
        "enemy_bullet_hits",
        "enemy_hits",
    ):
        assert counts[key] > 0, (key, counts)
    assert counts["pickups"] > 50 and counts["reward"] > 100 and counts["max_ramp"] >= 6, counts
    assert counts["max_divers"] == 2 and counts["sticky"] > 500, counts


def _seaquest_late_game(env: MinAtarEnv, refs: list[Environment]) -> None:
    """Deep into the ramp: enemies spawn every 1-3 steps and move every 3rd; some envs carry
    6 divers or a negative count, and little oxygen."""
    rng = np.random.default_rng(9)
    n = len(refs)
    values = {
        "e_spawn_speed": rng.integers(1, 4, n),
        "e_spawn_timer": rng.integers(0, 2, n),
        "move_speed": np.full(n, 2),
        "ramp_index": rng.integers(17, 21, n),
        "diver_count": rng.choice([-1, 0, 3, 5, 6], n),
        "oxygen": rng.integers(20, 200, n),
        "d_spawn_timer": rng.integers(0, 5, n),
    }
    columns = {"e_spawn_speed": 7, "e_spawn_timer": 8, "move_speed": 10, "ramp_index": 11, "diver_count": 4}
    columns.update(oxygen=3, d_spawn_timer=9)
    scal = env.state[3].clone()
    for name, v in values.items():
        scal[:, columns[name]] = torch.as_tensor(v)
        for ref, x in zip(refs, v, strict=True):
            setattr(ref.env, name, int(x))
    env.state = (*env.state[:3], scal, *env.state[4:])


@pytest.mark.parametrize("ramping", [True, False])
def test_seaquest_late_game_crowds(ramping: bool) -> None:
    probe = SeaquestProbe()
    counts = run_side_by_side(
        "seaquest",
        steps=600,
        n=8,
        policy=_seaquest_pilot,
        setup=_seaquest_late_game,
        ramping=ramping,
        seed=7,
        probe=probe,
    )
    assert counts["max_enemies"] >= 10 and counts["reward"] > 20 and counts["done"] > 5, counts


@pytest.mark.parametrize("game", list(GAMES.values()))
def test_spaces_seeding_state_dict_and_render(game: str) -> None:
    env = make(f"MinAtar-{game}-v1", 6, seed=3, render_mode="rgb_array")
    obs, _ = env.reset(seed=3)
    ref = Environment([k for k, v in GAMES.items() if v == game][0])
    channels = ref.state_shape()[2]
    assert obs.dtype == torch.uint8 and obs.shape == (6, channels, 10, 10)
    assert env.single_observation_space.shape == (channels, 10, 10)
    assert env.single_action_space.n == len(ref.minimal_action_set())
    assert make(f"MinAtar-{game}-v0", 2).single_action_space.n == 6
    g = torch.Generator().manual_seed(0)
    actions = [torch.randint(0, int(env.single_action_space.n), (6,), generator=g) for _ in range(120)]
    for a in actions[:40]:
        env.step(a)
    saved = {k: v.clone() for k, v in env.state_dict().items()}
    first = [env.step(a) for a in actions[40:]]
    env.load_state_dict(saved)
    second = [env.step(a) for a in actions[40:]]
    for x, y in zip(first, second, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(x[:4], y[:4], strict=True))
    again = make(f"MinAtar-{game}-v1", 6, seed=3)
    again.reset(seed=3)
    for a in actions[:40]:
        again.step(a)
    assert torch.equal(again.step(actions[40])[0], first[0][0])
    img = env.render()
    assert img is not None and img.shape == (320, 320, 3) and img.dtype == np.uint8


@pytest.mark.parametrize("noise", ["generator", "hash"])
def test_hash_draws_statistics(noise: str) -> None:
    """Default draws (no hook): sticky repeats happen at the configured rate."""
    env = make("MinAtar-Breakout-v0", 512, seed=0, noise=noise, sticky_action_prob=0.25)
    env.reset()
    repeats = trials = 0
    prev = env.state[2].clone()
    for t in range(20):
        a = torch.full((512,), 1 + 2 * (t % 2))  # alternate l / r
        env.step(a)
        new = a != prev  # where the asked action differs from the last one, a repeat is visible
        repeats += int((new & (env.state[2] == prev)).sum())
        trials += int(new.sum())
        prev = env.state[2].clone()
    assert trials > 5000 and abs(repeats / trials - 0.25) < 0.03


@pytest.mark.slow
def test_compiled_matches_eager() -> None:
    # Seaquest is left out: inductor takes minutes to compile its step on the project's 2-core
    # CPU and the compiled step runs ~10x slower than eager there (envs/minatar_seaquest.py).
    for game in [g for g in GAMES.values() if g != "Seaquest"]:
        a = make(f"MinAtar-{game}-v1", 32, seed=1, noise="hash")
        b = make(f"MinAtar-{game}-v1", 32, seed=1, compile=True)
        a.reset()
        b.reset()
        g = torch.Generator().manual_seed(0)
        for _ in range(100):
            x = torch.randint(0, int(a.single_action_space.n), (32,), generator=g)
            ra, rb = a.step(x), b.step(x)
            assert all(torch.equal(p, q) for p, q in zip(ra[:4], rb[:4], strict=True))
            assert torch.equal(ra[4]["final_obs"], rb[4]["final_obs"])
