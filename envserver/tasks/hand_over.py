r"""``shadow-hand-over``: two Shadow hands pass a block, the MuJoCo stand-in for ShadowHandOver of
Safe Multi-Agent Isaac Gym (mafocops.md App. F.2), as its group publishes it in [Safety-Gymnasium]
``safety_gymnasium/tasks/safe_isaac_gym/envs/tasks/ShadowHandOver_Safe_finger.py`` and
``ShadowHandOver_Safe_joint.py`` (config ``envs/cfgs/ShadowHandOver_Safe_finger.yaml``; below "the
reference") — the hands of Gymnasium-Robotics, the scene of ``hand_model``, E copies stepped in
lockstep like the other MuJoCo tasks.

**Why the block is tipped over, not thrown.** In the reference the first hand throws the object up
to the second. Gymnasium-Robotics' hand cannot throw: its position servos (kp 1, ≤ 0.9 N·m per finger;
wrist kp 5, ≤ 2.2 N·m) turn the wrist at ≤ 5 rad/s, which launches the 71 g block at ≤ 0.5 m/s,
a few centimetres of flight (measured: no scripted wrist/finger flick lifted it off the palm). So
the hands are placed for a hand-over this hand can do (``hand_model``): the catcher below, its
fingers reaching under the thrower's fingertips. The thrower must tilt its palm and straighten its
fingers and thumb until the block tumbles off its fingertips; the catcher must hold its palm flat
under them and close its fingers once the block is in; the block is in the air between the hands.

**Control** (both hands): agent i's action a ∈ [−1, 1] per own actuator (clipped; NaN → 0) is the
servo's target, ``centre + a · half-range`` of its control range (in this asset the range of the
joint it drives) — the reference's absolute control (``scale(action, lower, upper)`` of the actuated
joint's limits, actionsMovingAverage 1.0); dt = 1/60 s as the reference's
(``hand_model.TIMESTEP`` × ``FRAME_SKIP``).

**Reward** (team), the reference's ``compute_hand_reward``:

.. math:: r = e^{-0.2\,(50\,d + \theta)} + 250\cdot[\mathrm{success}]

with d = ‖p_goal − p_block‖ (m), θ = 2·asin(min(‖(q_block ⊗ q_goal⁻¹)_{xyz}‖, 1)). Like the
reference, no action penalty (its Σa² is computed and not added). **Success** is khop's rule: d ≤
0.03 m, bonus paid once, the episode terminates (the reference pays its reachGoalBonus 250 where
d ≤ 0, which never happens, so its episodes run to the fall or the limit). **Fall**: the block's
centre at z ≤ ``FALL_Z``; terminates, no penalty (the reference: z ≤ 0.2 in its scene, fallPenalty
0). Episodes are truncated after 75 steps (episodeLength).

**Cost** (one team cost, the same array for every agent), charged on the action **as sent** (before
clipping; a NaN never counts, as in the reference's comparisons): ``shadow-hand-over`` and
``-fingers`` (the reference's Safe_finger): 1 on a step where any of the thrower's A_FFJ3, A_FFJ2,
A_FFJ1 commands (the reference's ``actions[:, 2:5]``) is < −0.5 or > 0.5; the ``-safe-joint``
variants (Safe_joint): A_FFJ1 (``actions[:, 4]``) alone. Limit 25 per episode: SafePO's
``--cost-limit`` default, which its multi-agent runner uses for these tasks
(``safepo/utils/config.py``; no task-specific value).

Reset (per copy, ``np.random.default_rng([seed, e])``): every hand joint where a zero action holds
it (its servo's mid-range; a coupled J0 at its J1) + U(±0.02 rad), clipped to its range, so that an
idle hand stays still; the block at its start + U(±0.01 m) in x and y, at rest, unrotated; the goal
at its fixed place with the reference's random orientation q_x(π u₀) ⊗ q_y(π u₁), u ~ U(−1, 1)
(``randomize_rotation``); then ``mj_forward``.
A copy whose physics diverges (non-finite state, or MuJoCo's own reset seen as time going back) is
reset, truncated, reward 0 and cost 0, as in ``mujoco_base``.
"""
from __future__ import annotations

from typing import ClassVar

import mujoco
import numpy as np

from . import hand_model as H
from .base import AgentSpec, StepResult, TaskSpec, VecTask
from .mujoco_layout import STATE_SPEC

EPISODE_LENGTH = 75  # the reference's episodeLength (ShadowHandOver_Safe_finger.yaml)
DIST_REWARD_SCALE = 50.0  # the reference's distRewardScale
REACH_GOAL_BONUS = 250.0  # the reference's reachGoalBonus, paid here on khop's success rule
SUCCESS_TOLERANCE = 0.03  # m; khop's (the reference's d <= 0 never fires): scripted catches rest within 0.02 m
# m, world height; ours: 0.1 m below the goal, under the catcher's palm, where the block cannot be caught
# (the reference's z <= 0.2 is 0.34 m below its goal, 0.3 m below its hands' base, 0.2 m above its floor)
FALL_Z = H.GOAL_POS[2] - 0.1
ACTION_BOUND = 0.5  # the reference's compute_cost: cost where an action is < -0.5 or > 0.5
FINGER_ACTUATORS = ("FFJ3", "FFJ2", "FFJ1")  # Safe_finger: the thrower's actions[:, 2], [:, 3], [:, 4]
JOINT_ACTUATORS = ("FFJ1",)  # Safe_joint: actions[:, 4]
COST_LIMIT = 25.0  # SafePO multi_agent_args --cost-limit default (safepo/utils/config.py), used for these tasks
RESET_JOINT_NOISE, RESET_BLOCK_NOISE = 0.02, 0.01  # ours: small, the scripted hand-over works from all

N_OBJ_OBS = 20  # block position 3, quaternion 4, velocity 6; goal − block 3; block ⊗ goal⁻¹ 4
_OBJ_DESC = ("block position (3), orientation quaternion w-first (4), linear velocity (3), angular velocity "
             "in its own frame (3); goal − block position (3); block ⊗ goal⁻¹ quaternion (4)")


def quat_diff(q: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """q ⊗ goal⁻¹ for rows of w-first unit quaternions ``q`` and ``goal`` [E, 4]."""
    w1, x1, y1, z1 = q.T
    w2, x2, y2, z2 = goal[:, 0], -goal[:, 1], -goal[:, 2], -goal[:, 3]
    return np.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], axis=1)


def rotation_distance(qd: np.ndarray) -> np.ndarray:
    """The angle (rad) of each rotation ``qd`` [E, 4]: 2·asin(min(‖xyz‖, 1)), as the reference."""
    return 2.0 * np.arcsin(np.minimum(np.linalg.norm(qd[:, 1:], axis=1), 1.0))


def hand_reward(dist: np.ndarray, rot: np.ndarray, success: np.ndarray) -> np.ndarray:
    """The module docstring's r for rows of goal distance, rotation distance and success."""
    return np.exp(-0.2 * (DIST_REWARD_SCALE * dist + rot)) + REACH_GOAL_BONUS * success


def command_cost(a: np.ndarray) -> np.ndarray:
    """[E] 1.0 where any column of the commands ``a`` [E, k] is < −ACTION_BOUND or > ACTION_BOUND
    (a NaN is neither, as in the reference's ``torch.where`` tests)."""
    return ((a < -ACTION_BOUND) | (a > ACTION_BOUND)).any(axis=1).astype(np.float32)


def random_goal_quat(rng: np.random.Generator) -> np.ndarray:
    """The reference's ``randomize_rotation``: q_x(π u₀) ⊗ q_y(π u₁), u ~ U(−1, 1), w-first."""
    hx, hy = 0.5 * np.pi * rng.uniform(-1.0, 1.0, size=2)
    return np.array([np.cos(hx) * np.cos(hy), np.sin(hx) * np.cos(hy), np.cos(hx) * np.sin(hy),
                     np.sin(hx) * np.sin(hy)])


def _group_joints(hand: int, joints: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(H.PREFIXES[hand] + j for j in joints)


def _spec(name: str, groups: tuple[tuple[int, tuple[str, ...]], ...], cost: tuple[str, ...], topology: str,
          what: str) -> TaskSpec:
    agents = []
    for hand, joints in groups:
        n_act = sum(j in H.HAND_ACTUATED for j in joints)
        desc = (f"local, {2 * len(joints) + N_OBJ_OBS} floats: qpos of hand {hand}'s joints {', '.join(joints)} "
                f"({len(joints)}); qvel of the same joints ({len(joints)}); {_OBJ_DESC}")
        agents.append(AgentSpec(obs_dim=2 * len(joints) + N_OBJ_OBS, act_kind="continuous", act_dim=n_act,
                                obs_desc=desc))
    reference = "Safe_finger" if cost == FINGER_ACTUATORS else "Safe_joint"
    description = (f"Shadow hand-over (Safe MAIG ShadowHandOver_{reference} stand-in, Gymnasium-Robotics hands): "
                   f"{what}. Reward exp(-0.2(50 d + rot)) + 250 on success (d <= {SUCCESS_TOLERANCE:g} m, khop's "
                   f"rule, terminates); ends on a fall. Cost 1 when any of the thrower's "
                   f"{', '.join('A_' + j for j in cost)} commands is outside +-{ACTION_BOUND:g}, shared; "
                   f"limit {COST_LIMIT:g} per {EPISODE_LENGTH}-step episode.")
    return TaskSpec(name=name, agents=tuple(agents), episode_length=EPISODE_LENGTH,
                    cost_names=("forefinger" if cost == FINGER_ACTUATORS else "ffj1",), cost_limits=(COST_LIMIT,),
                    topology=topology, description=description)


class HandOverTask(VecTask):
    """E lockstepped copies of the hand-over; subclasses set ``groups`` (hand, joints per agent),
    ``cost_actuators`` (the thrower's actuators the cost watches) and ``spec``."""

    groups: ClassVar[tuple[tuple[int, tuple[str, ...]], ...]]
    cost_actuators: ClassVar[tuple[str, ...]]
    spec: ClassVar[TaskSpec]

    def __init__(self, n_envs: int, seed: int) -> None:
        super().__init__(n_envs, seed)
        self.model = m = H.compile_model()
        E = n_envs
        self.dt = m.opt.timestep * H.FRAME_SKIP
        self.datas = [mujoco.MjData(m) for _ in range(E)]
        n_state = mujoco.mj_stateSize(m, STATE_SPEC)  # time, qpos, qvel
        self.S = np.zeros((E, n_state + 7))  # + goal − block (3), block ⊗ goal⁻¹ (4)
        self._rows = [self.S[e, :n_state] for e in range(E)]
        self._derived = n_state
        qpos = {m.joint(j).name: 1 + int(m.jnt_qposadr[j]) for j in range(m.njnt)}
        qvel = {m.joint(j).name: 1 + m.nq + int(m.jnt_dofadr[j]) for j in range(m.njnt)}
        obj_p, obj_v = qpos["object:joint"], qvel["object:joint"]
        self._pos, self._quat = slice(obj_p, obj_p + 3), slice(obj_p + 3, obj_p + 7)
        obj_cols = [*range(obj_p, obj_p + 7), *range(obj_v, obj_v + 6), *range(n_state, n_state + 7)]
        act = {m.actuator(a).name: a for a in range(m.nu)}
        self.act_cols, self.obs_idx = [], []
        for hand, joints in self.groups:
            names = _group_joints(hand, joints)
            self.act_cols.append([act[H.PREFIXES[hand] + "A_" + j] for j in joints if j in H.HAND_ACTUATED])
            self.obs_idx.append(np.array([qpos[n] for n in names] + [qvel[n] for n in names] + obj_cols))
        self.cost_cols = [act[H.PREFIXES[0] + "A_" + j] for j in self.cost_actuators]
        lo, hi = m.actuator_ctrlrange[:, 0], m.actuator_ctrlrange[:, 1]
        self._centre, self._half = (lo + hi) / 2, (hi - lo) / 2
        self._a = np.zeros((E, m.nu))
        self._goal_pos, self.goal_quat = np.array(H.GOAL_POS), np.zeros((E, 4))
        hand = [p + j for p in H.PREFIXES for j in H.HAND_JOINTS]
        jnt = [m.joint(n).id for n in hand]
        self._hand_qpos, self._hold = m.jnt_qposadr[jnt], self._hold_pose(m, hand)
        self._hand_lo, self._hand_hi = m.jnt_range[jnt].T
        self._block_qpos = int(m.jnt_qposadr[m.joint("object:joint").id])
        ss = int(seed) & 0xFFFF_FFFF_FFFF_FFFF  # default_rng refuses negative entropy
        self.rngs = [np.random.default_rng([ss, e]) for e in range(E)]
        self._steps = np.zeros(E, dtype=np.int64)
        self._reset_all()

    def _hold_pose(self, m: mujoco.MjModel, joints: list[str]) -> np.ndarray:
        """The angles of ``joints`` in the pose a zero action holds: an actuated joint at its servo's
        target for a = 0, a coupled J0 at its J1 (the joint its tendon ties it to)."""
        target = {m.actuator(a).name.replace("A_", ""): self._centre[a] for a in range(m.nu)}
        return np.array([target[n] if n in target else target[n[:-1] + "1"] for n in joints])

    # ------------------------------------------------------------------ state
    def _sync_copy(self, e: int) -> None:
        mujoco.mj_getState(self.model, self.datas[e], self._rows[e], STATE_SPEC)

    def _derive(self) -> None:
        S, k = self.S, self._derived
        S[:, k:k + 3] = self._goal_pos - S[:, self._pos]
        S[:, k + 3:k + 7] = quat_diff(S[:, self._quat], self.goal_quat)

    def sync(self) -> None:
        """Re-read every copy's MjData into the state matrix (after editing ``datas[e]`` by hand,
        e.g. in tests; call ``mj_forward`` first if you changed qpos)."""
        for e in range(self.n_envs):
            self._sync_copy(e)
        self._derive()

    def goal_distance(self) -> np.ndarray:
        """[E] ‖block − goal‖ of the synced state (m)."""
        return np.linalg.norm(self.S[:, self._derived:self._derived + 3], axis=1)

    # ------------------------------------------------------------------ reset
    def _reset_copy(self, e: int) -> None:
        m, d, rng = self.model, self.datas[e], self.rngs[e]
        mujoco.mj_resetData(m, d)
        q = self._hold + rng.uniform(-RESET_JOINT_NOISE, RESET_JOINT_NOISE, size=len(self._hold))
        d.qpos[self._hand_qpos] = np.clip(q, self._hand_lo, self._hand_hi)
        b = self._block_qpos
        d.qpos[b:b + 2] += rng.uniform(-RESET_BLOCK_NOISE, RESET_BLOCK_NOISE, size=2)
        self.goal_quat[e] = d.mocap_quat[0] = random_goal_quat(rng)
        mujoco.mj_forward(m, d)
        self._sync_copy(e)
        self._steps[e] = 0

    def _reset_all(self) -> None:
        for e in range(self.n_envs):
            self._reset_copy(e)
        self._derive()

    def reset(self) -> list[np.ndarray]:
        self._reset_all()
        return self._observe()

    def _observe(self) -> list[np.ndarray]:
        S32 = self.S.astype(np.float32)
        return [S32.take(idx, axis=1) for idx in self.obs_idx]

    # ------------------------------------------------------------------- step
    def _route(self, actions: list[np.ndarray]) -> np.ndarray:
        """Write the actions into the [E, 40] action matrix and clip them there (NaN → 0); return the
        cost, charged on the commands as sent."""
        if len(actions) != len(self.act_cols):
            raise ValueError(f"expected {len(self.act_cols)} action arrays, got {len(actions)}")
        a = self._a
        for i, cols in enumerate(self.act_cols):
            want = (self.n_envs, len(cols))
            if getattr(actions[i], "shape", None) != want:
                raise ValueError(f"agent {i} action has shape {np.shape(actions[i])}, expected {want}")
            a[:, cols] = actions[i]
        cost = command_cost(a[:, self.cost_cols])
        np.clip(a, -1.0, 1.0, out=a)
        a[np.isnan(a)] = 0.0
        return cost

    def step(self, actions: list[np.ndarray]) -> StepResult:
        S, m = self.S, self.model
        cost = self._route(actions)
        ctrl = self._centre + self._a * self._half
        half, diverged = 0.5 * self.dt, []
        for e, d in enumerate(self.datas):
            t0 = d.time
            d.ctrl[:] = ctrl[e]
            mujoco.mj_step(m, d, nstep=H.FRAME_SKIP)
            if d.time < t0 + half:  # MuJoCo reset this copy mid-step: its physics diverged
                diverged.append(e)
            mujoco.mj_getState(m, d, self._rows[e], STATE_SPEC)
        self._derive()
        dist = self.goal_distance()
        success = dist <= SUCCESS_TOLERANCE
        fell = S[:, self._pos.start + 2] <= FALL_Z
        rot = rotation_distance(S[:, self._derived + 3:self._derived + 7])
        reward = hand_reward(dist, rot, success)
        terminated = success | fell
        self._steps += 1
        truncated = (self._steps >= EPISODE_LENGTH) & ~terminated
        bad = ~np.isfinite(S).all(axis=1)
        bad[diverged] = True
        if bad.any():  # diverged physics: end the episode with reward 0 and cost 0 rather than send NaN
            S[bad], reward[bad], cost[bad] = 0.0, 0.0, 0.0
            terminated &= ~bad
            truncated |= bad
        done = terminated | truncated
        if done.any():
            for e in np.flatnonzero(done):
                self._reset_copy(int(e))
            self._derive()
        costs = [cost[:, None]] * len(self.groups)  # one team cost, the same array for every agent
        return StepResult(obs=self._observe(), reward=reward.astype(np.float32), cost=costs,
                          terminated=terminated, truncated=truncated)

    def close(self) -> None:
        self.datas, self._rows = [], []


_HANDS = tuple((hand, H.HAND_JOINTS) for hand in (0, 1))
_FINGERS = tuple((hand, group) for hand in (0, 1) for group in H.FINGER_GROUPS)
_WHAT_HANDS = "agent 0 the thrower's 20 actuators, agent 1 the catcher's"
_WHAT_FINGERS = "agents 0-2 the thrower's wrist+thumb | first+middle | ring+little fingers, agents 3-5 the catcher's"


class ShadowHandOver(HandOverTask):
    """Two agents, one hand each (20 actuators), as the reference; its Safe_finger cost."""

    groups, cost_actuators = _HANDS, FINGER_ACTUATORS
    spec = _spec("shadow-hand-over", _HANDS, FINGER_ACTUATORS, "complete", _WHAT_HANDS)


class ShadowHandOverFingers(HandOverTask):
    """Six agents, three finger groups per hand (wrist + thumb 7, first + middle 6, ring + little 7);
    the Safe_finger cost."""

    groups, cost_actuators = _FINGERS, FINGER_ACTUATORS
    spec = _spec("shadow-hand-over-fingers", _FINGERS, FINGER_ACTUATORS, "shadow-hand-over-fingers", _WHAT_FINGERS)


class ShadowHandOverSafeJoint(HandOverTask):
    """``shadow-hand-over`` with the reference's Safe_joint cost (A_FFJ1 alone)."""

    groups, cost_actuators = _HANDS, JOINT_ACTUATORS
    spec = _spec("shadow-hand-over-safe-joint", _HANDS, JOINT_ACTUATORS, "complete", _WHAT_HANDS)


class ShadowHandOverFingersSafeJoint(HandOverTask):
    """``shadow-hand-over-fingers`` with the reference's Safe_joint cost (A_FFJ1 alone)."""

    groups, cost_actuators = _FINGERS, JOINT_ACTUATORS
    spec = _spec("shadow-hand-over-fingers-safe-joint", _FINGERS, JOINT_ACTUATORS, "shadow-hand-over-fingers",
                 _WHAT_FINGERS)
