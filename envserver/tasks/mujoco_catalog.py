"""Every MuJoCo task name, as data: robot × partition × hazard × cost mode.

Imported by the task registry at start-up, so it stays free of MuJoCo and networkx. Names:

* ``safe-<robot>-<partition>``: Safe MAMuJoCo, the papers' robot-level cost given to every agent
  (``shared``); ``...-local`` is the same task with each agent's own cost (see
  ``mujoco_hazards``). Robots: ``halfcheetah`` (2x3, 3x2, 6x1), ``coupled-halfcheetah`` (2x6, 12x1),
  ``ant`` (2x4, 2x4d, 4x2, 8x1), ``manyagent-ant`` (2x3, 3x2, 6x1 on 6 segments; 2x4, 4x2, 8x1 on 8).
* ``mamujoco-<robot>-<partition>``: the plain MaMuJoCo tasks of the DPO paper (appendix A.2,
  Table 1), no cost: halfcheetah 3x2, hopper 3x1, walker2d 3x2, ant 4x2, humanoid 17x1.
* ``safe-velocity-<robot>-<partition>``: Safety-Gymnasium's multi-agent velocity tasks, the ones
  SafePO benchmarks (``Safety<partition><Robot>Velocity-v0``): the plain robot of Gymnasium v4 and a
  team cost of 1 on every step faster than the task's threshold; ant 2x4, 4x2, halfcheetah 2x3, 6x1,
  hopper 3x1, humanoid 9+8 (Safety-Gymnasium's "9|8"), swimmer 2x1, walker2d 2x3.

Each task's default agent graph is the shipped topology ``<robot>-<partition>`` (plain and safe
tasks of one robot and partition share it).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import mujoco_robots as R

COST_MODES = ("shared", "local")


@dataclass(frozen=True)
class HazardSpec:
    """The Safe variant's hazard; the physics lives in ``mujoco_hazards``."""

    kind: str  # "obstacle" (moving slab ahead of a cheetah), "corridor" (folded walls) or "velocity"
    cost_name: str
    cost_limit: float  # per episode: MACPO README (spec §5.1); velocity: SafePO's cost_limit 25
    distance: float = 0.0  # obstacle: cost fires closer than this in x; corridor: half-width w
    threshold: float = 1.8  # corridor: cost band half-width around each wall (spec §3.2); velocity: m/s
    speed: str = ""  # velocity: "planar" sqrt(vx² + vy²), "abs-x" |vx| or "x" vx (see _VELOCITY)


OBSTACLE_HC = HazardSpec("obstacle", "obstacle", 5.0, 9.0)  # spec §3.4
# spec §3.5 gives no bound for Coupled (absent from the README results): HalfCheetah's 5 is ours
OBSTACLE_COUPLED = HazardSpec("obstacle", "obstacle", 5.0, 5.0)
CORRIDOR_ANT = HazardSpec("corridor", "corridor", 0.2, 5.0)  # 10 m corridor, spec §3.2
CORRIDOR_MANYAGENT = HazardSpec("corridor", "corridor", 1.0, 4.5)  # 9 m corridor, spec §3.3


def _velocity(threshold: float, speed: str) -> HazardSpec:
    # SafePO safepo/utils/config.py: cost_limit (--safety-bound) 25 for every MuJoCo velocity task
    return HazardSpec("velocity", "velocity", 25.0, threshold=threshold, speed=speed)


@dataclass(frozen=True)
class TaskKey:
    name: str
    robot: R.Robot
    conf: str
    topology: str
    hazard: HazardSpec | None = None
    cost_mode: str = "shared"  # ignored without a hazard


def _manyagent(conf: str) -> R.Robot:
    a, s = (int(v) for v in conf.split("x"))
    return R.manyagent_ant(a * s)


# (name prefix, topology prefix, robot for a partition, hazard, partitions)
_SAFE = (
    ("safe-halfcheetah", "halfcheetah", lambda c: R.HALFCHEETAH, OBSTACLE_HC, ("2x3", "3x2", "6x1")),
    ("safe-coupled-halfcheetah", "coupled-halfcheetah", lambda c: R.COUPLED_HALFCHEETAH, OBSTACLE_COUPLED,
     ("2x6", "12x1")),
    ("safe-ant", "ant", lambda c: R.SAFE_ANT, CORRIDOR_ANT, ("2x4", "2x4d", "4x2", "8x1")),
    ("safe-manyagent-ant", "manyagent-ant", _manyagent, CORRIDOR_MANYAGENT,
     ("2x3", "3x2", "6x1", "2x4", "4x2", "8x1")),
)
# Safety-Gymnasium safety_gymnasium/tasks/safe_multi_agent/tasks/velocity/safe_mujoco_multi.py:
# TASK_VELCITY_THRESHOLD, and SafeMAEnv.step's speed: sqrt(x_velocity² + y_velocity²) from the v4
# env's info, where x/y_velocity = Δ(position)/dt over the step (Ant: torso xpos, Humanoid: mass
# centre, the planar robots: qpos[0]); HalfCheetah, Hopper and Walker2d report no y_velocity, so their
# speed is |vx| (running backwards counts); the Swimmer takes x_velocity alone, signed.
# (topology robot, robot, partition, threshold m/s, speed)
_VELOCITY = (
    ("ant", R.ANT_V4, "2x4", 2.522, "planar"), ("ant", R.ANT_V4, "4x2", 2.418, "planar"),
    ("halfcheetah", R.HALFCHEETAH, "2x3", 3.227, "abs-x"), ("halfcheetah", R.HALFCHEETAH, "6x1", 2.932, "abs-x"),
    ("hopper", R.HOPPER_V4, "3x1", 0.9613, "abs-x"), ("humanoid", R.HUMANOID_V4, "9+8", 0.58, "planar"),
    ("swimmer", R.SWIMMER, "2x1", 0.04891, "x"), ("walker2d", R.WALKER2D_V4, "2x3", 1.641, "abs-x"),
)
_PLAIN = (
    ("halfcheetah", R.HALFCHEETAH, "3x2"), ("hopper", R.HOPPER, "3x1"), ("walker2d", R.WALKER2D, "3x2"),
    ("ant", R.ANT, "4x2"), ("humanoid", R.HUMANOID, "17x1"),
)


def _catalog() -> dict[str, TaskKey]:
    out: dict[str, TaskKey] = {}
    for prefix, topo, robot_for, hazard, confs in _SAFE:
        for conf in confs:
            robot = robot_for(conf)
            robot.partition(conf)  # fail at import if the data disagree
            for mode in COST_MODES:
                name = f"{prefix}-{conf}" + ("-local" if mode == "local" else "")
                out[name] = TaskKey(name, robot, conf, f"{topo}-{conf}", hazard, mode)
    for topo, robot, conf in _PLAIN:
        robot.partition(conf)
        name = f"mamujoco-{topo}-{conf}"
        out[name] = TaskKey(name, robot, conf, f"{topo}-{conf}", None, "shared")
    for topo, robot, conf, threshold, speed in _VELOCITY:
        robot.partition(conf)
        name = f"safe-velocity-{topo}-{conf}"
        out[name] = TaskKey(name, robot, conf, f"{topo}-{conf}", _velocity(threshold, speed), "shared")
    return out


CATALOG: dict[str, TaskKey] = _catalog()

# name -> "module:attribute" for envserver.tasks._ENTRIES (the attribute is built on first access)
REGISTRY_ENTRIES: dict[str, str] = {name: f"mujoco_tasks:{name}" for name in CATALOG}


def task_key(name: str) -> TaskKey:
    """Look a MuJoCo task up; an unknown name or a bad partition is a one-line ValueError."""
    try:
        return CATALOG[name]
    except KeyError:
        pass
    families = [(p, confs) for p, *_rest, confs in _SAFE] + [(f"mamujoco-{t}", (c,)) for t, _r, c in _PLAIN]
    velocity: dict[str, tuple[str, ...]] = {}
    for topo, _r, conf, *_x in _VELOCITY:
        velocity[f"safe-velocity-{topo}"] = velocity.get(f"safe-velocity-{topo}", ()) + (conf,)
    families += list(velocity.items())
    for prefix, confs in sorted(families, key=lambda f: -len(f[0])):
        if name.startswith(prefix + "-"):
            conf = name[len(prefix) + 1:].removesuffix("-local")
            if not R._CONF.fullmatch(conf):
                raise ValueError(f"malformed partition {conf!r} in task {name!r}: expected AGENTSxJOINTS "
                                 f"(or J1+J2+...), one of {', '.join(confs)}")
            if conf in confs:  # only the -local suffix is wrong
                raise ValueError(f"task {name!r}: {prefix} has no -local variant (one robot-level cost)")
            raise ValueError(f"task {name!r}: partition {conf!r} is not defined for {prefix}; "
                             f"defined: {', '.join(confs)}")
    raise ValueError(f"unknown MuJoCo task {name!r}; choose one of: {', '.join(sorted(CATALOG))}")
