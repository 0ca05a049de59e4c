"""MinAtar Seaquest, batched in torch and exact to ``minatar/environments/seaquest.py`` (1.0.15).

The shared machinery (actions, sticky actions, random draws, autoreset, observation layout,
rendering) is :class:`~gumbel_ac.envs.minatar.MinAtarEnv`; this module only adds the game. Its
``Env.act`` walks Python lists of objects, removing from them while it iterates; here every kind
of object lives in fixed slots and each of the reference's loops becomes a few tensor ops whose
result is the same as the loop's, order effects included (see :class:`SeaquestEnv`).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from .base import State
from .minatar import _ONE, DOWN, FIRE, LEFT, NOOP, RIGHT, UP, GameStep, MinAtarEnv, prob_threshold, randint_from

# Constants of minatar/environments/seaquest.py.
MAX_OXYGEN = 200
INIT_SPAWN_SPEED = 20
DIVER_SPAWN_SPEED = 30
INIT_MOVE_INTERVAL = 5
SHOT_COOL_DOWN = 5
ENEMY_SHOT_INTERVAL = 10
DIVER_MOVE_INTERVAL = 5

# Columns of the scalar field ``scal`` [N, 13].
SX, SY, SOR, OXY, DC, SURF, SHOT, ESPEED, ETIMER, DTIMER, MSPEED, RAMP, NEXT_ID = range(13)
# Rows of the enemy field ``ene`` [N, 8, K] (one column per slot).
E_ALIVE, E_X, E_Y, E_RIGHT, E_SUB, E_MT, E_ST, E_ID = range(8)
# Rows of the friendly-bullet field ``fb`` [N, 4, 2] and the diver field ``div`` [N, 5, 2].
B_ALIVE, B_X, B_Y, B_RIGHT = range(4)
D_ALIVE, D_X, D_Y, D_RIGHT, D_MT = range(5)
# Observation channels (Env.channels).
CH_FRONT, CH_BACK, CH_FBULLET, CH_TRAIL, CH_EBULLET, CH_FISH, CH_SUB, CH_OXYGEN, CH_DIVERS, CH_DIVER = range(10)


_LOWEST = -(1 << 62)  # below every key of _newest (keys are spawn ids or minus them)


def _newest(cand: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """One-hot ``[N, K]`` of the candidate with the largest ``key`` (all False without candidates).

    ``key`` must be distinct among a row's candidates (spawn ids are).
    """
    k = torch.where(cand, key, _LOWEST)
    return cand & (k == k.amax(dim=1, keepdim=True))


class SeaquestEnv(MinAtarEnv):
    """MinAtar Seaquest (``minatar/environments/seaquest.py``); minimal actions ``n l u r d f``.

    Fields (``env.state[3:]``), all int64, booleans as 0/1:

    * ``scal [N, 13]``: sub_x, sub_y, sub_or (1 = facing right), oxygen, diver_count, surface,
      shot_timer, e_spawn_speed, e_spawn_timer, d_spawn_timer, move_speed, ramp_index, next_id
      (spawn id of the next enemy);
    * ``fb [N, 4, 2]``: friendly bullets (alive, x, y, right) in list order (slot 0 the older);
      at most two exist, since one lives at most 9 steps and the cool-down is 5;
    * ``eb [N, 2, 10, 10]``: enemy bullets moving left (0) / right (1) as grids: they meet
      nothing but the player, so several in one cell with one direction are one;
    * ``ene [N, 8, K]``: enemies in ``K = MAX_ENEMIES`` slots (alive, x, y, right, is_sub,
      move_timer, shot_timer, spawn id); the reference keeps fish and subs in two lists in spawn
      order, which the ids restore;
    * ``div [N, 5, 2]``: divers (alive, x, y, right, move_timer) in list order; one spawns every
      30 steps and lives at most 59, so at most two exist.

    Channels: sub_front, sub_back, friendly_bullet, trail, enemy_bullet, enemy_fish, enemy_sub,
    oxygen_guage, diver_guage, diver (the reference's ``Env.channels`` order).
    Draws per step (``_spawn_enemy``: ``rand() < 1/2`` side, ``rand() < 1/3`` sub,
    ``randint(1, 9)`` row; ``_spawn_diver``: side and row) are used when the spawn timers run
    out; start states are fixed (no reset draws).

    How the list loops of ``Env.act`` map onto slots, and the reference's quirks kept:

    * Friendly bullets (newest first) each hit the *first* enemy in their cell, fish before
      subs and each kind in spawn order. ``list.remove`` removes by value: a bullet equal to an
      older one after its move removes that one and is visited twice; that needs the older
      bullet in a cell with an enemy at the start of the step, which only a spawn at the edge
      the older bullet is leaving gives, and then both bullets end out of the board either way.
    * Enemy subs and fish (newest first) that move into a cell holding a friendly bullet take the
      first bullet there (list order); the newest such sub takes it, so with two bullets in one
      cell the two newest subs die. One that moves onto the player ends the episode and keeps
      its bullet. Enemies that do not move never meet a bullet (the bullet loop ran first).
    * A sub killed by a bullet in its own move still shoots if its shot timer is 0 (the
      reference shoots after the removal); one that left the board shoots off the board (the
      bullet is dropped in the same step, as there).
    * Enemy bullets fired in a step move in that step; each ends the episode when in the
      player's cell before or after its move.
    * The episode ends when oxygen is ``<= 0`` at the end of a step *before* it is decreased
      (so one step after it reaches 0), and the oxygen gauge shows ``max(0, oxygen)``.
    * Surfacing with 6 divers sets the count to 0 and *then* takes one diver away: the count
      becomes -1, and from then on surfacing never ends the episode (the count only goes
      further down, and the diver gauge shows nothing while it is negative).
    * An enemy that ends the episode stays on the board and still moves in that step; the
      rejected spawn (a row with enemies moving the other way) still resets the spawn timer.
    * The sub's back cell is ``x - 1`` facing right, ``x + 1`` facing left; ``-1`` would wrap to
      column 9 (numpy indexing) but is never reached, as is the reference's ``IndexError`` at 10.

    Not reproduced: more than ``MAX_ENEMIES`` enemies at once (a spawn with every slot taken is
    dropped). The ramp makes the spawn interval 1 only with move interval 2, when an enemy
    lives at most 29 steps, so 32 slots hold every reachable state.
    """

    GAME = "seaquest"
    CHANNELS = 10
    MINIMAL_ACTIONS = (NOOP, LEFT, UP, RIGHT, DOWN, FIRE)
    STEP_SLOTS = ("_spawn_enemy.lr", "_spawn_enemy.is_sub", "_spawn_enemy.y", "_spawn_diver.lr", "_spawn_diver.y")
    MAX_ENEMIES: ClassVar[int] = 32

    def _start_state(self, draws: torch.Tensor | None, lead: tuple[int, ...], device: torch.device) -> State:
        # Env.reset: sub at (5, 0) facing left, full oxygen, on the surface, no objects.
        scal = torch.tensor(
            [
                5,
                0,
                0,
                MAX_OXYGEN,
                0,
                1,
                0,
                INIT_SPAWN_SPEED,
                INIT_SPAWN_SPEED,
                DIVER_SPAWN_SPEED,
                INIT_MOVE_INTERVAL,
                0,
                0,
            ],
            dtype=torch.int64,
            device=device,
        ).expand(*lead, 1, 13)
        fb = torch.zeros((*lead, 1, 4, 2), dtype=torch.int64, device=device)
        eb = torch.zeros((*lead, 1, 2, 10, 10), dtype=torch.uint8, device=device)
        ene = torch.zeros((*lead, 1, 8, self.MAX_ENEMIES), dtype=torch.int64, device=device)
        div = torch.zeros((*lead, 1, 5, 2), dtype=torch.int64, device=device)
        return (scal, fb, eb, ene, div)

    def _game_step(self, fields: State, a: torch.Tensor, draws: torch.Tensor) -> GameStep:
        scal, fb, eb, ene, div = fields
        n = a.shape[0]
        sub_x, sub_y, sub_or, oxygen, dc, surface, shot, espeed, etimer, dtimer, ms, ramp, next_id = scal.unbind(1)
        reward = torch.zeros(n, dtype=torch.int64, device=a.device)

        # --- Env._spawn_enemy when the spawn timer is 0: rejected in a row whose enemies move
        # the other way; appended with the current move interval and shot interval 10.
        alive = ene[:, E_ALIVE] != 0
        spawn_e = etimer == 0
        lr = draws[:, 0] < (_ONE >> 1)
        is_sub = draws[:, 1] < prob_threshold(1 / 3)
        row = 1 + randint_from(draws[:, 2], 8)
        conflict = (alive & (ene[:, E_Y] == row.unsqueeze(1)) & ((ene[:, E_RIGHT] != 0) != lr.unsqueeze(1))).any(1)
        free = ~alive
        slot = free & (free.cumsum(dim=1) == 1)  # the first free slot
        new = slot & (spawn_e & ~conflict).unsqueeze(1)
        one = torch.ones_like(sub_x)
        vals = torch.stack(
            [one, torch.where(lr, 0, 9), row, lr.long(), is_sub.long(), ms, one * ENEMY_SHOT_INTERVAL, next_id], dim=1
        )
        ene = torch.where(new.unsqueeze(1), vals.unsqueeze(2), ene)
        alive = alive | new
        next_id = next_id + new.any(1).long()
        etimer = torch.where(spawn_e, espeed, etimer)

        # --- Env._spawn_diver every 30 steps, appended (slot 0 when empty: slots are compact).
        spawn_d = dtimer == 0
        d_lr = draws[:, 3] < (_ONE >> 1)
        d_row = 1 + randint_from(draws[:, 4], 8)
        d_slot = torch.stack([div[:, D_ALIVE, 0] == 0, div[:, D_ALIVE, 0] != 0], dim=1) & spawn_d.unsqueeze(1)
        d_vals = torch.stack([one, torch.where(d_lr, 0, 9), d_row, d_lr.long(), one * DIVER_MOVE_INTERVAL], dim=1)
        div = torch.where(d_slot.unsqueeze(1), d_vals.unsqueeze(2), div)
        dtimer = torch.where(spawn_d, DIVER_SPAWN_SPEED, dtimer)

        # --- The player's action (an elif chain: 'f' with the cool-down running does nothing).
        fire = (a == FIRE) & (shot == 0)
        b_slot = torch.stack([fb[:, B_ALIVE, 0] == 0, fb[:, B_ALIVE, 0] != 0], dim=1) & fire.unsqueeze(1)
        b_vals = torch.stack([one, sub_x, sub_y, sub_or], dim=1)
        fb = torch.where(b_slot.unsqueeze(1), b_vals.unsqueeze(2), fb)
        shot = torch.where(fire, SHOT_COOL_DOWN, shot)
        left, right = a == LEFT, a == RIGHT
        sub_x = torch.where(left, (sub_x - 1).clamp(min=0), torch.where(right, (sub_x + 1).clamp(max=9), sub_x))
        sub_or = torch.where(left, 0, torch.where(right, 1, sub_or))
        sub_y = torch.where(a == UP, (sub_y - 1).clamp(min=0), torch.where(a == DOWN, (sub_y + 1).clamp(max=8), sub_y))
        px, py = sub_x.unsqueeze(1), sub_y.unsqueeze(1)

        # --- Friendly bullets, newest first: move, leave the board or hit the first enemy in
        # the cell (fish before subs, each in spawn order).
        ex, ey, e_right = ene[:, E_X], ene[:, E_Y], ene[:, E_RIGHT] != 0
        e_sub = ene[:, E_SUB] != 0
        first_key = -(ene[:, E_SUB] * (1 << 40) + ene[:, E_ID])
        b_alive = [fb[:, B_ALIVE, s] != 0 for s in range(2)]
        bx = [fb[:, B_X, s] + torch.where(fb[:, B_RIGHT, s] != 0, 1, -1) for s in range(2)]
        by = [fb[:, B_Y, s] for s in range(2)]
        for s in (1, 0):
            b_alive[s] = b_alive[s] & (bx[s] >= 0) & (bx[s] <= 9)
            at = alive & (ex == bx[s].unsqueeze(1)) & (ey == by[s].unsqueeze(1)) & b_alive[s].unsqueeze(1)
            kill = _newest(at, first_key)
            hit = kill.any(1)
            alive = alive & ~kill
            b_alive[s] = b_alive[s] & ~hit
            reward = reward + hit.long()

        # --- Divers, newest first: picked up in the player's cell (while fewer than 6 are
        # aboard), else moved every 6th step and picked up or dropped off the board.
        d_alive = [div[:, D_ALIVE, s] != 0 for s in range(2)]
        dx = [div[:, D_X, s] for s in range(2)]
        d_mt = [div[:, D_MT, s] for s in range(2)]
        dy = [div[:, D_Y, s] for s in range(2)]
        for s in (1, 0):
            pick = d_alive[s] & (dx[s] == sub_x) & (dy[s] == sub_y) & (dc < 6)
            dc = dc + pick.long()
            rest = d_alive[s] & ~pick
            moves = rest & (d_mt[s] == 0)
            d_mt[s] = torch.where(moves, DIVER_MOVE_INTERVAL, torch.where(rest, d_mt[s] - 1, d_mt[s]))
            dx[s] = torch.where(moves, dx[s] + torch.where(div[:, D_RIGHT, s] != 0, 1, -1), dx[s])
            out = moves & ((dx[s] < 0) | (dx[s] > 9))
            pick = moves & ~out & (dx[s] == sub_x) & (dy[s] == sub_y) & (dc < 6)
            dc = dc + pick.long()
            d_alive[s] = rest & ~out & ~pick

        # --- Enemies: subs (newest first), then enemy bullets, then fish.
        step_x = torch.where(e_right, 1, -1)
        terminated = torch.zeros(n, dtype=torch.bool, device=a.device)
        e_mt, e_st = ene[:, E_MT], ene[:, E_ST]
        shooters = torch.zeros_like(alive)
        e_out = torch.zeros_like(alive)
        for subs in (True, False):
            kind = alive & (e_sub if subs else ~e_sub)
            terminated = terminated | (kind & (ex == px) & (ey == py)).any(1)
            moves = kind & (e_mt == 0)
            e_mt = torch.where(moves, ms.unsqueeze(1), torch.where(kind, e_mt - 1, e_mt))
            ex = torch.where(moves, ex + step_x, ex)
            out = moves & ((ex < 0) | (ex > 9))
            at_player = moves & ~out & (ex == px) & (ey == py)
            terminated = terminated | at_player.any(1)
            check = moves & ~out & ~at_player
            kill0 = _newest(
                check & (ex == bx[0].unsqueeze(1)) & (ey == by[0].unsqueeze(1)) & b_alive[0].unsqueeze(1), ene[:, E_ID]
            )
            kill1 = _newest(
                check & ~kill0 & (ex == bx[1].unsqueeze(1)) & (ey == by[1].unsqueeze(1)) & b_alive[1].unsqueeze(1),
                ene[:, E_ID],
            )
            hit0, hit1 = kill0.any(1), kill1.any(1)
            b_alive[0], b_alive[1] = b_alive[0] & ~hit0, b_alive[1] & ~hit1
            reward = reward + hit0.long() + hit1.long()
            alive = alive & ~out & ~kill0 & ~kill1
            e_out = e_out | out
            if subs:
                # Every sub of the loop shoots when its timer is 0 (also one just killed).
                shooters = kind & (e_st == 0)
                e_st = torch.where(shooters, ENEMY_SHOT_INTERVAL, torch.where(kind, e_st - 1, e_st))
                shooters = shooters & ~out
                # Env.act's enemy-bullet loop, between subs and fish.
                cell = torch.where(shooters, ey * 10 + ex, 0) + torch.where(e_right, 100, 0)
                eb = eb.reshape(n, 200).scatter_reduce(1, cell, shooters.to(torch.uint8), "amax").view(n, 2, 10, 10)
                p_cell = (sub_y * 10 + sub_x).view(n, 1, 1).expand(n, 2, 1)
                terminated = terminated | (eb.view(n, 2, 100).gather(2, p_cell) != 0).any(dim=(1, 2))
                empty = torch.zeros_like(eb[:, 0, :, :1])
                eb = torch.stack(
                    [torch.cat([eb[:, 0, :, 1:], empty], dim=2), torch.cat([empty, eb[:, 1, :, :-1]], dim=2)], dim=1
                )
                terminated = terminated | (eb.view(n, 2, 100).gather(2, p_cell) != 0).any(dim=(1, 2))

        # --- Timers, oxygen and surfacing (Env.act's tail, Env._surface).
        etimer = etimer - (etimer > 0).long()
        dtimer = dtimer - (dtimer > 0).long()
        shot = shot - (shot > 0).long()
        terminated = terminated | (oxygen <= 0)
        below = sub_y > 0
        oxygen = oxygen - below.long()
        arrive = ~below & (surface == 0)
        terminated = terminated | (arrive & (dc == 0))
        surf = arrive & (dc != 0)
        full = surf & (dc == 6)
        reward = reward + torch.where(full, torch.div(oxygen * 10, MAX_OXYGEN, rounding_mode="floor"), 0)
        oxygen = torch.where(surf, MAX_OXYGEN, oxygen)
        dc = torch.where(full, -1, dc - surf.long())
        surface = torch.where(below, 0, torch.where(surf, 1, surface))
        if self.difficulty_ramping:
            level = surf & ((espeed > 1) | (ms > 2))
            ms = ms - (level & (ms > 2) & (ramp % 2 == 1)).long()
            espeed = espeed - (level & (espeed > 1)).long()
            ramp = ramp + level.long()

        # --- Pack; the friendly bullets and divers compacted to keep list order in slots.
        scal = torch.stack(
            [sub_x, sub_y, sub_or, oxygen, dc, surface, shot, espeed, etimer, dtimer, ms, ramp, next_id], 1
        )
        ene = torch.stack([alive.long(), ex, ey, ene[:, E_RIGHT], ene[:, E_SUB], e_mt, e_st, ene[:, E_ID]], dim=1)
        fb = self._compact(
            torch.stack([torch.stack([b_alive[s].long(), bx[s], by[s], fb[:, B_RIGHT, s]], dim=1) for s in range(2)], 2)
        )
        div = self._compact(
            torch.stack(
                [torch.stack([d_alive[s].long(), dx[s], dy[s], div[:, D_RIGHT, s], d_mt[s]], dim=1) for s in range(2)],
                dim=2,
            )
        )
        return (scal, fb, eb, ene, div), reward.to(torch.float32), terminated

    @staticmethod
    def _compact(objs: torch.Tensor) -> torch.Tensor:
        """Two list slots ``[N, F, 2]`` (field 0: alive): move slot 1 to slot 0 when 0 is empty."""
        shift = (objs[:, 0, 0] == 0).view(-1, 1, 1)
        moved = torch.stack([objs[:, :, 1], torch.zeros_like(objs[:, :, 1])], dim=2)
        return torch.where(shift, moved, objs)

    def _channels(self, fields: State) -> torch.Tensor:
        scal, fb, eb, ene, div = fields
        n = scal.shape[0]
        sub_x, sub_y = scal[:, SX], scal[:, SY]
        back = torch.where(scal[:, SOR] != 0, sub_x - 1, sub_x + 1) % 10  # numpy: -1 is column 9
        player = torch.stack([sub_y * 10 + sub_x, 100 * CH_BACK + sub_y * 10 + back], dim=1)
        b_on = fb[:, B_ALIVE] != 0
        bullets = 100 * CH_FBULLET + fb[:, B_Y] * 10 + fb[:, B_X].clamp(0, 9)
        e_on = ene[:, E_ALIVE] != 0
        e_cell = ene[:, E_Y] * 10 + ene[:, E_X].clamp(0, 9)
        enemies = torch.where(ene[:, E_SUB] != 0, 100 * CH_SUB, 100 * CH_FISH) + e_cell
        e_back = ene[:, E_X] + torch.where(ene[:, E_RIGHT] != 0, -1, 1)
        e_trail = 100 * CH_TRAIL + ene[:, E_Y] * 10 + e_back.clamp(0, 9)
        d_on = div[:, D_ALIVE] != 0
        divers = 100 * CH_DIVER + div[:, D_Y] * 10 + div[:, D_X].clamp(0, 9)
        d_back = div[:, D_X] + torch.where(div[:, D_RIGHT] != 0, -1, 1)
        d_trail = 100 * CH_TRAIL + div[:, D_Y] * 10 + d_back.clamp(0, 9)
        idx = torch.cat([player, bullets, enemies, e_trail, divers, d_trail], dim=1)
        on = torch.cat(
            [
                torch.ones_like(player, dtype=torch.bool),
                b_on,
                e_on,
                e_on & (e_back >= 0) & (e_back <= 9),
                d_on,
                d_on & (d_back >= 0) & (d_back <= 9),
            ],
            dim=1,
        )
        obs = self._points(idx, on)
        cols = self._cols
        # Gauges in row 9: oxygen in columns [0, max(0, oxygen) * 10 // 200), divers in
        # [9 - diver_count, 9) (empty for a negative count).
        oxygen_n = torch.div(scal[:, OXY].clamp(min=0) * 10, MAX_OXYGEN, rounding_mode="floor")
        obs[:, 100 * CH_OXYGEN + 90 : 100 * CH_OXYGEN + 100] = (cols < oxygen_n.unsqueeze(1)).to(torch.uint8)
        dc = scal[:, DC].unsqueeze(1)
        obs[:, 100 * CH_DIVERS + 90 : 100 * CH_DIVERS + 100] = ((cols >= 9 - dc) & (cols < 9)).to(torch.uint8)
        obs[:, 100 * CH_EBULLET : 100 * CH_EBULLET + 100] = (eb[:, 0] | eb[:, 1]).view(n, 100).to(torch.uint8)
        return obs
