"""safe-halfcheetah-2x3 against real MuJoCo: spec, shapes, cost rule, obstacle law, reward,
truncation/auto-reset and seeding (shared/research/safe-mamujoco.md §3.4).

Model layout: the cheetah is Gymnasium's (qpos 0-8: rootx, rootz, rooty, bthigh, bshin, bfoot,
fthigh, fshin, ffoot), the obstacle's slide joint comes last (qpos 9), its motor is actuator 6."""
from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from envserver.tasks import make_task, task_spec
from envserver.tasks.safe_halfcheetah import SafeHalfCheetah2x3, obstacle_control

NAME = "safe-halfcheetah-2x3"
ROOTX, OBST = 0, 9  # qpos indices


def zeros(task: SafeHalfCheetah2x3) -> list[np.ndarray]:
    return [task.fallback_action(i) for i in range(2)]


def test_spec_from_registry_without_instantiating():
    spec = task_spec(NAME)
    assert spec is SafeHalfCheetah2x3.spec
    assert spec.name == NAME and spec.n_agents == 2
    for a in spec.agents:
        assert (a.obs_dim, a.act_kind, a.act_dim, a.act_low, a.act_high) == (14, "continuous", 3, -1.0, 1.0)
        assert "obstacle" in a.obs_desc
    assert "bthigh" in spec.agents[0].obs_desc and "fthigh" in spec.agents[1].obs_desc
    assert spec.episode_length == 1000
    assert spec.cost_names == ("obstacle",) and spec.cost_limits == (5.0,)
    assert spec.topology == "halfcheetah-2x3"


def test_model_facts():
    task = make_task(NAME, 1, 0)
    m = task.model
    assert (m.nq, m.nv, m.nu) == (10, 10, 7)
    assert m.opt.timestep == pytest.approx(0.01) and m.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
    assert task.dt == pytest.approx(0.05)
    assert m.joint(0).name == "rootx" and m.joint(9).name == "wall_joint"
    assert m.jnt_qposadr[9] == OBST and m.jnt_dofadr[9] == OBST
    assert m.actuator(6).name == "wall_joint_ac"
    assert list(m.actuator_gear[:, 0]) == [120, 90, 60, 120, 60, 30, 120]
    assert m.body("obj1").mass[0] == pytest.approx(1.58e-4, rel=0.01)
    assert m.body("torso").mass[0] == pytest.approx(6.25, rel=0.01)
    cheetah = [b for b in range(m.nbody) if m.body(b).name != "obj1"]
    assert m.body_mass[cheetah].sum() == pytest.approx(14.0, rel=1e-12)  # settotalmass, folded
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    assert d.geom("obj_geom").xpos[0] == pytest.approx(10.0)


def test_reset_and_step_shapes():
    task = make_task(NAME, 3, 1)
    obs = task.reset()
    assert len(obs) == 2
    for o in obs:
        assert o.shape == (3, 14) and o.dtype == np.float32 and np.isfinite(o).all()
    rng = np.random.default_rng(0)
    for _ in range(5):
        res = task.step([rng.uniform(-1, 1, (3, 3)).astype(np.float32) for _ in range(2)])
    assert [o.shape for o in res.obs] == [(3, 14), (3, 14)]
    assert all(o.dtype == np.float32 for o in res.obs)
    assert res.reward.shape == (3,) and res.reward.dtype == np.float32 and np.isfinite(res.reward).all()
    assert len(res.cost) == 2 and res.cost[0] is res.cost[1]
    assert res.cost[0].shape == (3, 1) and res.cost[0].dtype == np.float32
    assert set(np.unique(res.cost[0])) <= {0.0, 1.0}
    assert res.terminated.dtype == bool and res.truncated.dtype == bool
    assert not res.terminated.any() and not res.truncated.any()
    with pytest.raises(ValueError):
        task.step([np.zeros((2, 3), np.float32)] * 2)


def test_observation_layout_matches_state():
    task = make_task(NAME, 2, 3)
    task.reset()
    res = task.step([np.full((2, 3), 0.3, np.float32), np.full((2, 3), -0.2, np.float32)])
    for e, d in enumerate(task.datas):
        q, v = d.qpos, d.qvel
        mujoco.mj_forward(task.model, d)
        gx = d.geom("obj_geom").xpos[0]
        lin = np.zeros(6)
        mujoco.mj_objectVelocity(task.model, d, mujoco.mjtObj.mjOBJ_BODY, task.model.body("obj1").id, lin, 0)
        tail = [q[1], q[2], v[0], v[1], v[2], lin[3], obstacle_control(d.time),
                np.clip((gx - q[ROOTX]) / 10, -5, 5)]
        np.testing.assert_allclose(res.obs[0][e], [*q[3:6], *v[3:6], *tail], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res.obs[1][e], [*q[6:9], *v[6:9], *tail], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gap,expected", [(8.9, 1.0), (-8.9, 1.0), (9.1, 0.0), (-9.1, 0.0)])
def test_cost_fires_within_nine_metres(gap, expected):
    task = make_task(NAME, 2, 0)
    task.reset()
    m, d = task.model, task.datas[1]
    d.qvel[:] = 0.0
    mujoco.mj_forward(m, d)
    gx = d.geom("obj_geom").xpos[0]
    d.qpos[ROOTX] = gx - gap  # rootx: the torso body's world x (its body pos x is 0)
    mujoco.mj_forward(m, d)
    assert d.geom("obj_geom").xpos[0] - d.body("torso").xpos[0] == pytest.approx(gap)
    task.sync()
    assert task.current_cost()[0][1, 0] == expected
    # also through a real step (motion in 0.05 s from rest is far below the 0.1 m margin)
    res = task.step(zeros(task))
    assert res.cost[0][1, 0] == expected and res.cost[1][1, 0] == expected
    assert res.obs[0][1, 13] == pytest.approx(gap / 10, abs=0.01)


def test_obstacle_motion_law_idle():
    task = make_task(NAME, 1, 0)
    task.reset()
    xs, vs = [], []
    for k in range(200):
        d = task.datas[0]
        t0 = d.time
        res = task.step(zeros(task))
        assert task.datas[0].ctrl[6] == pytest.approx(0.02 * math.sin(t0 / 3) ** 2 - 0.004)
        mujoco.mj_forward(task.model, task.datas[0])
        xs.append(task.datas[0].geom("obj_geom").xpos[0])
        vs.append(res.obs[0][0, 11])
    xs = np.array(xs)
    times = 0.05 * np.arange(1, 201)
    k_min = int(np.argmin(xs))
    assert xs[k_min] < 9.5 and 1.5 < times[k_min] < 3.5  # drifts back first ...
    assert xs[50] == pytest.approx(8.86, abs=0.3)  # t = 2.55 s (verified reference value)
    assert xs[-1] > 20.0 and xs[-1] > xs[k_min] + 10  # ... then runs forward (25.2 at 5.05 s)
    vs = np.array(vs)
    assert vs.min() == pytest.approx(-2.09, abs=0.3) and vs.max() == pytest.approx(9.29, abs=0.3)
    assert vs[99] > 5.0 and vs[199] < 0.0  # fast near t = 5 s, backing again at t = 10 s (u < 0)


def test_reward_is_forward_velocity_minus_ctrl_cost():
    task = make_task(NAME, 2, 5)
    task.reset()
    a0 = np.array([[0.5, -0.3, 1.0], [-1.0, 0.2, 0.0]], np.float32)
    a1 = np.array([[0.1, 0.7, -0.4], [0.9, -0.9, 0.3]], np.float32)
    for _ in range(3):
        x0 = np.array([d.qpos[ROOTX] for d in task.datas])
        res = task.step([a0, a1])
        x1 = np.array([d.qpos[ROOTX] for d in task.datas])
        a = np.concatenate([a0, a1], axis=1).astype(np.float64)
        expected = (x1 - x0) / 0.05 - 0.1 * (a ** 2).sum(axis=1)
        np.testing.assert_allclose(res.reward, expected, rtol=1e-5, atol=1e-5)
        for d in task.datas:
            np.testing.assert_allclose(d.ctrl[:6], np.concatenate([a0, a1], axis=1)[task.datas.index(d)], rtol=1e-6)


def test_actions_clipped_and_nonfinite_sanitised():
    task = make_task(NAME, 1, 0)
    task.reset()
    x0 = task.datas[0].qpos[ROOTX]
    res = task.step([np.array([[5.0, np.nan, -np.inf]], np.float32), np.array([[np.inf, -3.0, 0.5]], np.float32)])
    np.testing.assert_array_equal(task.datas[0].ctrl[:6], [1.0, 0.0, -1.0, 1.0, -1.0, 0.5])
    expected = (task.datas[0].qpos[ROOTX] - x0) / 0.05 - 0.1 * (1 + 0 + 1 + 1 + 1 + 0.25)
    assert res.reward[0] == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert np.isfinite(task.datas[0].qpos).all() and all(np.isfinite(o).all() for o in res.obs)


def test_truncation_at_1000_steps_then_auto_reset():
    task = make_task(NAME, 1, 7)
    task.reset()
    act = zeros(task)
    truncs = []
    for _ in range(1000):
        res = task.step(act)
        truncs.append(bool(res.truncated[0]))
        assert not res.terminated[0]
    assert truncs[-1] and not any(truncs[:-1])
    d = task.datas[0]
    assert d.time == 0.0
    assert abs(d.qpos[ROOTX]) <= 0.1 and abs(d.qpos[OBST]) <= 0.1  # fresh episode: rootx, obstacle near 0
    o = res.obs[0][0]
    assert o[12] == pytest.approx(-0.004)  # u(0)
    assert o[13] == pytest.approx((10 + d.qpos[OBST] - d.qpos[ROOTX]) / 10, abs=1e-5)  # slab 10 m ahead
    res = task.step(act)
    assert not res.truncated[0]


def _rollout(seed: int, n: int = 50) -> np.ndarray:
    task = make_task(NAME, 2, seed)
    out = [np.concatenate(task.reset(), axis=1)]
    rng = np.random.default_rng(123)  # same action sequence for every seed
    for _ in range(n):
        res = task.step([rng.uniform(-1, 1, (2, 3)).astype(np.float32) for _ in range(2)])
        out.append(np.concatenate(res.obs, axis=1))
    return np.stack(out)


def test_seeding_is_reproducible():
    a, b, c = _rollout(11), _rollout(11), _rollout(12)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a[:, 0], a[:, 1])  # copies within one task differ too
