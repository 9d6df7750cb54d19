"""shadow-hand-over: the two-hand scene, its partitions, a scripted hand-over in real MuJoCo, the
finger cost where eq. 38 puts it, and one short khop run."""
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

NAMES = ["shadow-hand-over", "shadow-hand-over-fingers"]
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
                                        ("shadow-hand-over-fingers", 2)])
def test_scripted_hands_pass_the_block(name, seed):
    """The block starts on the thrower's palm and every copy's episode ends in success: the block
    reached the goal on the catcher's palm, without a single cost (the scripted little finger
    moves slowly)."""
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


def test_finger_cost_fires_exactly_at_the_bound():
    """Cost 1 iff the thrower's little finger moved by ≥ 0.1 rad (over LFJ4…LFJ0); the catcher's
    little finger and the thrower's other fingers never count."""
    task = make_task("shadow-hand-over", 5, 0)
    before = task.little_finger()
    moves = [("robot0:LFJ2", 0.1 + 1e-9), ("robot0:LFJ2", 0.1 - 1e-9), ("hand1_robot0:LFJ2", 0.5),
             ("robot0:RFJ2", 0.5), (None, 0.0)]
    for d, (joint, dq) in zip(task.datas, moves):
        if joint:
            d.joint(joint).qpos[0] += dq
        mujoco.mj_forward(task.model, d)
    task.sync()
    assert task.finger_cost(before).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    # spread over the five joints: ‖(0.045,) * 5‖ = 0.1006 ≥ 0.1, ‖(0.044,) * 5‖ = 0.098 < 0.1
    for k, step in enumerate((0.045, 0.044)):
        for j in H.LITTLE_FINGER:
            task.datas[k].joint("robot0:" + j).qpos[0] = before[k, H.LITTLE_FINGER.index(j)] + step
    task.sync()
    assert task.finger_cost(before)[:2].tolist() == [1.0, 0.0]


def test_step_cost_is_the_little_fingers_motion_in_that_step():
    """In real steps the cost every agent gets is the indicator of ‖Δq_LF‖ ≥ 0.1 over the step,
    recomputed here from the states; a snap of the little finger fires it, a still hand does not."""
    task = make_task("shadow-hand-over-fingers", 4, 0)
    task.reset()
    rng = np.random.default_rng(0)
    fired = quiet = 0
    for t in range(30):
        full = np.zeros((4, 40), np.float32)
        full[:2, :20] = rng.choice([-1.0, 1.0], size=(2, 20))  # copies 0, 1: bang-bang thrower
        before = task.little_finger()
        res = task.step([full[:, cols] for cols in task.act_cols])
        ended = res.terminated | res.truncated
        after = task.little_finger()
        want = (np.linalg.norm(after - before, axis=1) >= HO.FINGER_MOTION).astype(np.float32)
        assert all(c is res.cost[0] for c in res.cost)  # one team cost
        assert res.cost[0][~ended, 0].tolist() == want[~ended].tolist()
        fired += int(res.cost[0][:2, 0].sum())
        quiet += int(res.cost[0][2:, 0].sum())
    assert fired > 0 and quiet == 0


def test_reward_terms():
    """Isaac's shape: exp(−0.2(20 d + θ)) − 2e-4 Σa² + 250 on success; θ from q ⊗ goal⁻¹."""
    half = np.pi / 3
    q = np.array([[1.0, 0, 0, 0], [np.cos(half / 2), 0, 0, np.sin(half / 2)]])
    assert HO.rotation_distance(HO.quat_diff(q, q[1])).tolist() == pytest.approx([half, 0.0])
    r = HO.hand_reward(np.array([0.0, 0.1, 0.0]), np.array([0.0, half, 0.0]), np.array([0.0, 0.0, 40.0]),
                       np.array([True, False, False]))
    assert r.tolist() == pytest.approx([1.0 + 250.0, np.exp(-0.2 * (2.0 + half)), 1.0 - 0.008])


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
