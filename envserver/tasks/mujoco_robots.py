"""The robots of the MuJoCo tasks, as data: joints, joint graph, partitions and physics rules.

Nothing here imports MuJoCo, so the task registry can list names (and ``khop`` can reject a bad
one) without paying for it. Every number cites where it comes from: Gymnasium's v5 environments
for the plain robots (``dpo.md`` appendix A.2), the MACPO code described in
``shared/research/safe-mamujoco.md`` (cited as "spec §n") for the Safe variants, and Gymnasium's v4
environments for the robots of the Safety-Gymnasium velocity tasks (SafePO trained those through
gymnasium-robotics 1.2.2, whose ``MultiAgentMujocoEnv`` appends ``-v4`` to the scenario; "GR 1.2.2").

A *partition* assigns each actuated joint to exactly one agent; agent i drives the actuators of
its own joints (routing by joint name, so ``ant 2x4`` and ``2x4d`` really differ — MACPO's
contiguous routing made them the same task, spec §1.2). The *joint graph* is MaMuJoCo's
hypergraph (spec §2.1): joints in a parent–child chain, or attached to one body, are adjacent.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

# A global observation entry: (array, joint, component, label); the column is the joint's
# qpos/qvel address + component.
GlobalObs = tuple[str, str, int, str]


@dataclass(frozen=True)
class Health:
    """When a robot is healthy; an unhealthy step terminates the episode (Gymnasium v5)."""

    z: tuple[str, int, float, float]  # (joint, qpos component, lo, hi)
    angle: tuple[str, int, float, float] | None = None
    inclusive: bool = False  # Ant checks lo <= z <= hi, the planar walkers use strict bounds
    state_abs_max: float | None = None  # Hopper: |qpos[2:]|, |qvel| < 100
    zrot_min: float | None = None  # Safe Ant families (MACPO): torso z-axis · world z >= -0.7


@dataclass(frozen=True)
class Rules:
    """Reward, termination, reset and observation categories of one robot."""

    forward: tuple[str, ...]  # x sources averaged: "qpos:<joint>", "xpos:<body>" or "com"
    forward_weight: float
    ctrl_weight: float
    healthy_reward: float = 0.0
    health: Health | None = None  # None: the robot never terminates
    contact: tuple[float, float | None, float | None] | None = None  # (weight, clip, cap)
    reset: tuple[str, float] = ("uniform_normal", 0.1)  # or ("uniform", scale)
    qvel_obs_clip: float | None = None  # Hopper/Walker2d v5 clip qvel to ±10 in the observation
    dof_obs: tuple[str, ...] = ("qpos", "qvel")  # per own joint
    body_obs: tuple[str, ...] = ()  # per own body: "cinert", "cvel", "cfrc_ext"
    # v4: the healthy reward is paid on every step, the terminating one included
    # (``float(is_healthy or terminate_when_unhealthy) * healthy_reward``); v5 pays it on healthy steps only
    alive_on_termination: bool = False


@dataclass(frozen=True)
class Robot:
    key: str
    asset: str  # file in envserver/assets, or "manyagent:<segments>" (generated)
    frame_skip: int
    joints: tuple[str, ...]  # actuated joints, actuator order
    edges: tuple[tuple[str, ...], ...]  # hyperedges of the joint graph
    partitions: dict[str, tuple[tuple[str, ...], ...]]
    globals: tuple[tuple[GlobalObs, ...], ...]  # one tuple per root (two for Coupled)
    rules: Rules
    root_of: dict[str, int] = field(default_factory=dict)  # joint -> root index (default 0)
    main_body: str = "torso"
    tendon_obs: bool = False  # observe the tendons' length and velocity (Coupled's coupling tendon)

    def partition(self, conf: str) -> tuple[tuple[str, ...], ...]:
        """The agents' joint tuples for ``conf``; a malformed or undefined one is a ValueError."""
        if not isinstance(conf, str) or not _CONF.fullmatch(conf):
            raise ValueError(f"malformed partition {conf!r} for {self.key}: expected AGENTSxJOINTS "
                             f"or J1+J2+..., such as {next(iter(self.partitions))}")
        try:
            return self.partitions[conf]
        except KeyError:
            raise ValueError(f"partition {conf!r} is not defined for {self.key}; "
                             f"defined: {', '.join(self.partitions)}") from None


# AGENTSxJOINTS (d: diagonal), or the joints per agent J1+J2+... (GR 1.2.2's Humanoid "9|8" is "9+8":
# "|" cannot stand unquoted in a shell argument nor in every file name, and 9x8 would read as 9 agents)
_CONF = re.compile(r"[1-9][0-9]*x[1-9][0-9]*d?|[1-9][0-9]*(?:\+[1-9][0-9]*)+")


def _singletons(joints: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple((j,) for j in joints)


def _chain(*joints: str) -> tuple[tuple[str, str], ...]:
    return tuple(zip(joints[:-1], joints[1:]))


def _planar_root(sfx: str = "") -> tuple[GlobalObs, ...]:
    return (("qpos", f"rootz{sfx}", 0, f"rootz{sfx}"), ("qpos", f"rooty{sfx}", 0, f"rooty{sfx} (pitch)"),
            ("qvel", f"rootx{sfx}", 0, f"vx{sfx}"), ("qvel", f"rootz{sfx}", 0, f"vz{sfx}"),
            ("qvel", f"rooty{sfx}", 0, f"wy{sfx}"))


_FREE_ROOT: tuple[GlobalObs, ...] = (
    ("qpos", "root", 2, "torso z"), *(("qpos", "root", 3 + k, f"torso quat {c}") for k, c in enumerate("wxyz")),
    *(("qvel", "root", k, f"torso {c}") for k, c in enumerate(("vx", "vy", "vz", "wx", "wy", "wz"))),
)

# --------------------------------------------------------------------------- HalfCheetah (spec §2.2)
_HC = ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")
_HC_RULES = Rules(forward=("qpos:rootx",), forward_weight=1.0, ctrl_weight=0.1)  # HalfCheetah-v5
HALFCHEETAH = Robot(
    key="halfcheetah", asset="half_cheetah.xml", frame_skip=5, joints=_HC,
    edges=_chain("bfoot", "bshin", "bthigh", "fthigh", "fshin", "ffoot"),
    partitions={
        "2x3": (("bthigh", "bshin", "bfoot"), ("fthigh", "fshin", "ffoot")),
        # MACPO's nominal 3x2 (spec §2.2), routed by name: back shin+foot, back thigh+front foot,
        # front thigh+shin
        "3x2": (("bshin", "bfoot"), ("bthigh", "ffoot"), ("fthigh", "fshin")),
        "6x1": _singletons(_HC),
    },
    globals=(_planar_root(),), rules=_HC_RULES)

# ------------------------------------------------------------- Coupled HalfCheetah (spec §2.5, §3.5)
_CHC = tuple(f"{j}{c}" for c in "01" for j in _HC)
COUPLED_HALFCHEETAH = Robot(
    key="coupled-halfcheetah", asset="coupled_half_cheetah.xml", frame_skip=5, joints=_CHC,
    edges=(*_chain(*(f"{j}0" for j in ("bfoot", "bshin", "bthigh", "fthigh", "fshin", "ffoot"))),
           *_chain(*(f"{j}1" for j in ("bfoot", "bshin", "bthigh", "fthigh", "fshin", "ffoot"))),
           # the tendon ties the two torsos: the joints on either torso form one hyperedge
           ("bthigh0", "fthigh0", "bthigh1", "fthigh1")),
    partitions={"2x6": (_CHC[:6], _CHC[6:]), "12x1": _singletons(_CHC)},
    globals=(_planar_root("0"), _planar_root("1")),
    # reward: mean of the two cheetahs' forward velocity minus 0.1 * mean of their ‖a‖² (spec §3.1)
    rules=Rules(forward=("qpos:rootx0", "qpos:rootx1"), forward_weight=1.0, ctrl_weight=0.05),
    root_of={j: int(j[-1]) for j in _CHC}, main_body="torso0", tendon_obs=True)

# ------------------------------------------------------------------------------ Ant (spec §2.3)
_ANT = ("hip_4", "ankle_4", "hip_1", "ankle_1", "hip_2", "ankle_2", "hip_3", "ankle_3")


def _leg(i: int) -> tuple[str, str]:
    return (f"hip_{i}", f"ankle_{i}")


# Ant-v5: forward = d(torso xpos x)/dt, healthy 1, ctrl 0.5, contact 5e-4 Σ clip(cfrc_ext, ±1)²
_ANT_RULES = Rules(forward=("xpos:torso",), forward_weight=1.0, ctrl_weight=0.5, healthy_reward=1.0,
                   health=Health(z=("root", 2, 0.2, 1.0), inclusive=True), contact=(5e-4, 1.0, None),
                   body_obs=("cfrc_ext",))
ANT = Robot(
    key="ant", asset="ant.xml", frame_skip=5, joints=_ANT,
    edges=(*(_leg(i) for i in range(1, 5)), ("hip_1", "hip_2", "hip_3", "hip_4")),
    partitions={
        "2x4": (_leg(1) + _leg(2), _leg(3) + _leg(4)),
        "2x4d": (_leg(1) + _leg(3), _leg(2) + _leg(4)),  # diagonal legs (ORIG/MACPO nominal)
        "4x2": tuple(_leg(i) for i in range(1, 5)),
        "8x1": _singletons(tuple(j for i in range(1, 5) for j in _leg(i))),
    },
    globals=(_FREE_ROOT,), rules=_ANT_RULES)

_SAFE_ANT_RULES = replace(_ANT_RULES, health=Health(z=("root", 2, 0.2, 1.0), inclusive=True, zrot_min=-0.7))


# ----------------------------------------------------------------- ManyAgent Ant (spec §2.4, §3.3)
def manyagent_ant(n_segs: int) -> Robot:
    """The generated many-segment ant: ``n_segs`` rigidly chained segments of 4 joints each."""
    seg = [(f"hip1_{s}", f"ankle1_{s}", f"hip2_{s}", f"ankle2_{s}") for s in range(n_segs)]
    edges: list[tuple[str, ...]] = []
    for s in range(n_segs):
        edges += [(f"ankle1_{s}", f"hip1_{s}"), (f"ankle2_{s}", f"hip2_{s}"), (f"hip1_{s}", f"hip2_{s}")]
        if s:  # consecutive segments' hips (the MaMuJoCo deepcopy quirk of §2.4 is not reproduced)
            edges.append((f"hip1_{s - 1}", f"hip2_{s - 1}", f"hip1_{s}", f"hip2_{s}"))
    parts = {}
    for a in range(1, n_segs + 1):
        if n_segs % a == 0:
            per = n_segs // a
            parts[f"{a}x{per}"] = tuple(sum(seg[k * per:(k + 1) * per], ()) for k in range(a))
    # MACPO's manyagent_ant.py: Ant reward on torso_0, RK4 dt 0.005 x 4 (spec §3.1)
    return Robot(key=f"manyagent-ant-{n_segs}seg", asset=f"manyagent:{n_segs}", frame_skip=4,
                 joints=tuple(j for s in seg for j in s), edges=tuple(edges), partitions=parts,
                 globals=(_FREE_ROOT,), main_body="torso_0",
                 rules=replace(_SAFE_ANT_RULES, forward=("xpos:torso_0",)))


# ------------------------------------------------------------------ Hopper, Walker2d (spec §2.6)
_HOPPER = ("thigh_joint", "leg_joint", "foot_joint")
HOPPER = Robot(
    key="hopper", asset="hopper.xml", frame_skip=4, joints=_HOPPER, edges=_chain(*_HOPPER),
    partitions={"3x1": _singletons(_HOPPER)}, globals=(_planar_root(),),
    rules=Rules(forward=("qpos:rootx",), forward_weight=1.0, ctrl_weight=1e-3, healthy_reward=1.0,
                health=Health(z=("rootz", 0, 0.7, float("inf")), angle=("rooty", 0, -0.2, 0.2),
                              state_abs_max=100.0),
                reset=("uniform", 5e-3), qvel_obs_clip=10.0))

_WALKER = ("thigh_joint", "leg_joint", "foot_joint", "thigh_left_joint", "leg_left_joint", "foot_left_joint")
WALKER2D = Robot(
    key="walker2d", asset="walker2d.xml", frame_skip=4, joints=_WALKER,
    edges=_chain("foot_joint", "leg_joint", "thigh_joint", "thigh_left_joint", "leg_left_joint",
                 "foot_left_joint"),
    # HARL's 3x2 (spec §2.6): (foot, leg), (thigh, foot_left), (leg_left, thigh_left)
    partitions={"3x2": (("leg_joint", "foot_joint"), ("thigh_joint", "foot_left_joint"),
                        ("thigh_left_joint", "leg_left_joint")),
                # GR 1.2.2 obsk.py "2x3": right leg | left leg, each foot-to-thigh as there
                "2x3": (("foot_joint", "leg_joint", "thigh_joint"),
                        ("foot_left_joint", "leg_left_joint", "thigh_left_joint"))},
    globals=(_planar_root(),),
    rules=Rules(forward=("qpos:rootx",), forward_weight=1.0, ctrl_weight=1e-3, healthy_reward=1.0,
                health=Health(z=("rootz", 0, 0.8, 2.0), angle=("rooty", 0, -1.0, 1.0)),
                reset=("uniform", 5e-3), qvel_obs_clip=10.0))

# ------------------------------------------------------------------------ Humanoid (spec §2.6)
_HUM = ("abdomen_y", "abdomen_z", "abdomen_x", "right_hip_x", "right_hip_z", "right_hip_y", "right_knee",
        "left_hip_x", "left_hip_z", "left_hip_y", "left_knee", "right_shoulder1", "right_shoulder2",
        "right_elbow", "left_shoulder1", "left_shoulder2", "left_elbow")
_ABD = ("abdomen_x", "abdomen_y", "abdomen_z")
_RH = ("right_hip_x", "right_hip_y", "right_hip_z")
_LH = ("left_hip_x", "left_hip_y", "left_hip_z")
HUMANOID = Robot(
    key="humanoid", asset="humanoid.xml", frame_skip=5, joints=_HUM,
    edges=(_ABD, _RH, _LH, ("left_elbow", "left_shoulder1", "left_shoulder2"),
           ("right_elbow", "right_shoulder1", "right_shoulder2"), ("left_knee", *_LH), ("right_knee", *_RH),
           ("left_shoulder1", "left_shoulder2", *_ABD), ("right_shoulder1", "right_shoulder2", *_ABD),
           (*_ABD, *_LH), (*_ABD, *_RH)),
    partitions={"17x1": _singletons(_HUM),
                # GR 1.2.2 obsk.py "9|8": upper body (abdomen, arms) | lower body (legs), in its order
                "9+8": ((*_ABD, "right_shoulder1", "right_shoulder2", "right_elbow", "left_shoulder1",
                         "left_shoulder2", "left_elbow"),
                        (*_RH, "right_knee", *_LH, "left_knee"))},
    globals=(_FREE_ROOT,),
    # Humanoid-v5: 1.25 d(mass-centre x)/dt + 5 healthy − 0.1‖ctrl‖² − min(5e-7 Σ cfrc_ext², 10)
    rules=Rules(forward=("com",), forward_weight=1.25, ctrl_weight=0.1, healthy_reward=5.0,
                health=Health(z=("root", 2, 1.0, 2.0)), contact=(5e-7, None, 10.0), reset=("uniform", 1e-2),
                dof_obs=("qpos", "qvel", "qfrc_actuator"), body_obs=("cinert", "cvel", "cfrc_ext")))

SAFE_ANT = replace(ANT, key="safe-ant", rules=_SAFE_ANT_RULES)

# ------------------------------------------------------------------------------------- Swimmer
_SWIM = ("motor1_rot", "motor2_rot")
SWIMMER = Robot(
    key="swimmer", asset="swimmer.xml", frame_skip=4, joints=_SWIM, edges=(_SWIM,),
    partitions={"2x1": _singletons(_SWIM)},  # GR 1.2.2 obsk.py "2x1" (its nodes rot2, rot3)
    # the root is slider1 (x), slider2 (y), free_body_rot (yaw); Swimmer-v4 observes all but x, y
    globals=((("qpos", "free_body_rot", 0, "yaw"), ("qvel", "slider1", 0, "vx"), ("qvel", "slider2", 0, "vy"),
              ("qvel", "free_body_rot", 0, "wz")),),
    # Swimmer-v4 (= v5): reward dx/dt - 1e-4 |a|^2 with x = qpos[0], never terminates, U(±0.1) reset
    rules=Rules(forward=("qpos:slider1",), forward_weight=1.0, ctrl_weight=1e-4, reset=("uniform", 0.1)))

# ----------------------------------------------------- Gymnasium v4 robots (Safety-Gymnasium velocity)
# Where v4 differs from the v5 robots above (gymnasium/envs/mujoco/*_v4.py): the healthy reward on the
# terminating step too; Ant-v4 (use_contact_forces=False, GR 1.2.2's default) has no contact cost and
# no cfrc_ext in its observation; Humanoid-v4 has no contact cost, and its cfrc_ext observation is all
# zeros (nothing calls mj_rnePostConstraint), so we leave it out; Walker2d-v4's left foot has friction
# 1.9 (walker2d.xml; v5's walker2d_v5.xml has 0.9 on both feet). HalfCheetah-v4 = HalfCheetah-v5.
ANT_V4 = replace(ANT, key="ant-v4", rules=replace(_ANT_RULES, contact=None, body_obs=(), alive_on_termination=True))
HOPPER_V4 = replace(HOPPER, key="hopper-v4", rules=replace(HOPPER.rules, alive_on_termination=True))
WALKER2D_V4 = replace(WALKER2D, key="walker2d-v4", asset="walker2d_v4.xml",
                      rules=replace(WALKER2D.rules, alive_on_termination=True))
HUMANOID_V4 = replace(HUMANOID, key="humanoid-v4", rules=replace(
    HUMANOID.rules, contact=None, body_obs=("cinert", "cvel"), alive_on_termination=True))


def agent_edges(robot: Robot, conf: str) -> dict[tuple[int, int], list[tuple[str, str]]]:
    """The agent graph of a partition (spec §2.1): agents i < j are adjacent iff a joint of i and a
    joint of j share a hyperedge of the joint graph; the value lists those joint pairs."""
    owner = {j: i for i, joints in enumerate(robot.partition(conf)) for j in joints}
    out: dict[tuple[int, int], list[tuple[str, str]]] = {}
    for edge in robot.edges:
        for a in edge:
            for b in edge:
                if owner[a] < owner[b]:
                    pairs = out.setdefault((owner[a], owner[b]), [])
                    if (a, b) not in pairs:
                        pairs.append((a, b))
    return dict(sorted(out.items()))
