"""Fidelity of the MuJoCo tasks against Gymnasium's MuJoCo environments and against
Gymnasium-Robotics' MaMuJoCo (``mamujoco_v1``).

Gymnasium (v5), per robot family: from the same initial state, with obstacles out of the way (the
obstacle slab's collisions switched off; the corridor walls never collide), a fixed action sequence
(inside and outside the control range) gives the same per-step team reward, the same termination
and the same robot state as the Gymnasium env — HalfCheetah-v5, Ant-v5, Hopper-v5, Walker2d-v5,
Humanoid-v5; the many-segment ant runs in Ant-v5 and the coupled cheetahs in HalfCheetah-v5 through
``xml_file`` (our robot XML; Gymnasium has no such robot). Our rewards are float32, so the tolerance
is float32's.

MaMuJoCo, for every partition both provide: each agent drives the same joints, and from the same
state and the same per-agent actions (inside and outside the control range) every step gives the
reward within 1e-6 (of Gymnasium-Robotics' reward rounded to float32, our wire format), the same
termination and the same next state, over a few hundred steps with both envs restarted together.
"""
from __future__ import annotations

import warnings

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


_QV = {0: (7, 6), 1: (4, 3), 2: (1, 1), 3: (1, 1)}  # joint type -> (qpos, dof) widths


def _joint_map(theirs: mujoco.MjModel, ours: mujoco.MjModel) -> tuple[np.ndarray, ...]:
    """(their qpos, our qpos, their dofs, our dofs) index arrays pairing every joint by name (our
    models may carry a hazard's extra joints, so positions alone do not line up)."""
    tq, oq, tv, ov = [], [], [], []
    for j in range(theirs.njnt):
        nq, nv = _QV[int(theirs.jnt_type[j])]
        k = ours.joint(theirs.joint(j).name).id
        tq += range(theirs.jnt_qposadr[j], theirs.jnt_qposadr[j] + nq)
        oq += range(ours.jnt_qposadr[k], ours.jnt_qposadr[k] + nq)
        tv += range(theirs.jnt_dofadr[j], theirs.jnt_dofadr[j] + nv)
        ov += range(ours.jnt_dofadr[k], ours.jnt_dofadr[k] + nv)
    return tuple(np.array(x, dtype=np.intp) for x in (tq, oq, tv, ov))


def _copy_state(src_model: mujoco.MjModel, src: mujoco.MjData, task, jmap: tuple[np.ndarray, ...]) -> None:
    """Their robot state (and the solver's warm start, so contacts solve alike) into our copy 0.
    Both sides are forwarded: after ``mj_step`` the positions (xpos) lag qpos by one substep, and
    each side's reward reads them as the step's start, so a copied state must be made current in both."""
    mujoco.mj_forward(src_model, src)
    tq, oq, tv, ov = jmap
    d = task.datas[0]
    d.qpos[oq], d.qvel[ov], d.qacc_warmstart[ov] = src.qpos[tq], src.qvel[tv], src.qacc_warmstart[tv]
    mujoco.mj_forward(task.model, d)
    task.sync()


def _without_obstacle(name: str):
    """Our task with the obstacle slab removed from the physics (Gymnasium's robots have none)."""
    key, task = CATALOG[name], make_task(name, 1, 0)
    if key.hazard is not None and key.hazard.kind == "obstacle":
        g = task.model.geom("obj_geom").id
        task.model.geom_contype[g] = task.model.geom_conaffinity[g] = 0
    return task


def _pair(name: str, gid: str, xml: str | None, kw: dict, tmp_path):
    key = CATALOG[name]
    if xml == "own":
        path = tmp_path / "robot.xml"
        path.write_text(robot_xml(key.robot))  # the robot alone, no hazard
        kw = {**kw, "xml_file": str(path)}
    env = gym.make(gid, **kw).unwrapped
    env.reset(seed=7)
    task = _without_obstacle(name)
    mujoco.mj_resetData(task.model, task.datas[0])
    _copy_state(env.model, env.data, task, _joint_map(env.model, task.model))
    return env, task


def _split(task, a: np.ndarray) -> list[np.ndarray]:
    """Gymnasium's action vector (actuator order) → each agent's action (its joints' actuators)."""
    return [a[cols][None].astype(np.float32) for cols in task.layout.act_cols]


@pytest.mark.parametrize("name,gid,xml,kw", CASES, ids=[c[0] for c in CASES])
def test_reward_and_state_match_gymnasium(name, gid, xml, kw, tmp_path):
    env, task = _pair(name, gid, xml, kw, tmp_path)
    rng = np.random.default_rng(3)
    lo, hi = env.action_space.low, env.action_space.high
    lo, hi = lo - (hi - lo) / 2, hi + (hi - lo) / 2  # half of each draw outside the control range
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


# ---------------------------------------------------------------- Gymnasium-Robotics' MaMuJoCo
GR_STEPS = 300
# task, MaMuJoCo scenario, agent_conf, the single-agent env under it: None = mamujoco_v1's own (the v5
# robot); "v4" = the v4 robot, as SafePO ran it (safety-gymnasium -> gymnasium-robotics 1.2.2, whose
# MaMuJoCo makes "<Robot>-v4"); "macpo" = our robot XML in Ant-v5 at MACPO's frame skip (mamujoco_v1's
# ManySegmentAnt generates a different robot: timestep 0.01, dt 0.05; MACPO's: 0.005, dt 0.02)
GR_CASES = [
    ("mamujoco-ant-4x2", "Ant", "4x2", None),
    ("mamujoco-hopper-3x1", "Hopper", "3x1", None),
    ("safe-ant-2x4", "Ant", "2x4", None),
    ("safe-ant-2x4d", "Ant", "2x4d", None),
    ("safe-ant-4x2", "Ant", "4x2", None),
    ("safe-halfcheetah-2x3", "HalfCheetah", "2x3", None),
    ("safe-halfcheetah-6x1", "HalfCheetah", "6x1", None),
    *[(f"safe-manyagent-ant-{c}", "ManySegmentAnt", c, "macpo") for c in ("2x3", "3x2", "6x1", "2x4", "4x2", "8x1")],
    ("safe-velocity-ant-2x4", "Ant", "2x4", "v4"),
    ("safe-velocity-ant-4x2", "Ant", "4x2", "v4"),
    ("safe-velocity-halfcheetah-2x3", "HalfCheetah", "2x3", "v4"),
    ("safe-velocity-halfcheetah-6x1", "HalfCheetah", "6x1", "v4"),
    ("safe-velocity-hopper-3x1", "Hopper", "3x1", "v4"),
    ("safe-velocity-humanoid-9+8", "Humanoid", "9|8", "v4"),
    ("safe-velocity-swimmer-2x1", "Swimmer", "2x1", "v4"),
    ("safe-velocity-walker2d-2x3", "Walker2d", "2x3", "v4"),
]
# ORIG MaMuJoCo and MACPO pair the geometrically diagonal legs (hip1+hip3 | hip2+hip4, obsk.py);
# mamujoco_v1 re-paired its "2x4d" as hip1+hip4 | hip2+hip3. We keep the papers' partition.
DIAGONAL = [{"hip_1", "ankle_1", "hip_3", "ankle_3"}, {"hip_2", "ankle_2", "hip_4", "ankle_4"}]


def _mamujoco():
    pytest.importorskip("gymnasium_robotics", reason="needs gymnasium-robotics (the test extra)")
    from gymnasium_robotics import mamujoco_v1
    return mamujoco_v1


def _gr_env(name: str, scenario: str, conf: str, robot: str | None, tmp_path):
    kw = {}
    if robot == "v4":
        with warnings.catch_warnings():  # Gymnasium 1.x still ships v4, marked out of date
            warnings.simplefilter("ignore", DeprecationWarning)
            kw["gym_env"] = gym.make(f"{scenario}-v4")
    elif robot == "macpo":
        path = tmp_path / "robot.xml"
        path.write_text(robot_xml(CATALOG[name].robot))
        kw["gym_env"] = gym.make("Ant-v5", xml_file=str(path), frame_skip=4)
    return _mamujoco().parallel_env(scenario, conf, **kw)


def _joints(model: mujoco.MjModel, acts) -> set[str]:
    return {model.joint(model.actuator_trnid[a, 0]).name for a in acts}


@pytest.mark.parametrize("name,scenario,conf,robot", GR_CASES, ids=[c[0] for c in GR_CASES])
def test_reward_and_termination_match_mamujoco(name, scenario, conf, robot, tmp_path):
    penv = _gr_env(name, scenario, conf, robot, tmp_path)
    genv = penv.single_agent_env.unwrapped
    task = _without_obstacle(name)
    gm, m = genv.model, task.model
    theirs = [[bp.act_ids for bp in part] for part in penv.agent_action_partitions]
    ours = [list(cols) for cols in task.layout.act_cols]
    want = DIAGONAL if name == "safe-ant-2x4d" else [_joints(gm, t) for t in theirs]
    assert [_joints(m, o) for o in ours] == want  # each agent drives the same joints
    jmap = _joint_map(gm, m)
    health = CATALOG[name].robot.rules.health
    upright = health.zrot_min if health is not None else None  # MACPO's extra test (Safe ants)
    torso = "torso_0" if robot == "macpo" else "torso"
    spaces = [penv.action_space(a) for a in penv.possible_agents]
    rng = np.random.default_rng(11)
    penv.reset(seed=5)
    ends = 0
    for t in range(GR_STEPS):
        _copy_state(gm, genv.data, task, jmap)
        acts = [rng.uniform(s.low - (s.high - s.low) / 2, s.high + (s.high - s.low) / 2).astype(np.float32)
                for s in spaces]  # half of each draw outside the control range
        full = penv.map_local_actions_to_global_action(dict(zip(penv.possible_agents, acts)))
        _obs, r, term, _trunc, _info = penv.step({a: x.astype(np.float64) for a, x in zip(penv.possible_agents, acts)})
        res = task.step([full[cols][None].astype(np.float32) for cols in ours])
        r, term = r[penv.possible_agents[0]], term[penv.possible_agents[0]]
        assert abs(float(res.reward[0]) - float(np.float32(r))) <= 1e-6, f"step {t}: {res.reward[0]} vs {r}"
        if upright is not None:  # the torso's z-axis, world z component, below MACPO's bound
            term = term or genv.data.body(torso).xmat[8] < upright
        assert bool(res.terminated[0]) == bool(term), f"step {t}"
        if term:
            ends += 1
            penv.reset(seed=5 + t)
            continue
        d = task.datas[0]
        np.testing.assert_allclose(d.qpos[jmap[1]], genv.data.qpos[jmap[0]], rtol=0, atol=1e-9, err_msg=f"step {t}")
        np.testing.assert_allclose(d.qvel[jmap[3]], genv.data.qvel[jmap[2]], rtol=0, atol=1e-7, err_msg=f"step {t}")
    if health is not None and robot != "macpo":  # (the many-segment ants stay up for 300 random steps)
        assert ends, "no episode ended: the termination check went untested"
    penv.close()


def test_coupled_halfcheetah_is_not_comparable_on_this_mujoco():
    """Skipped with the reason while mamujoco_v1's CoupledHalfCheetah cannot build its observation
    on this MuJoCo (its tendon-Jacobian read, ``obsk.py``, fails); fails once it can, so that
    safe-coupled-halfcheetah-2x6 joins GR_CASES."""
    mamujoco_v1 = _mamujoco()
    try:
        penv = mamujoco_v1.parallel_env("CoupledHalfCheetah", "1p1")
        penv.reset(seed=0)
    except IndexError as err:
        pytest.skip(f"gymnasium-robotics' CoupledHalfCheetah does not run on MuJoCo {mujoco.__version__}: {err}")
    pytest.fail("gymnasium-robotics' CoupledHalfCheetah runs here now: compare safe-coupled-halfcheetah-2x6 with it")
