"""Every MuJoCo task name, as data: robot × partition × hazard × cost mode.

Imported by the task registry at start-up, so it stays free of MuJoCo and networkx. Names:

* ``safe-<robot>-<partition>``: Safe MAMuJoCo, the papers' robot-level cost given to every agent
  (``shared``); ``...-local`` is the same task with each agent's own cost (see
  ``mujoco_hazards``). Robots: ``halfcheetah`` (2x3, 3x2, 6x1), ``coupled-halfcheetah`` (2x6, 12x1),
  ``ant`` (2x4, 2x4d, 4x2, 8x1), ``manyagent-ant`` (2x3, 3x2, 6x1 on 6 segments; 2x4, 4x2, 8x1 on 8).
* ``mamujoco-<robot>-<partition>``: the plain MaMuJoCo tasks of the DPO paper (appendix A.2,
  Table 1), no cost: halfcheetah 3x2, hopper 3x1, walker2d 3x2, ant 4x2, humanoid 17x1.

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

    kind: str  # "obstacle" (moving slab ahead of a cheetah) or "corridor" (folded walls)
    cost_name: str
    cost_limit: float  # per episode, MACPO README (spec §5.1)
    distance: float  # obstacle: cost fires closer than this in x; corridor: half-width w
    threshold: float = 1.8  # corridor: cost band half-width around each wall (spec §3.2)


OBSTACLE_HC = HazardSpec("obstacle", "obstacle", 5.0, 9.0)  # spec §3.4
# spec §3.5 gives no bound for Coupled (absent from the README results): HalfCheetah's 5 is ours
OBSTACLE_COUPLED = HazardSpec("obstacle", "obstacle", 5.0, 5.0)
CORRIDOR_ANT = HazardSpec("corridor", "corridor", 0.2, 5.0)  # 10 m corridor, spec §3.2
CORRIDOR_MANYAGENT = HazardSpec("corridor", "corridor", 1.0, 4.5)  # 9 m corridor, spec §3.3


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
    for prefix, confs in sorted(families, key=lambda f: -len(f[0])):
        if name.startswith(prefix + "-"):
            conf = name[len(prefix) + 1:].removesuffix("-local")
            if not R._CONF.fullmatch(conf):
                raise ValueError(f"malformed partition {conf!r} in task {name!r}: expected AGENTSxJOINTS, "
                                 f"one of {', '.join(confs)}")
            raise ValueError(f"task {name!r}: partition {conf!r} is not defined for {prefix}; "
                             f"defined: {', '.join(confs)}")
    raise ValueError(f"unknown MuJoCo task {name!r}; choose one of: {', '.join(sorted(CATALOG))}")
