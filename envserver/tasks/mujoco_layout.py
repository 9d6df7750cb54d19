"""Where every quantity of a MuJoCo task lives in the state matrix, computed once per task class.

The generic task (``mujoco_base``) keeps a float64 *state matrix* ``S`` [E, width]: per copy the
time, qpos and qvel (``mj_getState``), the MjData arrays the task reads (xpos, cfrc_ext, ...) and
derived columns (clipped velocities, the mass centre, the hazard's quantities). A :class:`Layout`
names those columns and turns each agent's observation into one index array, so observing is one
gather per agent for all E copies.

What an agent observes (``AgentSpec.obs_desc`` lists it per task): its own joints' categories
(qpos, qvel; Humanoid adds qfrc_actuator), per own body the robot's body categories (Ant family:
cfrc_ext clipped to ±1; Humanoid: cinert, cvel, cfrc_ext), the root's globals (planar robots:
rootz, rooty, vx, vz, wy; free roots: z, quaternion, 6 velocities), and the hazard's quantities.
It never sees another agent's joints: κ-hop information travels through the neighbour relay.
"""
from __future__ import annotations

import mujoco
import numpy as np

from .base import AgentSpec, TaskSpec
from .mujoco_catalog import TaskKey
from .mujoco_hazards import Hazard, make_hazard
from .mujoco_models import compile_model

EPISODE_LENGTH = 1000  # every MaMuJoCo / Safe MAMuJoCo task (spec §1.4, dpo.md appendix B)
STATE_SPEC = mujoco.mjtState.mjSTATE_TIME | mujoco.mjtState.mjSTATE_QPOS | mujoco.mjtState.mjSTATE_QVEL
_ROW = {"xpos": 3, "xipos": 3, "cfrc_ext": 6, "cinert": 10, "cvel": 6, "qfrc_actuator": 1,
        "ten_length": 1, "ten_velocity": 1}
Section = tuple[str, list[int]]  # (description, state columns)


class Layout:
    """Columns of the state matrix and per-agent index arrays for one task (built once per class)."""

    def __init__(self, key: TaskKey) -> None:
        self.key, self.robot = key, key.robot
        rules = self.robot.rules
        m = compile_model(key.robot, key.hazard)
        self.nq, self.nv, self.nu = m.nq, m.nv, m.nu
        self.agents = key.robot.partition(key.conf)
        self.n_state = mujoco.mj_stateSize(m, STATE_SPEC)
        self.width = self.n_state
        self.blocks: dict[str, int] = {}
        self._m, self._d = m, mujoco.MjData(m)
        self._jid = {j: m.joint(j).id for j in (m.joint(i).name for i in range(m.njnt))}
        self.act_cols = [[m.actuator(self._actuator_of(m, j)).id for j in joints] for joints in self.agents]
        self.n_robot_act = len(self.robot.joints)
        self.ctrl_range = m.actuator_ctrlrange[:self.n_robot_act].copy()
        self.agent_bodies = [self._bodies(m, joints) for joints in self.agents]

        need = {src.split(":")[0] for src in rules.forward if ":" in src} - {"qpos"}
        need |= {"xipos"} if "com" in rules.forward else set()
        need |= {"cfrc_ext"} if rules.contact else set()
        need |= set(rules.body_obs) | ({"qfrc_actuator"} & set(rules.dof_obs))
        need |= {"ten_length", "ten_velocity"} if self.robot.tendon_obs else set()
        self.need(need)
        # the mass centre's x, y (derived; Humanoid's forward source, and its velocity cost reads y)
        self.com = self.add(2) if "com" in rules.forward else None
        self.hazard: Hazard | None = make_hazard(key.hazard, key.cost_mode) if key.hazard else None
        extras = self.hazard.bind(self, m) if self.hazard else [[] for _ in self.agents]

        # forward-progress sources (averaged), health columns, contact block
        self.fwd = [self.com if src == "com" else self._source(m, src) for src in rules.forward]
        self.mass = m.body_mass / m.body_mass.sum()
        self.qvel_obs = self.add(self.nv) if rules.qvel_obs_clip else self.qvel(None)
        self.obs_idx, self.obs_desc = [], []
        for i, joints in enumerate(self.agents):
            idx, desc = self._observation(m, i, joints, extras[i])
            self.obs_idx.append(np.array(idx, dtype=np.intp))
            self.obs_desc.append(desc)

    # ----------------------------------------------------------------- column lookups
    def need(self, names: set[str] | frozenset[str]) -> None:
        """Allocate a block of S for each named MjData array (copied from every copy each step)."""
        for name in sorted(set(names) - set(self.blocks)):
            self.blocks[name] = self.width
            self.width += getattr(self._d, name).size

    def add(self, n: int) -> int:
        """Allocate ``n`` derived columns; return the first."""
        self.width += n
        return self.width - n

    def qpos(self, joint: str | None, k: int = 0) -> int:
        return 1 + (0 if joint is None else int(self._m.jnt_qposadr[self._jid[joint]])) + k

    def qvel(self, joint: str | None, k: int = 0) -> int:
        return 1 + self.nq + (0 if joint is None else int(self._m.jnt_dofadr[self._jid[joint]])) + k

    def block(self, name: str, row: int, k: int = 0) -> int:
        return self.blocks[name] + _ROW[name] * row + k

    # ------------------------------------------------------------------ structure
    @staticmethod
    def _actuator_of(m: mujoco.MjModel, joint: str) -> int:
        jid = m.joint(joint).id
        hits = [a for a in range(m.nu) if m.actuator_trnid[a, 0] == jid
                and m.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT]
        if len(hits) != 1:
            raise RuntimeError(f"joint {joint!r} must have exactly one actuator, found {len(hits)}")
        return hits[0]

    @staticmethod
    def _bodies(m: mujoco.MjModel, joints: tuple[str, ...]) -> tuple[int, ...]:
        """An agent's bodies: each body one of its joints moves, plus their jointless descendants
        (e.g. Humanoid's feet) — the parts of the robot that are the agent's own."""
        own = {int(m.jnt_bodyid[m.joint(j).id]) for j in joints}
        out = []
        for b in range(1, m.nbody):
            c = b
            while c not in own and m.body_jntnum[c] == 0 and c != 0:
                c = int(m.body_parentid[c])
            if c in own:
                out.append(b)
        return tuple(out)

    def _source(self, m: mujoco.MjModel, src: str) -> int:
        kind, name = src.split(":")
        return self.qpos(name) if kind == "qpos" else self.block("xpos", m.body(name).id, 0)

    def _observation(self, m: mujoco.MjModel, i: int, joints: tuple[str, ...],
                     extras: list[Section]) -> tuple[list[int], str]:
        rules, sections = self.robot.rules, []
        dof = [int(m.jnt_dofadr[m.joint(j).id]) for j in joints]
        for cat in rules.dof_obs:
            if cat == "qpos":
                cols = [self.qpos(j) for j in joints]
            elif cat == "qvel":
                cols = [self.qvel_obs + d for d in dof]
            else:
                cols = [self.block(cat, d) for d in dof]
            what = "of own joints " + ", ".join(joints) if cat == "qpos" else "of the same joints"
            clip = " clipped to ±10" if cat == "qvel" and rules.qvel_obs_clip else ""
            sections.append((f"{cat} {what}{clip}", cols))
        names = [m.body(b).name or f"{m.joint(int(m.body_jntadr[b])).name} link" for b in self.agent_bodies[i]]
        for cat in rules.body_obs:
            clip = " clipped to ±1" if cat == "cfrc_ext" and rules.contact and rules.contact[1] else ""
            cols = [self.block(cat, b, k) for b in self.agent_bodies[i] for k in range(_ROW[cat])]
            sections.append((f"{cat}{clip} of own bodies {', '.join(names)}", cols))
        root = self.robot.root_of.get(joints[0], 0)
        gl = self.robot.globals[root]
        cols = [self.qpos(j, k) if arr == "qpos" else self.qvel_obs + int(m.jnt_dofadr[self._jid[j]]) + k
                for arr, j, k, _ in gl]
        sections.append(("root: " + ", ".join(label for *_x, label in gl), cols))
        if "ten_length" in self.blocks:
            sections.append(("tendon length and velocity", [self.blocks["ten_length"], self.blocks["ten_velocity"]]))
        sections += extras
        idx = [c for _, cols in sections for c in cols]
        desc = f"local, {len(idx)} floats: " + "; ".join(f"{t} ({len(c)})" for t, c in sections)
        return idx, desc

    def spec(self, description: str) -> TaskSpec:
        lo, hi = self.ctrl_range[:, 0], self.ctrl_range[:, 1]
        agents = []
        for i, cols in enumerate(self.act_cols):
            if np.ptp(lo[cols]) or np.ptp(hi[cols]):
                raise RuntimeError(f"agent {i}'s actuators have different control ranges")
            agents.append(AgentSpec(obs_dim=len(self.obs_idx[i]), act_kind="continuous", act_dim=len(cols),
                                    act_low=float(lo[cols[0]]), act_high=float(hi[cols[0]]),
                                    obs_desc=self.obs_desc[i]))
        hz = self.key.hazard
        return TaskSpec(
            name=self.key.name, agents=tuple(agents), episode_length=EPISODE_LENGTH,
            cost_names=(hz.cost_name,) if hz else (), cost_limits=(hz.cost_limit,) if hz else (),
            topology=self.key.topology, description=description,
            extra={"dt": float(self._m.opt.timestep * self.robot.frame_skip), "frame_skip": self.robot.frame_skip,
                   "partition": [list(j) for j in self.agents], "cost_mode": self.key.cost_mode if hz else "none"})
