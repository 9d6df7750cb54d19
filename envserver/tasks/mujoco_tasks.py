"""The MuJoCo task classes, built on first use from ``mujoco_catalog`` (one per registry name).

``envserver.tasks`` maps e.g. ``safe-ant-2x4d`` to ``mujoco_tasks:safe-ant-2x4d``; the attribute
lookup (PEP 562 module ``__getattr__``) builds a :class:`~.mujoco_base.MujocoTask` subclass whose
``spec`` and ``layout`` come from the data, and caches it, so ``task_spec(name)`` is the same
object every time and no per-partition class is written by hand.
"""
from __future__ import annotations

import re

from .mujoco_base import MujocoTask
from .mujoco_catalog import CATALOG, TaskKey, task_key
from .mujoco_layout import Layout

_REWARD = {
    "halfcheetah": "reward dx/dt - 0.1|a|^2 (HalfCheetah-v5), never terminates",
    "coupled-halfcheetah": "reward mean of the two cheetahs' dx/dt - 0.1|a_i|^2, never terminates",
    "ant": "reward dx_torso/dt + 1 - 0.5|a|^2 - 5e-4 sum clip(cfrc_ext)^2 (Ant-v5); ends when torso z "
           "leaves [0.2, 1]",
    "manyagent-ant": "Ant-v5 reward on torso_0, dt 0.02; ends when z leaves [0.2, 1] or the trunk tips over",
    "hopper": "reward dx/dt + 1 - 1e-3|a|^2 (Hopper-v5); ends when unhealthy",
    "walker2d": "reward dx/dt + 1 - 1e-3|a|^2 (Walker2d-v5); ends when unhealthy",
    "humanoid": "reward 1.25 d(com x)/dt + 5 - 0.1|a|^2 - min(5e-7 sum cfrc_ext^2, 10) (Humanoid-v5); ends "
                "when z leaves (1, 2)",
    "ant-v4": "reward dx_torso/dt + 1 - 0.5|a|^2 (Ant-v4); ends when torso z leaves [0.2, 1]",
    "hopper-v4": "reward dx/dt + 1 - 1e-3|a|^2 (Hopper-v4); ends when unhealthy",
    "walker2d-v4": "reward dx/dt + 1 - 1e-3|a|^2 (Walker2d-v4, left foot friction 1.9); ends when unhealthy",
    "humanoid-v4": "reward 1.25 d(com x)/dt + 5 - 0.1|a|^2 (Humanoid-v4); ends when z leaves (1, 2)",
    "swimmer": "reward dx/dt - 1e-4|a|^2 (Swimmer-v4), never terminates",
}
_SPEED = {"planar": "planar speed sqrt(vx^2 + vy^2)", "abs-x": "|vx|", "x": "forward velocity vx"}


def _family(key: TaskKey) -> str:
    r = key.robot.key
    return "manyagent-ant" if r.startswith("manyagent") else "ant" if r.endswith("ant") else r


def describe(key: TaskKey) -> str:
    """The one-paragraph description ``khop tasks`` prints."""
    parts = " | ".join(",".join(j) for j in key.robot.partition(key.conf))
    fam = _family(key)
    if key.hazard is None:
        head = f"MaMuJoCo {fam} {key.conf} (DPO paper, Table 1; agent_obsk 2 = --kappa 2 through the relay)"
        return f"{head}: {parts}. {_REWARD[fam]}. Local observations: own joints + root."
    hz = key.hazard
    if hz.kind == "velocity":
        return (f"Safety-Gymnasium MA velocity {fam.removesuffix('-v4')} {key.conf} (SafePO): {parts}. "
                f"{_REWARD[fam]}. Cost 1 on a step whose {_SPEED[hz.speed]} (displacement / dt) exceeds "
                f"{hz.threshold:g} m/s, the same for every agent; limit {hz.cost_limit:g} per 1000-step "
                "episode. Local observations: own joints + root.")
    if hz.kind == "obstacle":
        rule = f"cost 1 while a cheetah is within {hz.distance:g} m (x) of the moving obstacle"
    else:
        rule = (f"cost 1 inside a wall band |y - c(x) -+ {hz.distance:g}| < {hz.threshold:g} of the folded "
                f"{2 * hz.distance:g} m corridor, or on a fall")
    mode = ("each agent's own cost from its own bodies" if key.cost_mode == "local"
            else "the robot's cost shared by all agents")
    segs = f", {len(key.robot.joints) // 4} segments" if fam == "manyagent-ant" else ""
    return (f"Safe MAMuJoCo {fam} {key.conf}{segs}: {parts}. {_REWARD[fam]}. {rule}; {mode}; limit "
            f"{hz.cost_limit:g} per 1000-step episode. Local observations: own joints + root + hazard.")


_CLASSES: dict[str, type[MujocoTask]] = {}


def task_class_for(name: str) -> type[MujocoTask]:
    """The (cached) task class of a MuJoCo task name; a bad name is a one-line ValueError."""
    cls = _CLASSES.get(name)
    if cls is None:
        key = task_key(name)
        layout = Layout(key)
        pyname = "".join(p.capitalize() for p in re.split(r"[^0-9a-zA-Z]+", name))
        cls = type(pyname, (MujocoTask,), {
            "spec": layout.spec(describe(key)), "layout": layout, "__module__": __name__,
            "__doc__": f"{name}: {describe(key)}"})
        _CLASSES[name] = cls
    return cls


def __getattr__(attr: str) -> type[MujocoTask]:
    if attr in CATALOG:
        return task_class_for(attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
