"""Fidelity of the MuJoCo tasks against Gymnasium's MuJoCo environments (v5).

Per robot family: from the same initial state, with obstacles out of the way (the obstacle slab's
collisions switched off; the corridor walls never collide), a fixed action sequence gives the same
per-step team reward, the same termination and the same robot state as the Gymnasium env —
HalfCheetah-v5, Ant-v5, Hopper-v5, Walker2d-v5, Humanoid-v5; the many-segment ant runs in Ant-v5
and the coupled cheetahs in HalfCheetah-v5 through ``xml_file`` (our robot XML; Gymnasium has no
such robot). Our rewards are float32, so the tolerance is float32's.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("gymnasium.envs.mujoco.half_cheetah_v5")  # needs gymnasium[mujoco]
import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402

from envserver.tasks import make_task  # noqa: E402
from envserver.tasks.mujoco_catalog import CATALOG  # noqa: E402
from envserver.tasks.mujoco_models import robot_xml  # noqa: E402

N_STEPS = 60

CASES = [  # task, Gymnasium id, robot XML to hand Gymnasium (None: its own), extra make() kwargs
    ("safe-halfcheetah-2x3", "HalfCheetah-v5", None, {}),
    ("mamujoco-halfcheetah-3x2", "HalfCheetah-v5", None, {}),
    ("safe-ant-2x4d", "Ant-v5", None, {}),
    ("mamujoco-ant-4x2", "Ant-v5", None, {}),
    ("safe-manyagent-ant-3x2", "Ant-v5", "own", {"frame_skip": 4}),
    ("mamujoco-hopper-3x1", "Hopper-v5", None, {}),
    ("mamujoco-walker2d-3x2", "Walker2d-v5", None, {}),
    ("mamujoco-humanoid-17x1", "Humanoid-v5", None, {}),
    ("safe-coupled-halfcheetah-2x6", "HalfCheetah-v5", "own", {}),
]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Gymnasium's half_cheetah.xml makes MuJoCo write MUJOCO_LOG.TXT here


def _pair(name: str, gid: str, xml: str | None, kw: dict, tmp_path):
    key = CATALOG[name]
    if xml == "own":
        path = tmp_path / "robot.xml"
        path.write_text(robot_xml(key.robot))  # the robot alone, no hazard
        kw = {**kw, "xml_file": str(path)}
    env = gym.make(gid, **kw).unwrapped
    env.reset(seed=7)
    task = make_task(name, 1, 0)
    m, d = task.model, task.datas[0]
    if key.hazard is not None and key.hazard.kind == "obstacle":  # remove the slab from the physics
        g = m.geom("obj_geom").id
        m.geom_contype[g] = m.geom_conaffinity[g] = 0
    mujoco.mj_resetData(m, d)
    gm = env.model
    for j in range(gm.njnt):  # same initial state, mapped by joint name
        name_j = gm.joint(j).name
        qa, va = gm.jnt_qposadr[j], gm.jnt_dofadr[j]
        n_q = {0: 7, 1: 4, 2: 1, 3: 1}[int(gm.jnt_type[j])]
        n_v = {0: 6, 1: 3, 2: 1, 3: 1}[int(gm.jnt_type[j])]
        d.joint(name_j).qpos[:] = env.data.qpos[qa:qa + n_q]
        d.joint(name_j).qvel[:] = env.data.qvel[va:va + n_v]
    mujoco.mj_forward(m, d)
    task.sync()
    return env, task


def _split(task, a: np.ndarray) -> list[np.ndarray]:
    """Gymnasium's action vector (actuator order) → each agent's action (its joints' actuators)."""
    return [a[cols][None].astype(np.float32) for cols in task.layout.act_cols]


@pytest.mark.parametrize("name,gid,xml,kw", CASES, ids=[c[0] for c in CASES])
def test_reward_and_state_match_gymnasium(name, gid, xml, kw, tmp_path):
    env, task = _pair(name, gid, xml, kw, tmp_path)
    rng = np.random.default_rng(3)
    lo, hi = env.action_space.low, env.action_space.high
    ours_sum = theirs_sum = 0.0
    coupled = name.startswith("safe-coupled")
    x1 = task.layout.qpos("rootx1") - 1 if coupled else None
    for t in range(N_STEPS):
        a = rng.uniform(lo, hi).astype(np.float32).astype(np.float64)
        x1_before = env.data.qpos[x1] if coupled else 0.0
        _o, r, term, _trunc, info = env.step(a)
        if coupled:  # HalfCheetah-v5 rewards cheetah 0 only; ours is the mean of both cheetahs
            vx1 = (env.data.qpos[x1] - x1_before) / env.dt
            r = 0.5 * (info["x_velocity"] + vx1) + 0.5 * info["reward_ctrl"]
        res = task.step(_split(task, a))
        assert res.reward[0] == pytest.approx(r, rel=2e-6, abs=2e-5), f"step {t}"
        assert bool(res.terminated[0]) == bool(term), f"step {t}"
        ours_sum += float(res.reward[0])
        theirs_sum += float(r)
        if term:
            break
        d = task.datas[0]
        # the robot's state is Gymnasium's (to 1e-7: HalfCheetah's masses, folded from settotalmass
        # into a density, differ from Gymnasium's by 1e-16, which 60 steps amplify to ~1e-9)
        for j in range(env.model.njnt):
            jn = env.model.joint(j).name
            qa = env.model.jnt_qposadr[j]
            np.testing.assert_allclose(d.joint(jn).qpos, env.data.qpos[qa:qa + len(d.joint(jn).qpos)],
                                       rtol=1e-7, atol=1e-7)
    assert ours_sum == pytest.approx(theirs_sum, rel=1e-5, abs=1e-4)
    env.close()


def test_masses_match_gymnasium():
    """settotalmass is folded into our densities; the bodies must still weigh what Gymnasium's do."""
    for name, gid in (("mamujoco-halfcheetah-3x2", "HalfCheetah-v5"), ("mamujoco-ant-4x2", "Ant-v5"),
                      ("mamujoco-humanoid-17x1", "Humanoid-v5"), ("mamujoco-hopper-3x1", "Hopper-v5"),
                      ("mamujoco-walker2d-3x2", "Walker2d-v5")):
        env = gym.make(gid).unwrapped
        m = make_task(name, 1, 0).model
        np.testing.assert_allclose(m.body_mass, env.model.body_mass, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(m.body_inertia, env.model.body_inertia, rtol=1e-12, atol=1e-15)
        assert m.opt.timestep == env.model.opt.timestep and m.opt.integrator == env.model.opt.integrator
        env.close()
