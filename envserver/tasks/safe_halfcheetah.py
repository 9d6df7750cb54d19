r"""Safe HalfCheetah 2x3: two agents share one cheetah that must outrun a moving obstacle.

The task of the MACPO / MAPPO-L papers ("Safe Multi-Agent MuJoCo", shared/research/safe-mamujoco.md
§3.4), ported to MuJoCo 4 and given *local* observations instead of MACPO's global state.

Physics (``envserver/assets/safe_half_cheetah.xml``): Gymnasium's HalfCheetah (Euler, timestep 0.01,
frame_skip 5, so dt = 0.05 s) plus a slab ``obj1`` on an x slide joint declared before the cheetah,
so ``qpos[0]`` is the obstacle and ``qpos[1]`` the cheetah's rootx. Before each env step the task
sets the obstacle motor (7th actuator, never an agent's) to

.. math::  u(t) = 0.02\,\sin^2(t/3) - 0.004,

with :math:`t` the simulation time at the start of the step, held for the 5 substeps. From rest the
slab first drifts back (x = 10 → ≈ 8.9 at t ≈ 2.5 s) and then runs forward at −2…+9.3 m/s
(mean ≈ 3.4 m/s).

Partition 2x3 (MACPO's effective, contiguous routing, §2.2): agent 0 drives actuators 0-2
(bthigh, bshin, bfoot), agent 1 actuators 3-5 (fthigh, fshin, ffoot). Actions are clipped to
[-1, 1]; NaN becomes 0 and ±inf ±1, so non-finite values never reach MuJoCo.

Reward (team, HalfCheetah-v5 weights): :math:`r = (x_{t+1} - x_t)/dt - 0.1\,\lVert a\rVert^2` with x
the rootx joint before/after the frame-skip loop and a the 6 clipped agent commands.

Cost ``obstacle`` (team-shared, the same array object for both agents): 1 iff
:math:`|x_{\mathrm{obs}} - x| < 9`, where :math:`x_{\mathrm{obs}}` is the obstacle geom's world x and
x the rootx, both after the step; else 0. The cost limit is 5 per episode, the MACPO README bound for
HalfCheetah (§5.1). Beware: a cheetah that stands still already collects ≈ 35 per episode (the
slab starts 10 m ahead and passes through it), so the limit is only met by running ahead of, or
well behind, the slab.

Episodes never terminate; they are truncated after ``episode_length = 1000`` steps (50 s), and the
copy is then reset at once (``StepResult.obs`` holds the new episode's first observation).

Reset: every qpos (obstacle included) gets U(−0.1, 0.1) noise, every qvel 0.1·N(0, 1); time = 0.
Copy e draws from ``np.random.default_rng([seed, e])``, so a seed fixes every copy's episodes.

Observation of each agent (14 float32; *local*: own joints, torso, obstacle):

=====  ==========================================================================
index  quantity
=====  ==========================================================================
0-2    own joint angles, qpos (agent 0: bthigh, bshin, bfoot; agent 1: fthigh, fshin, ffoot)
3-5    own joint angular velocities, qvel (same joints, same order)
6      torso height rootz (qpos)
7      torso pitch rooty (qpos, rad)
8      torso forward velocity vx (qvel of rootx)
9      torso vertical velocity vz (qvel of rootz)
10     torso pitch rate ωy (qvel of rooty)
11     obstacle world x-velocity (qvel of wall_joint; the slab only translates)
12     obstacle control u(t) at the current time t (the command of the next step)
13     clip((x_obs − rootx) / 10, −5, 5), x_obs the obstacle geom's world x (the cost's
       quantity: cost = 1 iff |10 · obs[13]| < 9)
=====  ==========================================================================

MACPO instead gives every agent the 20-dim global state (qpos[2:], qvel[1:], the same 3 obstacle
values) plus a one-hot id, standardised per vector; this task deliberately does not.
"""
from __future__ import annotations

import math
from importlib import resources

import mujoco
import numpy as np

from .base import AgentSpec, StepResult, TaskSpec, VecTask

FRAME_SKIP = 5
EPISODE_LENGTH = 1000
FORWARD_REWARD_WEIGHT = 1.0
CTRL_COST_WEIGHT = 0.1
COST_DISTANCE = 9.0  # m: cost fires when the cheetah is closer than this to the obstacle (in x)
COST_LIMIT = 5.0  # per episode, MACPO README bound for HalfCheetah
RESET_NOISE_QPOS = 0.1  # U(-0.1, 0.1)
RESET_NOISE_QVEL = 0.1  # 0.1 * N(0, 1)
DIST_SCALE = 10.0
DIST_CLIP = 5.0
ASSET = "safe_half_cheetah.xml"

# qpos / qvel layout of the model (asserted against the XML at load time)
_Q_OBST, _Q_ROOTX, _Q_ROOTZ, _Q_ROOTY = 0, 1, 2, 3
_AGENT_JOINTS = (("bthigh", "bshin", "bfoot"), ("fthigh", "fshin", "ffoot"))
_AGENT_ACTS = ((0, 1, 2), (3, 4, 5))
_N_AGENT_ACT = 6
_OBST_ACT = 6


def obstacle_control(t: float) -> float:
    """The obstacle motor command at simulation time ``t`` (seconds)."""
    s = math.sin(t / 3.0)
    return 0.02 * s * s - 0.004


def _obs_desc(agent: int) -> str:
    j = _AGENT_JOINTS[agent]
    return (
        f"local, 14 floats: qpos of own joints {', '.join(j)} (3); qvel of the same joints (3); "
        "torso rootz, rooty (qpos, 2); torso vx, vz, wy (qvel, 3); obstacle world x-velocity (1); "
        "obstacle control u(t)=0.02*sin^2(t/3)-0.004 at the current time (1); "
        "clip((x_obstacle_geom - rootx)/10, -5, 5) (1)"
    )


def _load_model() -> mujoco.MjModel:
    xml = resources.files("envserver").joinpath("assets").joinpath(ASSET).read_text(encoding="utf-8")
    model = mujoco.MjModel.from_xml_string(xml)
    names = ["wall_joint", "rootx", "rootz", "rooty", *_AGENT_JOINTS[0], *_AGENT_JOINTS[1]]
    for i, name in enumerate(names):
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if jid < 0 or model.jnt_qposadr[jid] != i or model.jnt_dofadr[jid] != i:
            raise RuntimeError(f"{ASSET}: joint {name!r} is not at qpos/qvel index {i}")
    acts = [*_AGENT_JOINTS[0], *_AGENT_JOINTS[1], "wall_joint_ac"]
    if model.nu != len(acts) or any(model.actuator(i).name != n for i, n in enumerate(acts)):
        raise RuntimeError(f"{ASSET}: actuators must be {acts}")
    return model


class SafeHalfCheetah2x3(VecTask):
    """E copies of Safe HalfCheetah, 2 agents x 3 actuators; see the module docstring."""

    spec = TaskSpec(
        name="safe-halfcheetah-2x3",
        agents=(
            AgentSpec(obs_dim=14, act_kind="continuous", act_dim=3, obs_desc=_obs_desc(0)),
            AgentSpec(obs_dim=14, act_kind="continuous", act_dim=3, obs_desc=_obs_desc(1)),
        ),
        episode_length=EPISODE_LENGTH,
        cost_names=("obstacle",),
        cost_limits=(COST_LIMIT,),
        topology="halfcheetah-2x3",
        description=(
            "Safe MAMuJoCo HalfCheetah 2x3 (MACPO): Gymnasium HalfCheetah plus an obstacle slab "
            "pushed by u(t)=0.02 sin^2(t/3)-0.004. Agent 0 drives the back leg (bthigh, bshin, "
            "bfoot), agent 1 the front leg (fthigh, fshin, ffoot). Reward dx/dt - 0.1|a|^2; "
            "team cost 1 while |x_obstacle - rootx| < 9 m; limit 5 per 1000-step episode "
            "(an idle cheetah scores about 35). Local observations, 14 per agent."
        ),
        extra={"dt": 0.05, "frame_skip": FRAME_SKIP, "cost_distance": COST_DISTANCE},
    )

    def __init__(self, n_envs: int, seed: int) -> None:
        super().__init__(n_envs, seed)
        self.model = _load_model()
        m = self.model
        self.dt = m.opt.timestep * FRAME_SKIP
        self.datas = [mujoco.MjData(m) for _ in range(n_envs)]
        # cached views into each MjData (valid while the MjData lives)
        self._qpos = [d.qpos for d in self.datas]
        self._qvel = [d.qvel for d in self.datas]
        self._ctrl = [d.ctrl for d in self.datas]
        # obstacle geom world x = offset + qpos[0] (body and geom are unrotated, parent is world)
        body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "obj1")
        geom = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "obj_geom")
        self.obstacle_x0 = float(m.body_pos[body, 0] + m.geom_pos[geom, 0])
        ss = int(seed) & 0xFFFF_FFFF_FFFF_FFFF  # default_rng refuses negative entropy
        self.rngs = [np.random.default_rng([ss, e]) for e in range(n_envs)]

        nq, nv = m.nq, m.nv
        # state matrix: [qpos (nq) | qvel (nv) | obstacle vx | u(t) | scaled distance]
        self._c_vx, self._c_u, self._c_dist = nq + nv, nq + nv + 1, nq + nv + 2
        self._state = np.zeros((n_envs, nq + nv + 3))
        self._nq = nq
        root = [_Q_ROOTZ, _Q_ROOTY, nq + _Q_ROOTX, nq + _Q_ROOTZ, nq + _Q_ROOTY]
        obst = [self._c_vx, self._c_u, self._c_dist]
        self._obs_idx = []
        for joints in _AGENT_JOINTS:
            q = [int(m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)]) for j in joints]
            self._obs_idx.append(np.array(q + [nq + i for i in q] + root + obst, dtype=np.intp))
        self._act = np.zeros((n_envs, m.nu))  # clipped commands, last column the obstacle
        self._x_before = np.zeros(n_envs)
        self._steps = np.zeros(n_envs, dtype=np.int64)
        self._terminated = np.zeros(n_envs, dtype=bool)  # never set: the cheetah cannot fail
        self._reset_all()

    # ------------------------------------------------------------------ reset

    def _reset_copy(self, e: int) -> None:
        m, d, rng = self.model, self.datas[e], self.rngs[e]
        mujoco.mj_resetData(m, d)
        d.qpos[:] = m.qpos0 + rng.uniform(-RESET_NOISE_QPOS, RESET_NOISE_QPOS, size=m.nq)
        d.qvel[:] = RESET_NOISE_QVEL * rng.standard_normal(m.nv)
        d.time = 0.0
        mujoco.mj_forward(m, d)  # keep xpos / geom_xpos consistent with the new state
        self._steps[e] = 0

    def _reset_all(self) -> None:
        for e in range(self.n_envs):
            self._reset_copy(e)
        self.sync()

    def reset(self) -> list[np.ndarray]:
        self._reset_all()
        return self._observe()

    # ------------------------------------------------------------ state reads

    def sync(self) -> None:
        """Re-read every copy's qpos/qvel/time into the task's state matrix (call after editing
        ``datas[e]`` by hand, e.g. in tests)."""
        for e in range(self.n_envs):
            self._sync_copy(e)

    def _sync_copy(self, e: int) -> None:
        row, nq = self._state[e], self._nq
        qvel = self._qvel[e]
        row[:nq] = self._qpos[e]
        row[nq:self._c_vx] = qvel
        row[self._c_vx] = qvel[_Q_OBST]  # the slab only translates along world x
        row[self._c_u] = obstacle_control(self.datas[e].time)

    def _derive(self) -> None:
        """Fill the scaled-distance column from qpos (vectorised over copies)."""
        s = self._state
        dist = s[:, self._c_dist]
        np.subtract(s[:, _Q_OBST], s[:, _Q_ROOTX], out=dist)
        dist += self.obstacle_x0
        dist *= 1.0 / DIST_SCALE
        np.maximum(dist, -DIST_CLIP, out=dist)
        np.minimum(dist, DIST_CLIP, out=dist)

    def obstacle_x(self) -> np.ndarray:
        """World x of the obstacle geom per copy [E] (from the synced state)."""
        return self.obstacle_x0 + self._state[:, _Q_OBST]

    def current_cost(self) -> np.ndarray:
        """The ``obstacle`` cost [E, 1] float32 of every copy's synced state."""
        gap = np.abs(self.obstacle_x() - self._state[:, _Q_ROOTX])
        return (gap < COST_DISTANCE).astype(np.float32)[:, None]

    def _observe(self) -> list[np.ndarray]:
        self._derive()
        return [self._state[:, idx].astype(np.float32) for idx in self._obs_idx]

    # ------------------------------------------------------------------- step

    def step(self, actions: list[np.ndarray]) -> StepResult:
        E = self.n_envs
        if len(actions) != 2:
            raise ValueError(f"expected 2 action arrays, got {len(actions)}")
        act = self._act
        for i, cols in enumerate(_AGENT_ACTS):
            a = np.asarray(actions[i])
            if a.shape != (E, 3):
                raise ValueError(f"agent {i} action has shape {a.shape}, expected {(E, 3)}")
            act[:, cols[0]:cols[-1] + 1] = a
        a6 = act[:, :_N_AGENT_ACT]
        np.maximum(a6, -1.0, out=a6)  # clips ±inf; NaN passes through ...
        np.minimum(a6, 1.0, out=a6)
        sq = np.einsum("ij,ij->i", a6, a6)
        if not np.isfinite(sq.sum()):  # ... and is zeroed here, before MuJoCo sees it
            a6[np.isnan(a6)] = 0.0
            sq = np.einsum("ij,ij->i", a6, a6)
        ctrl_cost = CTRL_COST_WEIGHT * sq

        m, xb = self.model, self._x_before
        for e, d in enumerate(self.datas):
            act[e, _OBST_ACT] = obstacle_control(d.time)
            self._ctrl[e][:] = act[e]
            xb[e] = self._qpos[e][_Q_ROOTX]
            mujoco.mj_step(m, d, nstep=FRAME_SKIP)
            self._sync_copy(e)

        s = self._state
        reward = (FORWARD_REWARD_WEIGHT * (s[:, _Q_ROOTX] - xb) / self.dt - ctrl_cost).astype(np.float32)
        cost = self.current_cost()
        self._steps += 1
        truncated = self._steps >= EPISODE_LENGTH
        bad = ~np.isfinite(s).all(axis=1)  # diverged physics: end the episode rather than send NaN
        if bad.any():
            reward[bad] = 0.0
            truncated |= bad
        if truncated.any():
            for e in np.flatnonzero(truncated):
                self._reset_copy(e)
                self._sync_copy(e)
        obs = self._observe()
        return StepResult(
            obs=obs,
            reward=reward,
            cost=[cost, cost],
            terminated=self._terminated.copy(),
            truncated=truncated,
        )

    def close(self) -> None:
        self.datas = []
        self._qpos, self._qvel, self._ctrl = [], [], []
