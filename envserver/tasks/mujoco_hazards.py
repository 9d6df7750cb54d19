"""The Safe variants' hazards at run time: what they add to the state, the observation and the cost.

The obstacle and the corridor give a binary cost per step, in two modes (``TaskKey.cost_mode``):

* ``shared`` — the papers' robot-level cost (spec §1.3), one array object handed to every agent.
* ``local`` — each agent's own cost from its own bodies (the bodies its joints move, see
  ``Layout.agent_bodies``), so an agent pays only for what its part of the robot does:

  =========================  ===============================================================
  hazard / robot             agent i's local cost is 1 iff ...
  =========================  ===============================================================
  obstacle (cheetahs)        any of i's bodies is closer than D (9 m; Coupled 5 m) in x to the
                             obstacle's face-centre x (body frame origins, ``xpos``)
  corridor, Ant              any of i's leg bodies lies in a wall band |y − c(x) ∓ w| < 1.8,
                             or the robot fell this step (the fall is everyone's: one body)
  corridor, ManyAgent Ant    the trunk point (``torso_s`` origin) of any of i's segments lies in
                             a wall band, or the robot fell this step
  =========================  ===============================================================

Positions are MuJoCo's ``xpos`` after ``mj_step`` (as Gymnasium's and MACPO's ``get_body_com``),
the obstacle's x is read from its joint (the slab only translates).

The speed limit of the Safety-Gymnasium velocity tasks (:class:`SpeedLimit`) has one mode: the
robot's speed over the step is one number, so every agent gets the same cost.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import mujoco
import numpy as np

from .mujoco_catalog import HazardSpec
from .mujoco_models import OBSTACLE_X0, corridor_centre

if TYPE_CHECKING:
    from .mujoco_layout import Layout, Section

DIST_SCALE, DIST_CLIP = 10.0, 5.0  # MACPO's observed clip((x_obstacle - rootx) / 10, -5, 5)


def obstacle_control(t: float | np.ndarray) -> np.ndarray:
    """The obstacle motor command u(t) = 0.02 sin²(t/3) − 0.004 at simulation time t (spec §3.4),
    set before each env step from the time at its start and held for the frame-skip substeps."""
    s = np.sin(np.asarray(t, dtype=float) / 3.0)
    return 0.02 * s * s - 0.004


class Hazard:
    """Base: ``bind`` once per task class, then ``control``/``derive``/``cost`` every step."""

    blocks: frozenset[str] = frozenset()

    def __init__(self, spec: HazardSpec, mode: str) -> None:
        self.spec, self.local = spec, mode == "local"

    def bind(self, L: Layout, m: mujoco.MjModel) -> list[list[Section]]:
        raise NotImplementedError

    def control(self, S: np.ndarray, act: np.ndarray) -> None:
        """Write the hazard's actuators into ``act`` from the current state."""

    def anchor(self, S: np.ndarray, rows: np.ndarray | slice = slice(None)) -> None:
        """Take the current state of ``rows`` as the start of the next step (called before every
        step, and for a copy just reset: its new episode has not moved yet)."""

    def derive(self, S: np.ndarray) -> None:
        """Fill the hazard's derived columns of ``S`` from the synced MuJoCo state."""

    def cost(self, S: np.ndarray, terminated: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    @staticmethod
    def _groups(points: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """All agents' point columns in one index array, and where each agent's group starts."""
        flat = np.array([c for pts in points for c in pts], dtype=np.intp)
        starts = np.cumsum([0] + [len(p) for p in points[:-1]]).astype(np.intp)
        return flat, starts

    @staticmethod
    def _per_agent(near: np.ndarray, starts: np.ndarray) -> list[np.ndarray]:
        """[E, P] bool per point → each agent's [E, 1] float32 'any of its points' (one reduceat
        for all agents rather than a few numpy calls per agent)."""
        c = np.ascontiguousarray(np.logical_or.reduceat(near, starts, axis=1).T, dtype=np.float32)
        return [row[:, None] for row in c]


class MovingObstacle(Hazard):
    """The slab of Safe (Coupled) HalfCheetah: cost 1 while a cheetah is within D m of it in x."""

    def bind(self, L: Layout, m: mujoco.MjModel) -> list[list[Section]]:
        self.blocks = frozenset({"xpos"}) if self.local else frozenset()
        L.need(self.blocks)
        self.q, self.v = L.qpos("wall_joint"), L.qvel("wall_joint")
        self.act = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, "wall_joint_ac")
        x0 = m.body("obj1").pos[0] + m.geom("obj_geom").pos[0]
        if abs(x0 - OBSTACLE_X0) > 1e-12:
            raise RuntimeError(f"obstacle geom starts at x={x0}, expected {OBSTACLE_X0}")
        self.roots = [L.qpos(src.split(":")[1]) for src in L.robot.rules.forward]  # rootx per cheetah
        self.u = L.add(1)
        self.dist = L.add(len(self.roots))
        self.points = ([[L.block("xpos", b, 0) for b in bodies] for bodies in L.agent_bodies] if self.local
                       else [[] for _ in L.agents])
        if self.local:
            self.flat, self.starts = self._groups(self.points)
        d = self.spec.distance
        out = []
        for i, joints in enumerate(L.agents):
            r = L.robot.root_of.get(joints[0], 0)
            who = "its cheetah's rootx" if len(self.roots) > 1 else "rootx"
            out.append([(f"obstacle world x-velocity, its control u(t)=0.02 sin^2(t/3)-0.004 at the current "
                         f"time, clip((x_obstacle - {who})/10, -5, 5) [cost: |x_obstacle - x| < {d:g} m]",
                         [self.v, self.u, self.dist + r])])
        return out

    def control(self, S: np.ndarray, act: np.ndarray) -> None:
        act[:, self.act] = S[:, self.u]

    def derive(self, S: np.ndarray) -> None:
        # obstacle_control(t) written as 0.006 - 0.01 cos(2t/3) (= 0.02 sin²(t/3) - 0.004), and
        # out-of-place ops throughout: with E small each numpy call's overhead is the cost
        S[:, self.u] = np.cos(S[:, 0] * (2.0 / 3.0)) * -0.01 + 0.006
        n = len(self.roots)
        gap = (S[:, self.q:self.q + 1] - (S[:, self.roots[0]:self.roots[0] + 1] if n == 1 else S[:, self.roots]))
        S[:, self.dist:self.dist + n] = np.maximum(np.minimum(gap * (1.0 / DIST_SCALE) + OBSTACLE_X0 / DIST_SCALE,
                                                              DIST_CLIP), -DIST_CLIP)

    def obstacle_x(self, S: np.ndarray) -> np.ndarray:
        return OBSTACLE_X0 + S[:, self.q]

    def cost(self, S: np.ndarray, terminated: np.ndarray) -> list[np.ndarray]:
        d = self.spec.distance
        if not self.local:  # |x_obs - rootx| < d  <=>  |dist| < d / 10 (the clip is at 50 m)
            near = np.abs(S[:, self.dist:self.dist + len(self.roots)]) < d / DIST_SCALE
            c = (near if near.shape[1] == 1 else near.any(axis=1, keepdims=True)).astype(np.float32)
            return [c] * len(self.points)
        near = np.abs(S.take(self.flat, axis=1) - self.obstacle_x(S)[:, None]) < d
        return self._per_agent(near, self.starts)


class Corridor(Hazard):
    """The folded corridor of Safe Ant / ManyAgent Ant: cost 1 inside a wall band or on a fall."""

    blocks = frozenset({"xpos"})

    def bind(self, L: Layout, m: mujoco.MjModel) -> list[list[Section]]:
        L.need(self.blocks)
        main = m.body(L.robot.main_body).id
        self.mx, self.my = L.block("xpos", main, 0), L.block("xpos", main, 1)
        # points whose y − c(x) is derived: the main body, then each agent's cost points
        segs = [sorted({int(s) for j in joints for s in re.findall(r"^hip\d_(\d+)$", j)}) for joints in L.agents]
        if any(segs):  # many-segment ant: an agent's points are its segments' trunk origins
            bodies = [[m.body(f"torso_{s}").id for s in ss] for ss in segs]
        else:
            bodies = [list(b) for b in L.agent_bodies]
        pts = [main] + [b for bs in bodies for b in bs]
        self.px = [L.block("xpos", b, 0) for b in pts]
        self.py = [L.block("xpos", b, 1) for b in pts]
        self.xs = L.add(1)  # x / 5 of the main body (MACPO's observation)
        self.yc = L.add(len(pts))  # y − c(x) of every point
        k, self.agent_yc = self.yc + 1, []
        for bs in bodies:
            self.agent_yc.append(list(range(k, k + len(bs))))
            k += len(bs)
        self.starts = self._groups(self.agent_yc)[1]
        name = L.robot.main_body
        out = []
        for i in range(len(L.agents)):
            sec = [(f"{name} x/5 and y - c(x), c the corridor centre line [cost band: |y - c(x) -+ "
                    f"{self.spec.distance:g}| < {self.spec.threshold:g}]", [self.xs, self.yc])]
            if any(segs):
                sec.append(("y - c(x) of its own segments' trunk points torso_" + ",".join(map(str, segs[i])),
                            self.agent_yc[i]))
            out.append(sec)
        return out

    def derive(self, S: np.ndarray) -> None:
        S[:, self.xs] = S[:, self.mx] * 0.2
        n = len(self.px)
        S[:, self.yc:self.yc + n] = S[:, self.py] - corridor_centre(S[:, self.px])

    def _band(self, yc: np.ndarray) -> np.ndarray:
        w, thr = self.spec.distance, self.spec.threshold
        return (np.abs(yc - w) < thr) | (np.abs(yc + w) < thr)

    def cost(self, S: np.ndarray, terminated: np.ndarray) -> list[np.ndarray]:
        if not self.local:
            c = (self._band(S[:, self.yc]) | terminated).astype(np.float32)[:, None]
            return [c] * len(self.agent_yc)
        n = len(self.px) - 1
        near = self._band(S[:, self.yc + 1:self.yc + 1 + n])  # the agents' points, in agent order
        near[:, self.starts] |= terminated[:, None]  # a fall is every agent's cost
        return self._per_agent(near, self.starts)


class SpeedLimit(Hazard):
    """Safety-Gymnasium's multi-agent velocity cost: 1 on a step whose speed exceeds the threshold.

    Speed as ``SafeMAEnv.step`` computes it from the v4 env's info: the displacement of the robot's
    forward source over the step divided by dt (not qvel): torso ``xpos`` (Ant), the mass centre
    (Humanoid) or qpos[0] (planar robots); ``planar`` sqrt(vx² + vy²), ``abs-x`` |vx| (the robots
    whose info has no y_velocity), ``x`` vx (the Swimmer). The step's start position is kept in the
    state matrix (``anchor``), so each copy carries its own and ``current_cost`` reads a synced state.
    """

    def bind(self, L: Layout, m: mujoco.MjModel) -> list[list[Section]]:
        (src,) = L.robot.rules.forward
        if src == "com":
            pos = [L.com, L.com + 1]
        elif src.startswith("xpos:"):
            body = m.body(src.split(":")[1]).id
            pos = [L.block("xpos", body, 0), L.block("xpos", body, 1)]
        elif self.spec.speed == "planar":
            raise ValueError(f"{L.key.name}: a planar speed needs a body or the mass centre, not {src}")
        else:
            pos = [L.qpos(src.split(":")[1])]
        self.pos = pos if self.spec.speed == "planar" else pos[:1]
        self.start = L.add(len(self.pos))  # the forward source at the start of the step
        self.speed = L.add(1)
        self.dt = m.opt.timestep * L.robot.frame_skip  # Gymnasium's MujocoEnv.dt
        self.n_agents = len(L.agents)
        return [[] for _ in L.agents]  # the agents observe the root's velocity already

    def anchor(self, S: np.ndarray, rows: np.ndarray | slice = slice(None)) -> None:
        n = len(self.pos)
        S[rows, self.start:self.start + n] = S[rows][:, self.pos]
        S[rows, self.speed] = 0.0

    def derive(self, S: np.ndarray) -> None:
        # (after - before) / dt and sqrt(vx² + vy²) as Gymnasium and SafeMAEnv write them, so the
        # comparison with the threshold sees the same float64 number
        v = (S[:, self.pos] - S[:, self.start:self.start + len(self.pos)]) / self.dt
        kind = self.spec.speed
        S[:, self.speed] = (np.sqrt(v[:, 0] * v[:, 0] + v[:, 1] * v[:, 1]) if kind == "planar"
                            else np.abs(v[:, 0]) if kind == "abs-x" else v[:, 0])

    def cost(self, S: np.ndarray, terminated: np.ndarray) -> list[np.ndarray]:
        c = (S[:, self.speed] > self.spec.threshold).astype(np.float32)[:, None]
        return [c] * self.n_agents


def make_hazard(spec: HazardSpec, mode: str) -> Hazard:
    return {"obstacle": MovingObstacle, "corridor": Corridor, "velocity": SpeedLimit}[spec.kind](spec, mode)
