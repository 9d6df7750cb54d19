"""One vectorised MuJoCo task for every robot, partition and hazard.

Why one class: the MuJoCo tasks differ only in data (``mujoco_robots``: joints, partitions and
reward/termination rules; ``mujoco_hazards``: obstacle or corridor; ``mujoco_layout``: where each
quantity sits), so one step loop serves all of them. The model is compiled once per task; each of
the E copies has its own ``MjData``. A step is: route the agents' actions into one [E, nu] control
matrix → per copy ``mj_step(nstep=frame_skip)`` (+ ``mj_rnePostConstraint`` where cfrc_ext is
read, as Gymnasium does) and a few memcpys of that copy's arrays into its row of the state matrix,
in chunks of copies on several threads where asked (``use_threads``, physics_pool.py)
→ reward, termination, cost and observations vectorised over the E rows.

Episode semantics: ``terminated`` on a real termination (the robot is unhealthy, Gymnasium v5
rules, v4 for the velocity tasks; the cheetahs and the swimmer never terminate), ``truncated``
after 1000 steps; a finished copy is reset at once and its returned observation is the new
episode's first. A copy whose physics diverged
(non-finite state, or MuJoCo's own reset after an unstable step, seen as time going backwards) is
reset too, reported as truncated with reward 0 and cost 0, so no NaN ever reaches an agent.

Reset (per copy, ``np.random.default_rng([seed, e])``): qpos = qpos0 + U(±s), qvel = s·N(0, 1)
(HalfCheetah, Ant families, s = 0.1) or U(±s) (Hopper, Walker2d 5e-3; Humanoid 1e-2; Swimmer 0.1),
on every degree of freedom including a hazard's (MACPO also perturbs the obstacle), then
``mj_forward``.
"""
from __future__ import annotations

import math
from typing import ClassVar

import mujoco
import numpy as np

from .base import StepResult, TaskSpec, VecTask
from .mujoco_layout import EPISODE_LENGTH, STATE_SPEC, Layout
from .mujoco_models import compile_model
from .physics_pool import PhysicsPool

_COST_MAX = float(np.finfo(np.float32).max)  # a larger control cost would reach the agents as −inf
_COST_MAX2 = _COST_MAX ** 2  # Σ sq² below it: every copy's cost is below _COST_MAX (one dot, the hot path)


class MujocoTask(VecTask):
    """E lockstepped copies of one MuJoCo task; subclasses only set ``spec`` and ``layout``."""

    spec: ClassVar[TaskSpec]
    layout: ClassVar[Layout]

    def __init__(self, n_envs: int, seed: int) -> None:
        super().__init__(n_envs, seed)
        L, E = self.layout, n_envs
        self.model = m = compile_model(L.robot, L.key.hazard)
        self.frame_skip = L.robot.frame_skip
        self.dt = m.opt.timestep * self.frame_skip
        self.datas = [mujoco.MjData(m) for _ in range(E)]
        self.hazard = L.hazard
        self.S = np.zeros((E, L.width))
        self._rows = [self.S[e, :L.n_state] for e in range(E)]
        self._copies = [[(self.S[e, off:off + getattr(d, name).size], getattr(d, name).reshape(-1))
                         for name, off in L.blocks.items()] for e, d in enumerate(self.datas)]
        self._ctrls = [d.ctrl for d in self.datas]
        self._pool = PhysicsPool(E, 1, self._advance)  # one chunk, this thread, until use_threads
        self._rne = "cfrc_ext" in L.blocks  # cfrc_ext stays 0 without it (spec §1.7)
        self._act = np.zeros((E, m.nu))
        self._a = self._act[:, :L.n_robot_act]  # the agents' columns (a hazard's motor comes last)
        self._raw = np.zeros((E, L.n_robot_act))  # the actions as sent, which the control cost charges
        self._act_shapes = [(E, len(cols)) for cols in L.act_cols]
        self._obs_idx = L.obs_idx
        self._rules = L.robot.rules
        self._lo, self._hi = L.ctrl_range[:, 0], L.ctrl_range[:, 1]
        cols = [c for cs in L.act_cols for c in cs]
        self._contiguous = cols == list(range(L.n_robot_act))
        self._fwd_idx = np.array(L.fwd, dtype=np.intp)  # forward-progress sources, read before a step
        rules = L.robot.rules
        self._fwd_scale = rules.forward_weight / (len(L.fwd) * self.dt)
        self._one_fwd = len(L.fwd) == 1
        self._ctrl_w = np.full(L.n_robot_act, rules.ctrl_weight)
        self._ones = np.ones(E * L.width)
        self._health = rules.health
        if self._health is not None:
            h = self._health
            self._z = L.qpos(h.z[0], h.z[1])
            self._angle = L.qpos(h.angle[0], h.angle[1]) if h.angle else None
            self._quat = [L.qpos(h.z[0], 3 + k) for k in range(4)] if h.zrot_min is not None else None
            # (the zrot test 1 - 2(qx² + qy²) >= zrot_min is evaluated as qx² + qy² <= (1 - zrot_min) / 2)
            self._state_cols = slice(L.qpos(None, 2), L.n_state) if h.state_abs_max else None
        self._cf = slice(L.blocks["cfrc_ext"], L.blocks["cfrc_ext"] + 6 * m.nbody) if rules.contact else None
        self._xipos_xy = ([[L.block("xipos", b, k) for b in range(m.nbody)] for k in (0, 1)]
                          if L.com is not None else None)
        self._qv = slice(L.qvel(None), L.qvel(None) + m.nv)
        ss = int(seed) & 0xFFFF_FFFF_FFFF_FFFF  # default_rng refuses negative entropy
        self.rngs = [np.random.default_rng([ss, e]) for e in range(E)]
        self._steps = np.zeros(E, dtype=np.int64)
        self._oldest = 0  # max(self._steps), kept as an int: most steps need no truncation check
        self._no_cost = [np.zeros((E, 0), dtype=np.float32)] * len(L.agents)
        self._reset_all()

    # ------------------------------------------------------------------ state
    def _sync_copy(self, e: int) -> None:
        mujoco.mj_getState(self.model, self.datas[e], self._rows[e], STATE_SPEC)
        for dst, src in self._copies[e]:
            dst[...] = src

    def sync(self) -> None:
        """Re-read every copy's MjData into the state matrix and re-derive (call after editing
        ``datas[e]`` by hand, e.g. in tests; call ``mj_forward`` first if you changed qpos)."""
        for e in range(self.n_envs):
            self._sync_copy(e)
        self._derive()

    def _derive(self) -> None:
        S, L, rules = self.S, self.layout, self.layout.robot.rules
        if self._cf is not None and rules.contact[1] is not None:
            cf, c = S[:, self._cf], rules.contact[1]
            np.minimum(cf, c, out=cf)
            np.maximum(cf, -c, out=cf)
        if rules.qvel_obs_clip:
            c, out = rules.qvel_obs_clip, S[:, L.qvel_obs:L.qvel_obs + self.model.nv]
            np.minimum(S[:, self._qv], c, out=out)
            np.maximum(out, -c, out=out)
        if L.com is not None:
            S[:, L.com] = S[:, self._xipos_xy[0]] @ L.mass
            S[:, L.com + 1] = S[:, self._xipos_xy[1]] @ L.mass
        if self.hazard is not None:
            self.hazard.derive(S)

    def healthy(self) -> np.ndarray:
        """[E] bool: Gymnasium v5's is_healthy (plus MACPO's upright test for the Safe ants)."""
        h, S = self._health, self.S
        if h is None:
            return np.ones(self.n_envs, dtype=bool)
        z = S[:, self._z]
        ok = ((h.z[2] <= z) & (z <= h.z[3])) if h.inclusive else ((h.z[2] < z) & (z < h.z[3]))
        if self._angle is not None:
            a = S[:, self._angle]
            ok = ok & (h.angle[2] < a) & (a < h.angle[3])
        if self._state_cols is not None:
            ok = ok & (np.abs(S[:, self._state_cols]) < h.state_abs_max).all(axis=1)
        if self._quat is not None:  # z-axis of the torso, world z component: 1 - 2(qx² + qy²)
            q = S[:, self._quat[1:3]]
            ok = ok & (np.einsum("ij,ij->i", q, q) <= (1.0 - h.zrot_min) / 2.0)
        return ok

    def current_cost(self, terminated: np.ndarray | None = None) -> list[np.ndarray]:
        """Each agent's cost [E, n_costs] float32 for the synced state."""
        if self.hazard is None:
            return self._no_cost
        if terminated is None:
            terminated = ~self.healthy()
        return self.hazard.cost(self.S, terminated)

    # ------------------------------------------------------------------ reset
    def _reset_copy(self, e: int) -> None:
        m, d, rng = self.model, self.datas[e], self.rngs[e]
        kind, s = self.layout.robot.rules.reset
        mujoco.mj_resetData(m, d)
        d.qpos[:] = m.qpos0 + rng.uniform(-s, s, size=m.nq)
        d.qvel[:] = s * rng.standard_normal(m.nv) if kind == "uniform_normal" else rng.uniform(-s, s, size=m.nv)
        mujoco.mj_forward(m, d)
        self._sync_copy(e)
        self._steps[e] = 0

    def _reset_all(self) -> None:
        for e in range(self.n_envs):
            self._reset_copy(e)
        self._oldest = 0
        self._derive()
        if self.hazard is not None:
            self.hazard.anchor(self.S)

    def reset(self) -> list[np.ndarray]:
        self._reset_all()
        return self._observe()

    def _observe(self) -> list[np.ndarray]:
        S32 = self.S.astype(np.float32)
        return [S32.take(idx, axis=1) for idx in self._obs_idx]

    # ------------------------------------------------------------------- step
    def _route(self, actions: list[np.ndarray]) -> np.ndarray:
        """Write the agents' actions, clipped to the control range, into the control matrix; return
        the control cost w·Σa² per copy of the actions *as sent*.

        Why raw: every code base the papers ran charges the unclipped action and leaves the clamping
        to MuJoCo (``ctrllimited``); clipping here hands MuJoCo the same control, and the cost stays
        theirs (docs/tasks.md, "Exactness"). A copy whose raw cost is not a finite float32 (a
        NaN, an infinite or absurdly large entry) pays the cost of what MuJoCo gets instead: the
        clipped action with NaN → 0, so no non-finite value reaches MuJoCo or an agent's reward.
        """
        L, raw, a = self.layout, self._raw, self._a
        if len(actions) != len(self._act_shapes):
            raise ValueError(f"expected {len(self._act_shapes)} action arrays, got {len(actions)}")
        for i, want in enumerate(self._act_shapes):
            if getattr(actions[i], "shape", None) != want:
                raise ValueError(f"agent {i} action has shape {np.shape(actions[i])}, expected {want}")
        if self._contiguous:
            np.concatenate(actions, axis=1, out=raw)
        else:
            for i, cols in enumerate(L.act_cols):
                raw[:, cols] = actions[i]
        np.minimum(raw, self._hi, out=a)  # ±inf clipped; NaN passes through ...
        np.maximum(a, self._lo, out=a)
        sq = np.dot(raw * raw, self._ctrl_w)  # ctrl_weight · Σ a² per copy
        if not np.dot(sq, sq) <= _COST_MAX2:  # (NaN compares False) ... and is zeroed here
            a[np.isnan(a)] = 0.0
            bad = ~(sq <= _COST_MAX)
            sq[bad] = np.dot(a[bad] * a[bad], self._ctrl_w)
        return sq

    def _advance(self, lo: int, hi: int, reset_by_mujoco: list[int]) -> None:
        """Step copies lo..hi-1 and copy their state into their rows of S; note the copies MuJoCo
        reset. Touches nothing another chunk touches, so chunks may run on threads at once."""
        m, fs, rne, act, half = self.model, self.frame_skip, self._rne, self._act, 0.5 * self.dt
        rows, copies, ctrls, datas = self._rows, self._copies, self._ctrls, self.datas
        for e in range(lo, hi):
            d = datas[e]
            t0 = d.time
            ctrls[e][:] = act[e]
            mujoco.mj_step(m, d, nstep=fs)  # releases the GIL: other chunks step meanwhile
            if rne:
                mujoco.mj_rnePostConstraint(m, d)
            if d.time < t0 + half:  # MuJoCo reset this copy mid-step: its physics diverged
                reset_by_mujoco.append(e)
            mujoco.mj_getState(m, d, rows[e], STATE_SPEC)
            for dst, src in copies[e]:
                dst[...] = src

    def use_threads(self, threads: int) -> None:
        """Step the copies in ``threads`` chunks at once from now on (1: in this thread only)."""
        self._pool.close()
        self._pool = PhysicsPool(self.n_envs, threads, self._advance)

    def step(self, actions: list[np.ndarray]) -> StepResult:
        S, E, hazard, rules = self.S, self.n_envs, self.hazard, self._rules
        sq = self._route(actions)
        if hazard is not None:
            hazard.control(S, self._act)
            hazard.anchor(S)
        before = S.take(self._fwd_idx, axis=1)
        reset_by_mujoco = self._pool.step()
        self._derive()

        if self._one_fwd:
            reward = (S[:, self._fwd_idx[0]] - before[:, 0]) * self._fwd_scale - sq
        else:
            reward = (S[:, self.layout.fwd] - before).sum(axis=1) * self._fwd_scale - sq
        if self._health is None:
            terminated = np.zeros(E, dtype=bool)
        else:
            healthy = self.healthy()
            # v5 pays the healthy reward on healthy steps only, v4 on the terminating step too
            reward = reward + rules.healthy_reward * (healthy | rules.alive_on_termination)
            terminated = ~healthy
        if rules.contact is not None:
            w, _clip, cap = rules.contact
            cf = S[:, self._cf]
            contact = np.einsum("ij,ij->i", cf, cf) * w
            reward = reward - (contact if cap is None else np.minimum(contact, cap))
        self._steps = self._steps + 1
        self._oldest += 1
        truncated = self._steps >= EPISODE_LENGTH if self._oldest >= EPISODE_LENGTH else np.zeros(E, dtype=bool)
        if reset_by_mujoco or not math.isfinite(np.dot(S.reshape(-1), self._ones)):
            # diverged physics: end the episode with reward 0 and cost 0 rather than send NaN
            bad = ~np.isfinite(S).all(axis=1)
            bad[reset_by_mujoco] = True
            S[bad] = 0.0
            reward[bad] = 0.0
            terminated &= ~bad
            truncated |= bad
            cost = self.current_cost(terminated)
            for c in {id(c): c for c in cost}.values():  # fresh arrays; a shared one appears n times
                c[bad] = 0.0
        else:
            cost = hazard.cost(S, terminated) if hazard is not None else self._no_cost
        if self._health is not None:
            truncated &= ~terminated
            done = terminated | truncated
        else:
            done = truncated
        if self._oldest >= EPISODE_LENGTH or self._health is not None or reset_by_mujoco:
            if done.any():
                rows = np.flatnonzero(done)
                for e in rows:
                    self._reset_copy(int(e))
                self._oldest = int(self._steps.max())
                self._derive()
                if hazard is not None:
                    hazard.anchor(S, rows)
        S32 = S.astype(np.float32)
        return StepResult(obs=[S32.take(idx, axis=1) for idx in self._obs_idx], reward=reward.astype(np.float32),
                          cost=cost, terminated=terminated, truncated=truncated)

    def close(self) -> None:
        self.use_threads(1)
        self.datas, self._copies, self._rows, self._ctrls = [], [], [], []
