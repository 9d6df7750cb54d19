"""shadow-hand-over: the two-hand scene, its partitions, a scripted hand-over in real MuJoCo, the
reward, fall and costs of the reference (ShadowHandOver_Safe_finger.py / _Safe_joint.py of
Safety-Gymnasium), and one short khop run."""
import json
import re
import subprocess
import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest

from envserver.tasks import hand_model as H
from envserver.tasks import hand_over as HO
from envserver.tasks import make_task, task_spec
from envserver.tasks.hand_script import ScriptedHandOver

NAMES = ["shadow-hand-over", "shadow-hand-over-fingers", "shadow-hand-over-fingers-safe-joint",
         "shadow-hand-over-safe-joint"]
EPS = 1e-6  # a float32 step past 0.5 survives the wire: 0.5 ± 1e-6 are distinct float32 values
GOAL_COLS = slice(-7, -4)  # goal − block position in every agent's observation


def play(task, steps: int, **hands) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each copy's first episode under the scripted team: its ending (S success, F fall, T
    truncated), its cost, and the copies' block–goal distance at the start."""
    team = ScriptedHandOver(task, **hands)
    obs = task.reset()
    start = np.linalg.norm(obs[0][:, GOAL_COLS], axis=1)
    ending, cost = [""] * task.n_envs, np.zeros(task.n_envs)
    for _ in range(steps):
        res = task.step(team(obs))
        obs = res.obs
        team.episode_ended(res.terminated | res.truncated)
        for e in range(task.n_envs):
            if not ending[e]:
                cost[e] += res.cost[0][e, 0]
                if res.terminated[e] or res.truncated[e]:
                    ending[e] = "S" if res.reward[e] >= HO.REACH_GOAL_BONUS else "F" if res.terminated[e] else "T"
    return ending, cost, start


def test_scene_names_are_the_assets():
    """The joint, actuator and finger names the specs are built from are those of the compiled
    scene, 20 position servos per hand, each on the joint it is named after."""
    m = H.compile_model()
    hinges = [m.joint(j).name for j in range(m.njnt) if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    assert hinges == [p + j for p in H.PREFIXES for j in H.HAND_JOINTS]
    assert [m.actuator(a).name for a in range(m.nu)] == [p + "A_" + j for p in H.PREFIXES for j in H.HAND_ACTUATED]
    for a in range(m.nu):
        assert m.joint(int(m.actuator_trnid[a, 0])).name == m.actuator(a).name.replace("A_", "")
    assert sorted(j for g in H.FINGER_GROUPS for j in g) == sorted(H.HAND_JOINTS)
    assert (m.nu, len(H.HAND_ACTUATED)) == (40, 20)
    assert m.dof_damping[m.jnt_dofadr[m.joint("object:joint").id]:][:6].tolist() == [0.0] * 6
    # the reference's cost indices: its actions[:, 2:5] are the first hand's A_FFJ3, A_FFJ2, A_FFJ1
    assert [m.actuator(a).name for a in (2, 3, 4)] == ["robot0:A_FFJ3", "robot0:A_FFJ2", "robot0:A_FFJ1"]
    assert m.opt.timestep * H.FRAME_SKIP == pytest.approx(1 / 60, abs=1e-15)  # the reference's 60 Hz
    assert m.body_mocapid[m.body("target").id] == 0  # the goal: drawn, per copy, never simulated


@pytest.mark.parametrize("name", NAMES)
def test_partitions_cover_every_actuator_once_and_observe_only_their_hand(name):
    task = make_task(name, 2, 0)
    m, spec = task.model, task.spec
    cols = [c for cs in task.act_cols for c in cs]
    assert sorted(cols) == list(range(m.nu)) and len(cols) == m.nu
    assert [len(c) for c in task.act_cols] == [a.act_dim for a in spec.agents]
    for (hand, joints), cs in zip(task.groups, task.act_cols):
        assert {m.actuator(c).name for c in cs} == {H.PREFIXES[hand] + "A_" + j for j in joints if j in H.HAND_ACTUATED}
    obs = task.reset()
    assert [o.shape for o in obs] == [(2, a.obs_dim) for a in spec.agents]
    # an agent's joint columns are its own joints' qpos and qvel; the rest is the block and the goal
    for (hand, joints), idx in zip(task.groups, task.obs_idx):
        n = len(joints)
        assert [int(m.jnt_qposadr[m.joint(H.PREFIXES[hand] + j).id]) + 1 for j in joints] == list(idx[:n])
        assert len(idx) == 2 * n + HO.N_OBJ_OBS


@pytest.mark.parametrize("name, seed", [("shadow-hand-over", 0), ("shadow-hand-over", 1),
                                        ("shadow-hand-over-fingers", 2), ("shadow-hand-over-safe-joint", 3)])
def test_scripted_hands_pass_the_block(name, seed):
    """The block starts on the thrower's palm and every copy's episode ends in success: the block
    reached the goal on the catcher's palm, without a single cost (the scripted forefinger keeps its
    commands at ±0.5)."""
    task = make_task(name, 8, seed)
    ending, cost, start = play(task, HO.EPISODE_LENGTH)
    assert np.all((start > 0.15) & (start < 0.2))  # the start: on the thrower's palm, ~0.17 m from the goal
    assert ending == ["S"] * 8
    assert cost.tolist() == [0.0] * 8


def test_both_hands_are_needed():
    """An idle thrower keeps the block; an idle catcher (its fingers half closed, as a zero action
    holds them) does not receive it: no success in either case."""
    for hands in ({"throw": False}, {"catch": False}):
        ending, _, _ = play(make_task("shadow-hand-over", 8, 0), HO.EPISODE_LENGTH, **hands)
        assert "S" not in ending, (hands, ending)


def test_the_caught_block_comes_to_rest_in_the_catchers_palm(monkeypatch):
    """With the success rule switched off the episode runs on: the block lies in the catcher's
    hand, touching it and not the thrower, near the goal and still."""
    monkeypatch.setattr(HO, "SUCCESS_TOLERANCE", -1.0)
    task = make_task("shadow-hand-over", 8, 3)
    play(task, HO.EPISODE_LENGTH - 5)
    m = task.model
    for d in task.datas:
        assert np.linalg.norm(d.body("object").xpos - H.GOAL_POS) < 0.025
        assert np.linalg.norm(d.joint("object:joint").qvel[:3]) < 0.05
        touching = {m.geom(g).name for c in d.contact[:d.ncon] for g in c.geom
                    if "object" in (m.geom(c.geom[0]).name, m.geom(c.geom[1]).name)} - {"object"}
        assert touching and all(g.startswith("hand1_") for g in touching), touching


def _probes(task) -> tuple[np.ndarray, list[float]]:
    """One copy per probe: a full [E, 40] command matrix, zero but for one entry, and the cost the
    reference gives it — 1 iff a watched thrower command is past ±0.5 (strictly)."""
    watched = task.cost_cols
    probes = []
    for c in watched:
        probes += [(c, 0.5 + EPS, 1.0), (c, -0.5 - EPS, 1.0), (c, 0.5 - EPS, 0.0), (c, -0.5 + EPS, 0.0),
                   (c, 0.5, 0.0), (c, -0.5, 0.0), (c, 3.0, 1.0), (c, np.nan, 0.0)]
    for c in range(40):  # every other actuator, the catcher's forefinger included, at its extremes
        if c not in watched:
            probes += [(c, 1.0 if c % 2 else -1.0, 0.0), (c, 3.0, 0.0)]
    full = np.zeros((len(probes) + 1, 40), np.float32)  # the last copy: all zero
    for e, (c, v, _) in enumerate(probes):
        full[e, c] = v
    return full, [want for _, _, want in probes] + [0.0]


@pytest.mark.parametrize("name", NAMES)
def test_cost_fires_exactly_past_the_bound(name):
    """In a real step, through each partition's action arrays: cost 1 iff one of the thrower's
    watched commands (A_FFJ3, A_FFJ2, A_FFJ1; A_FFJ1 alone in the -safe-joint tasks) is past ±0.5 as
    sent — at 0.5 + 1e-6, not at 0.5 − 1e-6 or 0.5; never for another actuator or the catcher's."""
    spec = task_spec(name)
    joint = name.endswith("-safe-joint")
    assert spec.cost_names == (("ffj1",) if joint else ("forefinger",)) and spec.cost_limits == (HO.COST_LIMIT,)
    probe_task = make_task(name, 1, 0)
    want_cols = [4] if joint else [2, 3, 4]  # the reference's actions[:, 4] / actions[:, 2:5]
    assert probe_task.cost_cols == want_cols
    full, want = _probes(probe_task)
    task = make_task(name, len(full), 0)
    res = task.step([full[:, cols] for cols in task.act_cols])
    assert all(c is res.cost[0] for c in res.cost)  # one team cost
    assert res.cost[0][:, 0].tolist() == want
    assert sum(want) == 3 * len(want_cols)


def test_reward_terms():
    """The reference's shape: exp(−0.2(50 d + θ)), no action term, + 250 on (khop's) success; θ from
    q ⊗ goal⁻¹."""
    half = np.pi / 3
    q = np.array([[1.0, 0, 0, 0], [np.cos(half / 2), 0, 0, np.sin(half / 2)]])
    assert HO.rotation_distance(HO.quat_diff(q, q[[1, 1]])).tolist() == pytest.approx([half, 0.0])
    r = HO.hand_reward(np.array([0.0, 0.1]), np.array([0.0, half]), np.array([True, False]))
    assert r.tolist() == pytest.approx([1.0 + 250.0, np.exp(-0.2 * (5.0 + half))])


def _quat_angle(q: np.ndarray, goal: np.ndarray) -> float:
    """The rotation angle from goal to q, by MuJoCo (independent of hand_over's quaternion code)."""
    neg, diff = np.zeros(4), np.zeros(4)
    mujoco.mju_negQuat(neg, goal)
    mujoco.mju_mulQuat(diff, q, neg)
    return 2.0 * np.arcsin(min(np.linalg.norm(diff[1:]), 1.0))


def test_step_reward_is_the_formula_of_the_state():
    """In real steps with random commands, every copy's reward (episode not ended) is
    exp(−0.2(50 d + θ)) + 250·[d ≤ 0.03], recomputed from its MjData: the block's free joint and the
    goal's mocap pose."""
    task = make_task("shadow-hand-over", 4, 5)
    task.reset()
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(20):
        full = rng.uniform(-1, 1, (4, 40)).astype(np.float32)
        res = task.step([full[:, cols] for cols in task.act_cols])
        for e, d in enumerate(task.datas):
            if res.terminated[e] or res.truncated[e]:
                continue
            block = d.joint("object:joint").qpos
            dist = np.linalg.norm(np.asarray(H.GOAL_POS) - block[:3])
            want = np.exp(-0.2 * (50 * dist + _quat_angle(block[3:], d.mocap_quat[0]))) + 250.0 * (dist <= 0.03)
            assert res.reward[e] == pytest.approx(want, rel=1e-6)
            checked += 1
    assert checked >= 60


def test_goal_orientation_is_drawn_per_copy_as_the_reference():
    """Each reset draws the goal's orientation q_x(πu₀) ⊗ q_y(πu₁) (so w·z = x·y), per copy, the
    pose the mocap goal is drawn at; the goal's position stays on the catcher's palm."""
    task = make_task("shadow-hand-over", 6, 0)
    first = task.goal_quat.copy()
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0)
    assert np.allclose(first[:, 0] * first[:, 3], first[:, 1] * first[:, 2])
    assert len({tuple(q.round(6)) for q in first}) == 6
    for e, d in enumerate(task.datas):
        assert np.allclose(d.mocap_quat[0], first[e]) and np.allclose(d.body("target").xpos, H.GOAL_POS)
    task.reset()
    assert not np.allclose(task.goal_quat, first)


def test_a_fall_ends_the_episode_without_penalty_and_idle_episodes_last_75_steps():
    """A block at z ≤ FALL_Z (beside the hands, in free air) ends its episode as terminated with a
    reward in (0, 1): no penalty, no bonus; one above it does not; an idle team is truncated at
    step 75 exactly."""
    task = make_task("shadow-hand-over", 3, 0)
    for e, z in ((0, HO.FALL_Z - 1e-3), (1, HO.FALL_Z + 0.05)):
        d = task.datas[e]
        d.joint("object:joint").qpos[:3] = (1.3, 0.8, z)
        mujoco.mj_forward(task.model, d)
    task.sync()
    zero = [np.zeros((3, 20), np.float32)] * 2
    res = task.step(zero)
    assert res.terminated.tolist() == [True, False, False] and not res.truncated.any()
    assert 0.0 < res.reward[0] < 1.0
    ends = [res.terminated | res.truncated]
    for _ in range(HO.EPISODE_LENGTH - 1):
        r = task.step(zero)
        ends.append(r.terminated | r.truncated)
    assert [t for t, end in enumerate(ends) if end[2]] == [HO.EPISODE_LENGTH - 1]


def test_steps_are_deterministic_and_bad_actions_are_refused():
    a, b = make_task("shadow-hand-over", 2, 7), make_task("shadow-hand-over", 2, 7)
    acts = [np.full((2, 20), np.nan, np.float32), np.ones((2, 20), np.float32)]  # NaN acts as 0
    ra, rb = a.step(acts), b.step(acts)
    assert np.array_equal(ra.obs[0], rb.obs[0]) and np.isfinite(ra.reward).all()
    with pytest.raises(ValueError, match="agent 1 action has shape"):
        a.step([np.zeros((2, 20), np.float32), np.zeros((2, 19), np.float32)])
    with pytest.raises(ValueError, match="expected 2 action arrays"):
        a.step([np.zeros((2, 20), np.float32)])


def test_without_gymnasium_robotics_the_hint_names_the_extra(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=re.escape("pip install 'khop[hands]'")):
        make_task("shadow-hand-over", 1, 0)
    assert task_spec("shadow-hand-over").n_agents == 2  # the listing does not need it


def _readme_rows() -> dict[str, tuple[list[int], list[int]]]:
    text = (Path(__file__).parent.parent / "README.md").read_text()
    rows = {}
    for m in re.finditer(r"^\| `(shadow-hand-over[\w-]*)` \|[^|]*\| ([\d, ]+) \| ([\d, ]+) \|", text, re.M):
        rows[m.group(1)] = ([int(v) for v in m.group(2).split(",")], [int(v) for v in m.group(3).split(",")])
    return rows


def test_sizes_match_the_readme():
    assert sorted(_readme_rows()) == NAMES
    for name, (obs, act) in _readme_rows().items():
        spec = task_spec(name)
        assert ([a.obs_dim for a in spec.agents], [a.act_dim for a in spec.agents]) == (obs, act), name


@pytest.mark.slow
def test_khop_run_ends_with_a_report(tmp_path):
    """A real `khop run` (agent processes, sockets) of the hand-over with a safe learner."""
    run = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--run-dir", str(run), "--no-progress",
                          "--task", "shadow-hand-over", "--algo", "mappo-l", "--steps", "3000", "--envs", "4",
                          "--seed", "1"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [json.loads(line) for line in (run / "envserver" / "episodes.jsonl").read_text().splitlines()]
    assert rows and all(1 <= r["episode_length"] <= HO.EPISODE_LENGTH for r in rows)
    assert all(0 <= r["episode_cost"] <= r["episode_length"] for r in rows)
    assert "shadow-hand-over" in (run / "report" / "summary.md").read_text()
