"""The MuJoCo task catalogue: names, specs, topologies, local observations, action routing, episode
semantics and bad input (shared/research/safe-mamujoco.md is "spec §n")."""
from __future__ import annotations

import mujoco
import numpy as np
import pytest

from envserver.tasks import make_task, task_class, task_names, task_spec
from envserver.tasks.mujoco_catalog import CATALOG, task_key
from envserver.tasks.mujoco_robots import ANT, HALFCHEETAH, agent_edges, manyagent_ant
from topologies import resolve_topology

NAMES = sorted(CATALOG)

# per-agent action dims, spec §4 table (Safe MAMuJoCo) and dpo.md Table 1 (plain)
ACT_DIMS = {
    "safe-ant-2x4": [4, 4], "safe-ant-2x4d": [4, 4], "safe-ant-4x2": [2] * 4, "safe-ant-8x1": [1] * 8,
    "safe-halfcheetah-2x3": [3, 3], "safe-halfcheetah-3x2": [2] * 3, "safe-halfcheetah-6x1": [1] * 6,
    "safe-manyagent-ant-2x3": [12, 12], "safe-manyagent-ant-3x2": [8] * 3, "safe-manyagent-ant-6x1": [4] * 6,
    "safe-manyagent-ant-2x4": [16, 16], "safe-manyagent-ant-4x2": [8] * 4, "safe-manyagent-ant-8x1": [4] * 8,
    "safe-coupled-halfcheetah-2x6": [6, 6], "safe-coupled-halfcheetah-12x1": [1] * 12,
    "mamujoco-halfcheetah-3x2": [2] * 3, "mamujoco-hopper-3x1": [1] * 3, "mamujoco-walker2d-3x2": [2] * 3,
    "mamujoco-ant-4x2": [2] * 4, "mamujoco-humanoid-17x1": [1] * 17,
}
# our local observation sizes (own joints + root + hazard), as documented in README "MuJoCo tasks"
OBS_DIMS = {
    "safe-halfcheetah-2x3": [14, 14], "safe-halfcheetah-6x1": [10] * 6, "safe-ant-4x2": [29] * 4,
    "safe-ant-2x4": [45, 45], "safe-manyagent-ant-2x3": [112, 112], "safe-manyagent-ant-8x1": [46] * 8,
    "safe-coupled-halfcheetah-2x6": [22, 22], "safe-coupled-halfcheetah-12x1": [12] * 12,
    "mamujoco-hopper-3x1": [7] * 3, "mamujoco-walker2d-3x2": [9] * 3, "mamujoco-ant-4x2": [27] * 4,
    "mamujoco-humanoid-17x1": [36] * 6 + [58] + [36] * 3 + [58] + [36] * 6,
}
LIMITS = {"safe-halfcheetah": 5.0, "safe-coupled-halfcheetah": 5.0, "safe-ant": 0.2, "safe-manyagent-ant": 1.0,
          "safe-velocity": 25.0}


def test_every_task_is_registered_with_shared_and_local_modes():
    assert set(NAMES) <= set(task_names())
    safe = [n for n in NAMES if n.startswith("safe-") and not n.startswith("safe-velocity-")]
    assert len(safe) == 30 and all(n + "-local" in NAMES for n in safe if not n.endswith("-local"))
    # Safety-Gymnasium's velocity tasks: one robot-level cost, no -local variant (tests/test_velocity_tasks.py)
    assert len([n for n in NAMES if n.startswith("safe-velocity-")]) == 8 and not any(
        n.startswith("safe-velocity-") and n.endswith("-local") for n in NAMES)
    assert {n for n in NAMES if n.startswith("mamujoco-")} == {
        "mamujoco-halfcheetah-3x2", "mamujoco-hopper-3x1", "mamujoco-walker2d-3x2", "mamujoco-ant-4x2",
        "mamujoco-humanoid-17x1"}
    assert task_class("safe-halfcheetah-2x3") is task_class("safe-halfcheetah-2x3")


@pytest.mark.parametrize("name", NAMES)
def test_spec(name):
    spec = task_spec(name)
    base = name.removesuffix("-local")
    assert spec.name == name and spec.episode_length == 1000
    if base in ACT_DIMS:
        assert [a.act_dim for a in spec.agents] == ACT_DIMS[base]
    if name in OBS_DIMS:
        assert [a.obs_dim for a in spec.agents] == OBS_DIMS[name]
    assert all(a.act_kind == "continuous" and a.obs_desc.startswith(f"local, {a.obs_dim} floats") for a in spec.agents)
    family = next((f for f in sorted(LIMITS, key=len, reverse=True) if base.startswith(f + "-")), None)
    if family is None:
        assert spec.cost_names == () and spec.cost_limits == ()
    else:
        assert spec.cost_limits == (LIMITS[family],) and len(spec.cost_names) == 1
        assert spec.extra["cost_mode"] == ("local" if name.endswith("-local") else "shared")
    # the default topology is shipped, has one node per agent and the kinematic adjacency (spec §2.1)
    key = CATALOG[name]
    g = resolve_topology(spec.topology, spec.n_agents)
    assert {tuple(sorted(e)) for e in g.edges()} == set(agent_edges(key.robot, key.conf))
    for i, joints in enumerate(key.robot.partition(key.conf)):
        if "joints" in g.nodes[i]:
            assert list(g.nodes[i]["joints"]) == list(joints)


@pytest.mark.parametrize("name", [n for n in NAMES if not n.endswith("-local")])
def test_observation_holds_own_joints_and_globals_only(name):
    """No agent's observation contains a qpos/qvel column of another agent's joint."""
    L = task_class(name).layout
    for i, joints in enumerate(L.agents):
        idx = set(L.obs_idx[i].tolist())
        for k, other in enumerate(L.agents):
            cols = {L.qpos(j) for j in other} | {L.qvel_obs + L.qvel(j) - L.qvel(None) for j in other}
            assert bool(idx & cols) == (k == i), (name, i, k)
        if L.robot.root_of:  # coupled: the agent sees its own cheetah's root only
            own = L.robot.root_of[joints[0]]
            assert L.qpos(f"rootz{own}") in idx and L.qpos(f"rootz{1 - own}") not in idx


def test_shapes_dtypes_and_shared_vs_local_cost_arrays():
    for name in ("safe-ant-4x2", "safe-ant-4x2-local", "mamujoco-walker2d-3x2", "safe-coupled-halfcheetah-12x1"):
        task = make_task(name, 3, 1)
        spec = task.spec
        obs = task.reset()
        assert [o.shape for o in obs] == [(3, a.obs_dim) for a in spec.agents]
        rng = np.random.default_rng(0)
        for _ in range(3):
            res = task.step([rng.uniform(-1, 1, (3, a.act_dim)).astype(np.float32) for a in spec.agents])
        assert all(o.dtype == np.float32 and np.isfinite(o).all() for o in res.obs)
        assert res.reward.shape == (3,) and res.reward.dtype == np.float32
        assert len(res.cost) == spec.n_agents
        assert all(c.shape == (3, spec.n_costs) and c.dtype == np.float32 for c in res.cost)
        if name.endswith("-local"):
            assert res.cost[0] is not res.cost[1]
        elif spec.n_costs:
            assert all(c is res.cost[0] for c in res.cost)
        with pytest.raises(ValueError, match="expected"):
            task.step([np.zeros((3, 7), np.float32)] * spec.n_agents)


def test_actions_are_routed_to_the_agents_own_joints():
    """2x4 and 2x4d differ (MACPO's contiguous routing made them one task, spec §1.2)."""
    for name, first in (("safe-ant-2x4", ("hip_1", "ankle_1", "hip_2", "ankle_2")),
                        ("safe-ant-2x4d", ("hip_1", "ankle_1", "hip_3", "ankle_3"))):
        task = make_task(name, 1, 0)
        task.step([np.array([[0.1, 0.2, 0.3, 0.4]], np.float32), np.zeros((1, 4), np.float32)])
        m, d = task.model, task.datas[0]
        for j, want in zip(first, (0.1, 0.2, 0.3, 0.4)):
            act = [a for a in range(m.nu) if m.actuator_trnid[a, 0] == m.joint(j).id][0]
            assert d.ctrl[act] == pytest.approx(want)
        assert np.count_nonzero(d.ctrl) == 4
    task = make_task("mamujoco-humanoid-17x1", 1, 0)  # humanoid actuators are limited to ±0.4
    assert task.spec.agents[0].act_low == -0.4
    task.step([np.full((1, 1), 5.0, np.float32)] * 17)
    assert np.allclose(task.datas[0].ctrl, 0.4)



def _same_start(task) -> None:
    """Every copy in copy 0's state."""
    for d in task.datas[1:]:
        d.qpos[:], d.qvel[:] = task.datas[0].qpos, task.datas[0].qvel
        mujoco.mj_forward(task.model, d)
    task.sync()


def test_control_cost_is_charged_on_the_action_as_sent():
    """Out-of-range actions move the robot as the clipped ones do (MuJoCo clamps either way) but pay
    w·Σa² of what was sent, as every paper's code did (docs/tasks.md "Exactness"); a copy with a NaN
    or infinite entry moves and pays as the control MuJoCo gets: clipped, NaN → 0."""
    task = make_task("mamujoco-humanoid-17x1", 4, 0)  # control range ±0.4, ctrl_cost_weight 0.1
    _same_start(task)
    rng = np.random.default_rng(0)
    raw = rng.uniform(-1.2, 1.2, 17)
    odd = raw.copy()
    odd[[0, 1, 2]] = np.nan, np.inf, -np.inf
    sent = np.stack([raw, np.clip(raw, -0.4, 0.4), odd, np.r_[0.0, 0.4, -0.4, np.clip(raw[3:], -0.4, 0.4)]])
    res = task.step([sent[:, [j]].astype(np.float32) for j in range(17)])
    q = [d.qpos.copy() for d in task.datas]
    np.testing.assert_array_equal(q[0], q[1])
    np.testing.assert_array_equal(q[2], q[3])
    a32 = raw.astype(np.float32).astype(np.float64)
    extra = 0.1 * (np.sum(a32 ** 2) - np.sum(np.clip(a32, -0.4, 0.4) ** 2))
    assert extra > 0.3
    assert res.reward[1] - res.reward[0] == pytest.approx(extra, abs=1e-5)
    assert np.isfinite(res.reward).all() and res.reward[2] == res.reward[3]

def _place(task, e: int, **qpos) -> None:
    d = task.datas[e]
    for joint_and_k, value in qpos.items():
        joint, k = joint_and_k.rsplit("_", 1)
        d.joint(joint).qpos[int(k)] = value
    d.qvel[:] = 0.0
    mujoco.mj_forward(task.model, d)
    task.sync()


def test_termination_auto_reset_and_reset_observation():
    task = make_task("safe-ant-8x1", 3, 3)
    _place(task, 1, root_2=1.5)  # torso above 1 m: unhealthy (Ant-v5)
    _place(task, 2, root_3=0.0, root_4=1.0)  # upside down: MACPO's z_rot < -0.7
    res = task.step([np.zeros((3, 1), np.float32)] * 8)
    assert list(res.terminated) == [False, True, True] and not res.truncated.any()
    assert list(res.cost[0][:, 0]) == [0.0, 1.0, 1.0]  # the fall is a cost (spec §3.2), for every agent
    for e in (1, 2):  # reset at once, and the observation is the new episode's first
        d = task.datas[e]
        assert task._steps[e] == 0 and d.qpos[2] == pytest.approx(0.75, abs=0.1) and d.qpos[3] > 0.9
        z = list(task.layout.obs_idx[0]).index(task.layout.qpos("root", 2))  # torso z in agent 0's obs
        np.testing.assert_allclose(res.obs[0][e, z], d.qpos[2], rtol=1e-6)
    plain = make_task("mamujoco-ant-4x2", 1, 0)  # Gymnasium's Ant has no upright test
    _place(plain, 0, root_3=0.0, root_4=1.0)
    assert not plain.step([np.zeros((1, 2), np.float32)] * 4).terminated[0]
    hopper = make_task("mamujoco-hopper-3x1", 1, 0)
    _place(hopper, 0, rooty_0=0.5)  # pitched beyond ±0.2 rad
    assert hopper.step([np.zeros((1, 1), np.float32)] * 3).terminated[0]


def test_truncation_after_1000_steps():
    task = make_task("safe-coupled-halfcheetah-2x6", 2, 0)  # cheetahs never terminate
    task._steps[:] = [998, 10]  # fast-forward the episode clocks
    task._oldest = 998
    act = [np.zeros((2, 6), np.float32)] * 2
    assert not task.step(act).truncated.any()
    res = task.step(act)
    assert list(res.truncated) == [True, False] and not res.terminated.any()
    assert list(task._steps) == [0, 12] and task.datas[0].time == 0.0


def test_diverged_physics_resets_the_copy_without_nan(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo logs its instability warning to ./MUJOCO_LOG.TXT
    task = make_task("safe-halfcheetah-3x2", 2, 0)
    task.step([np.zeros((2, 2), np.float32)] * 3)
    task.datas[0].qvel[:] = 1e12  # MuJoCo resets a copy whose velocity is this large
    res = task.step([np.zeros((2, 2), np.float32)] * 3)
    assert res.truncated[0] and not res.truncated[1] and res.reward[0] == 0.0 and res.cost[0][0, 0] == 0.0
    assert all(np.isfinite(o).all() for o in res.obs) and task.datas[0].time == 0.0


def test_seeding_is_reproducible():
    def roll(seed: int) -> np.ndarray:
        task = make_task("safe-manyagent-ant-6x1", 2, seed)
        out = [np.concatenate(task.reset(), axis=1)]
        rng = np.random.default_rng(1)
        for _ in range(5):
            out.append(np.concatenate(task.step([rng.uniform(-1, 1, (2, 4)).astype(np.float32)
                                                 for _ in range(6)]).obs, axis=1))
        return np.stack(out)
    a, b, c = roll(4), roll(4), roll(5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a[:, 0], a[:, 1])


@pytest.mark.parametrize("name,message", [
    ("safe-ant-3x3", "partition '3x3' is not defined for safe-ant"),
    ("safe-manyagent-ant-2x", "malformed partition '2x'"),
    ("mamujoco-ant", "mamujoco-ant"),
])
def test_registry_rejects_bad_names_in_one_line(name, message):
    with pytest.raises(ValueError, match=message) as err:
        task_spec(name)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name,message", [
    ("safe-ant-3x3", "partition '3x3' is not defined for safe-ant; defined: 2x4, 2x4d, 4x2, 8x1"),
    ("safe-manyagent-ant-2x", "malformed partition '2x'"),
    ("safe-halfcheetah-2x3x1-local", "malformed partition '2x3x1'"),
    ("safe-coupled-halfcheetah-0x12", "malformed partition '0x12'"),
    ("mamujoco-hopper-1x3", "partition '1x3' is not defined for mamujoco-hopper"),
    ("safe-rocket-2x3", "unknown MuJoCo task 'safe-rocket-2x3'"),
])
def test_catalogue_names_the_problem(name, message):
    with pytest.raises(ValueError, match=message) as err:
        task_key(name)
    assert "\n" not in str(err.value)


def test_partition_parsing():
    assert HALFCHEETAH.partition("3x2") == (("bshin", "bfoot"), ("bthigh", "ffoot"), ("fthigh", "fshin"))
    assert ANT.partition("4x2")[2] == ("hip_3", "ankle_3")
    assert manyagent_ant(8).partition("4x2")[1] == ("hip1_2", "ankle1_2", "hip2_2", "ankle2_2",
                                                    "hip1_3", "ankle1_3", "hip2_3", "ankle2_3")
    for bad in ("", "2", "x3", "2x3 ", "ax3", "2X3", None):
        with pytest.raises(ValueError, match="malformed partition"):
            HALFCHEETAH.partition(bad)
    with pytest.raises(ValueError, match="not defined for halfcheetah"):
        HALFCHEETAH.partition("3x3")
    for conf in ("2x3", "3x2", "6x1"):  # partitions cover every actuated joint exactly once
        assert sorted(sum(HALFCHEETAH.partition(conf), ())) == sorted(HALFCHEETAH.joints)


def test_model_sizes_match_the_spec():
    """spec §2.4 / §4 [verified] sizes; the corridor walls are visual, so the ants carry no wall
    DoFs (MACPO's free-joint walls add 7 qpos / 6 qvel each: Safe Ant 57/50, ManyAgent 45/42, 53/50)."""
    sizes = {"safe-halfcheetah-2x3": (10, 10, 7), "safe-coupled-halfcheetah-2x6": (19, 19, 13),
             "safe-manyagent-ant-2x3": (31, 30, 24), "safe-manyagent-ant-8x1": (39, 38, 32),
             "safe-ant-2x4": (15, 14, 8), "mamujoco-humanoid-17x1": (24, 23, 17)}
    for name, want in sizes.items():
        m = make_task(name, 1, 0).model
        assert (m.nq, m.nv, m.nu) == want, name
    assert make_task("safe-manyagent-ant-6x1", 1, 0).model.body_mass.sum() == pytest.approx(19.47, abs=0.01)


def test_khop_tasks_lists_every_mujoco_task(capsys):
    from compose.cli import cmd_tasks

    assert cmd_tasks(None) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert set(NAMES) <= listed
