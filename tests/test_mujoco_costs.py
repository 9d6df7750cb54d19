"""The Safe tasks' costs fire exactly where shared/research/safe-mamujoco.md says ("spec §n"),
in both modes: the robot is placed by setting qpos, then the cost is read (and, with a margin,
checked again through a real step)."""
from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from envserver.tasks import make_task
from envserver.tasks.mujoco_models import corridor_centre

T30 = math.tan(math.radians(30))


def _set(task, e: int, values: dict[tuple[str, int], float]) -> None:
    d = task.datas[e]
    d.qpos[:] = task.model.qpos0
    d.qvel[:] = 0.0
    for (joint, k), v in values.items():
        d.joint(joint).qpos[k] = v
    mujoco.mj_forward(task.model, d)


def _costs(task) -> np.ndarray:
    """[agents, E] cost of the synced state."""
    task.sync()
    return np.stack([c[:, 0] for c in task.current_cost()])


def _zeros(task) -> list[np.ndarray]:
    return [np.zeros((task.n_envs, a.act_dim), np.float32) for a in task.spec.agents]


def test_corridor_centre_line():
    """c(x) of spec §3.2, boundaries included (20, 60 and 100 fall to the 'else' branch)."""
    xs = [-30, 0, 10, 20, 30, 40, 50, 60, 70, 80, 100, 130]
    want = [-30 * T30, 0, 10 * T30, 20 * T30, 10 * T30, 0, -10 * T30, 20 * T30, -10 * T30, 0, 20 * T30, 20 * T30]
    np.testing.assert_allclose(corridor_centre(xs), want, atol=1e-12)


# y - c(x) of the torso and whether the 10 m corridor's wall band (|y - c -+ 5| < 1.8) holds it
ANT_BAND = [(0.0, 0), (3.15, 0), (3.25, 1), (5.0, 1), (6.75, 1), (6.85, 0), (-3.25, 1), (-6.85, 0), (-3.15, 0)]


@pytest.mark.parametrize("x", [-30.0, 5.0, 30.0, 70.0, 110.0])
def test_safe_ant_wall_band_shared(x):
    task = make_task("safe-ant-4x2", len(ANT_BAND), 0)
    for e, (off, _want) in enumerate(ANT_BAND):
        _set(task, e, {("root", 0): x, ("root", 1): float(corridor_centre(x)) + off})
    want = [w for _o, w in ANT_BAND]
    c = _costs(task)
    assert all((c[i] == want).all() for i in range(4))  # one robot-level cost for every agent
    res = task.step(_zeros(task))  # still so after a real step (the ant barely moves in 0.05 s)
    assert not res.terminated.any() and list(res.cost[0][:, 0]) == want and res.cost[3] is res.cost[0]


@pytest.mark.parametrize("name,want", [
    ("safe-ant-2x4-local", [1, 0]),  # agent 0 owns legs 1, 2 (+y side)
    ("safe-ant-2x4d-local", [1, 1]),  # legs 1, 3 | 2, 4: each agent has a +y leg
    ("safe-ant-4x2-local", [1, 1, 0, 0]),
    ("safe-ant-8x1-local", [0, 1, 0, 1, 0, 0, 0, 0]),  # the hips' bodies sit at the band's edge
    ("safe-ant-4x2", [0, 0, 0, 0]),  # shared: the torso is outside the band
])
def test_safe_ant_local_cost_is_the_agents_legs(name, want):
    """Torso 3.0 m off the centre line (band starts at 3.2): the +y legs' bodies (hip body +0.2 m,
    lower leg +0.4 m) reach into the band, the -y legs do not. At x = 110, c(x) is flat."""
    task = make_task(name, 1, 0)
    _set(task, 0, {("root", 0): 110.0, ("root", 1): 20 * T30 + 3.0})
    assert list(_costs(task)[:, 0]) == want


# many-segment ant: torso_s sits s metres behind torso_0, so with x < 20 (c = t·x) its y - c(x)
# grows by tan 30° per segment: 1.5, 2.08, 2.65, 3.23, 3.81, 4.39, 4.96, 5.54 for s = 0..7, and
# the 9 m corridor's band is 2.7 < |y - c| < 6.3: segments 3 and up are in it
@pytest.mark.parametrize("name,want", [
    ("safe-manyagent-ant-2x3-local", [0, 1]),
    ("safe-manyagent-ant-3x2-local", [0, 1, 1]),
    ("safe-manyagent-ant-6x1-local", [0, 0, 0, 1, 1, 1]),
    ("safe-manyagent-ant-4x2-local", [0, 1, 1, 1]),
    ("safe-manyagent-ant-8x1-local", [0, 0, 0, 1, 1, 1, 1, 1]),
    ("safe-manyagent-ant-2x3", [0, 0]),  # shared: torso_0 (1.5) is outside the band
])
def test_safe_manyagent_ant_local_cost_is_the_agents_segments(name, want):
    task = make_task(name, 1, 0)
    _set(task, 0, {("root", 0): 10.0, ("root", 1): 10 * T30 + 1.5})
    assert list(_costs(task)[:, 0]) == want


def test_safe_manyagent_ant_band_is_nine_metres_wide():
    offs = [(2.65, 0), (2.75, 1), (6.25, 1), (6.35, 0), (-4.5, 1), (0.0, 0)]  # |y - c -+ 4.5| < 1.8
    task = make_task("safe-manyagent-ant-2x3", len(offs), 0)
    for e, (off, _w) in enumerate(offs):
        _set(task, e, {("root", 0): 110.0, ("root", 1): 20 * T30 + off})
    assert list(_costs(task)[0]) == [w for _o, w in offs]


def test_falling_is_a_cost_in_both_modes():
    for name in ("safe-manyagent-ant-4x2", "safe-manyagent-ant-4x2-local", "safe-ant-2x4-local"):
        task = make_task(name, 1, 0)
        _set(task, 0, {("root", 2): 1.5})  # torso 1.5 m high: unhealthy
        res = task.step(_zeros(task))
        assert res.terminated[0] and all(c[0, 0] == 1.0 for c in res.cost)


def _gap_task(name: str, gaps: list[float], roots: tuple[str, ...] = ("rootx",)):
    """One copy per gap: the cheetah(s) placed so that x_obstacle - rootx = gap."""
    task = make_task(name, len(gaps), 0)
    for e, gap in enumerate(gaps):
        _set(task, e, {})
        task.sync()
        xo = task.hazard.obstacle_x(task.S)[e]
        _set(task, e, {(r, 0): xo - gap - 0.3 * k for k, r in enumerate(roots)})
    return task


def test_safe_halfcheetah_local_cost_is_the_agents_leg():
    """Obstacle 9.3 m ahead of the torso: the front leg's bodies (+0.36…+0.5 m) are within 9 m,
    the back leg's (−0.34…−0.62 m) are not; 9.3 m behind, the other way round."""
    task = _gap_task("safe-halfcheetah-2x3-local", [9.3, -9.3, 20.0, 3.0])
    assert _costs(task).tolist() == [[0, 1, 0, 1], [1, 0, 0, 1]]
    task = _gap_task("safe-halfcheetah-6x1-local", [9.3, -9.3])
    assert _costs(task).tolist() == [[0, 1], [0, 1], [0, 1], [1, 0], [1, 0], [1, 0]]
    shared = _gap_task("safe-halfcheetah-6x1", [9.3, 8.9, -8.9, -9.1])
    assert _costs(shared).tolist() == [[0, 1, 1, 0]] * 6
    res = shared.step(_zeros(shared))
    assert list(res.cost[0][:, 0]) == [0, 1, 1, 0]


def test_safe_coupled_halfcheetah_costs():
    """Shared (spec §3.5): 1 if either cheetah's torso is within 5 m (x) of the obstacle. Local: each
    agent's own bodies. Cheetah 1 stands 0.3 m behind cheetah 0 (the tendon allows 2.87 m)."""
    roots = ("rootx0", "rootx1")
    gaps = [4.6, 5.4, 5.6, -5.7, 20.0]  # cheetah 0's torso gap; cheetah 1's is 0.3 m larger
    shared = _gap_task("safe-coupled-halfcheetah-2x6", gaps, roots)
    assert _costs(shared).tolist() == [[1, 0, 0, 0, 0]] * 2
    local = _gap_task("safe-coupled-halfcheetah-2x6-local", gaps, roots)
    # a cheetah's bodies span -0.62 (bfoot) ... +0.5 m (fthigh) around its torso
    assert _costs(local).tolist() == [[1, 1, 0, 0, 0], [1, 0, 0, 1, 0]]
    res = shared.step([np.zeros((5, 6), np.float32)] * 2)
    assert list(res.cost[0][:, 0]) == [1, 0, 0, 0, 0]
    # one joint per agent: body x offsets bthigh -0.5, bshin -0.34, bfoot -0.62, fthigh +0.5,
    # fshin +0.36, ffoot +0.49; torso gaps 4.6 (cheetah 0) and 4.9 (cheetah 1)
    joints = _gap_task("safe-coupled-halfcheetah-12x1-local", [4.6], roots)
    assert _costs(joints)[:, 0].tolist() == [0, 1, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1]
