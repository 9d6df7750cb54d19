"""The Safety-Gymnasium multi-agent velocity tasks SafePO benchmarks (``safe-velocity-*``): catalogue,
sizes as the README documents them, the speed limit's threshold, real episodes, fidelity to
Gymnasium's v4 robots and to SafeMAEnv's cost, and one short khop run.

Source of the thresholds and of the speed: safety-gymnasium
``safety_gymnasium/tasks/safe_multi_agent/tasks/velocity/safe_mujoco_multi.py`` (TASK_VELCITY_THRESHOLD;
``SafeMAEnv.step``: ``sqrt(x_velocity² + y_velocity²)`` from the v4 env's info, the Swimmer's
``x_velocity`` alone).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import mujoco
import numpy as np
import pytest

from envserver.tasks import make_task, task_spec
from envserver.tasks.mujoco_catalog import CATALOG

ROOT_DIR = Path(__file__).resolve().parents[1]
THRESHOLDS = {  # TASK_VELCITY_THRESHOLD, by our names (Humanoid's "9|8" is "9+8")
    "safe-velocity-ant-2x4": 2.522, "safe-velocity-ant-4x2": 2.418, "safe-velocity-halfcheetah-2x3": 3.227,
    "safe-velocity-halfcheetah-6x1": 2.932, "safe-velocity-hopper-3x1": 0.9613,
    "safe-velocity-humanoid-9+8": 0.58, "safe-velocity-swimmer-2x1": 0.04891, "safe-velocity-walker2d-2x3": 1.641,
}
NAMES = sorted(THRESHOLDS)
# the root degrees of freedom that move the speed's source in x and y (None: the speed is x only)
ROOT = {"ant-v4": (("root", 0), ("root", 1)), "humanoid-v4": (("root", 0), ("root", 1)),
        "swimmer": (("slider1", 0), ("slider2", 0))}
GYM_ID = {"ant-v4": "Ant-v4", "halfcheetah": "HalfCheetah-v4", "hopper-v4": "Hopper-v4",
          "humanoid-v4": "Humanoid-v4", "swimmer": "Swimmer-v4", "walker2d-v4": "Walker2d-v4"}


def _root(name: str) -> tuple[tuple[str, int], tuple[str, int] | None]:
    return ROOT.get(CATALOG[name].robot.key, (("rootx", 0), None))


def _zeros(task) -> list[np.ndarray]:
    return [np.zeros((task.n_envs, a.act_dim), np.float32) for a in task.spec.agents]


def _costs(task) -> list[float]:
    """The synced state's cost, checked to be one array for every agent."""
    task.sync()
    cost = task.current_cost()
    assert all(c is cost[0] for c in cost) and cost[0].shape == (task.n_envs, 1)
    return cost[0][:, 0].tolist()


def test_catalogue_is_safepos_benchmark():
    assert {n for n in CATALOG if n.startswith("safe-velocity-")} == set(NAMES)
    for name in NAMES:
        spec, key = task_spec(name), CATALOG[name]
        assert spec.cost_names == ("velocity",) and spec.cost_limits == (25.0,) and spec.episode_length == 1000
        assert key.hazard.threshold == THRESHOLDS[name] and spec.extra["cost_mode"] == "shared"
        assert spec.topology == name.removeprefix("safe-velocity-")
    with pytest.raises(ValueError, match="has no -local variant"):
        task_spec("safe-velocity-ant-2x4-local")
    with pytest.raises(ValueError, match=r"partition '9x8' is not defined for safe-velocity-humanoid; defined: 9\+8"):
        task_spec("safe-velocity-humanoid-9x8")


def _readme_rows() -> dict[str, tuple[list[int], list[int], float]]:
    """name -> (obs per agent, actions per agent, threshold) from README's velocity table."""
    rows = {}
    for line in (ROOT_DIR / "README.md").read_text(encoding="utf-8").splitlines():
        if re.match(r"\| `safe-velocity-[a-z0-9+-]+` \|", line):  # (not the family's row, `...-<robot>-<p>`)
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            if len(cells) != 6 or not re.fullmatch(r"\d+(, \d+)*", cells[2]):
                continue  # the task's row in another table (README "Performance")
            rows[cells[0].strip("`")] = ([int(x) for x in cells[2].split(",")], [int(x) for x in cells[3].split(",")],
                                         float(cells[5]))
    return rows


def _expand(field: str) -> list[int]:
    """`khop tasks`'s "36*6,58" -> [36]*6 + [58]."""
    out = []
    for part in field.split(","):
        size, _, count = part.partition("*")
        out += [int(size)] * int(count or 1)
    return out


def test_sizes_match_the_readme_and_khop_tasks(capsys):
    from compose.cli import cmd_tasks

    rows = _readme_rows()
    assert sorted(rows) == NAMES
    assert cmd_tasks(None) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    for name in NAMES:
        spec = task_spec(name)
        obs, act = [a.obs_dim for a in spec.agents], [a.act_dim for a in spec.agents]
        assert rows[name] == (obs, act, THRESHOLDS[name]), name
        m = re.search(r" obs (\S+) act (\S+) ", listed[name])
        assert (_expand(m.group(1)), _expand(m.group(2))) == (obs, act), name
        task = make_task(name, 2, 0)  # served: the arrays a step really returns
        res = task.step([np.zeros((2, n), np.float32) for n in act])
        assert [o.shape for o in res.obs] == [(2, n) for n in obs]
        assert [a.obs_desc.startswith(f"local, {n} floats") for a, n in zip(spec.agents, obs)] == [True] * len(obs)


def _place(task, e: int, vx: float, vy: float) -> None:
    """Move copy e's root so that its speed source travelled (vx, vy)·dt since the step's start."""
    (xj, xk), y = _root(task.spec.name)
    d = task.datas[e]
    d.joint(xj).qpos[xk] += vx * task.dt
    if y is not None:
        d.joint(y[0]).qpos[y[1]] += vy * task.dt
    mujoco.mj_forward(task.model, d)


@pytest.mark.parametrize("name", NAMES)
def test_cost_fires_exactly_above_the_threshold(name):
    thr, speed = THRESHOLDS[name], CATALOG[name].hazard.speed
    lo, hi = thr * (1 - 1e-9), thr * (1 + 1e-9)
    c30, s30 = np.cos(np.pi / 6), np.sin(np.pi / 6)
    cases = {  # (vx, vy) -> cost
        "planar": [((lo * c30, lo * s30), 0.0), ((hi * c30, hi * s30), 1.0), ((-hi, 0.0), 1.0), ((0.0, hi), 1.0)],
        "abs-x": [((lo, 0.0), 0.0), ((hi, 0.0), 1.0), ((-lo, 0.0), 0.0), ((-hi, 0.0), 1.0)],
        "x": [((lo, 0.0), 0.0), ((hi, 0.0), 1.0), ((-hi, 0.0), 0.0), ((0.0, 10 * thr), 0.0)],  # signed, x only
    }[speed]
    task = make_task(name, len(cases), 0)
    assert _costs(task) == [0.0] * len(cases)  # a fresh episode has not moved yet
    for e, ((vx, vy), _want) in enumerate(cases):
        _place(task, e, vx, vy)
    assert _costs(task) == [want for _v, want in cases]
    got = task.S[:, task.hazard.speed]
    want_speed = [np.hypot(vx, vy) if speed == "planar" else abs(vx) if speed == "abs-x" else vx
                  for (vx, vy), _w in cases]
    np.testing.assert_allclose(got, want_speed, rtol=1e-12)
    # the comparison itself is strict: speed == threshold costs nothing, the next float up costs 1
    task.S[:, task.hazard.speed] = thr
    task.S[1, task.hazard.speed] = np.nextafter(thr, np.inf)
    cost = task.current_cost()[0][:, 0].tolist()
    assert cost == [0.0, 1.0] + [0.0] * (len(cases) - 2)


@pytest.mark.parametrize("name", NAMES)
def test_cost_after_a_real_step_from_a_set_velocity(name):
    """Root velocity set through qvel, then one real step with zero actions: the step's speed is
    what the cost sees (margins of 2x: gravity, contacts and the swimmer's fluid change it a bit)."""
    thr, speed = THRESHOLDS[name], CATALOG[name].hazard.speed
    (xj, xk), side = _root(name)
    cases = [(("x", 0.5 * thr), 0.0), (("x", 2 * thr), 1.0), (("x", -2 * thr), 0.0 if speed == "x" else 1.0)]
    if side:
        cases.append((("y", 2 * thr), 1.0 if speed == "planar" else 0.0))
    task = make_task(name, len(cases), 0)
    for e, ((axis, v), _want) in enumerate(cases):
        d = task.datas[e]
        d.qvel[:] = 0.0
        j, k = (xj, xk) if axis == "x" else side
        d.joint(j).qvel[k] = v
    task.sync()
    res = task.step(_zeros(task))
    assert not res.terminated.any()
    assert res.cost[0][:, 0].tolist() == [want for _c, want in cases]
    assert all(c is res.cost[0] for c in res.cost)


@pytest.mark.parametrize("name", NAMES)
def test_random_episode_runs_with_finite_reward_and_cost(name):
    E, steps = 2, 1000
    task = make_task(name, E, 5)
    spec = task.spec
    rng = np.random.default_rng(0)
    ep_len, ep_cost, ended = np.zeros(E, int), np.zeros(E), []
    for _ in range(steps):
        res = task.step([rng.uniform(a.act_low, a.act_high, (E, a.act_dim)).astype(np.float32) for a in spec.agents])
        assert np.isfinite(res.reward).all() and all(np.isfinite(o).all() for o in res.obs)
        c = res.cost[0][:, 0]
        assert set(np.unique(c)) <= {0.0, 1.0} and all(x is res.cost[0] for x in res.cost)
        ep_len += 1
        ep_cost += c
        done = res.terminated | res.truncated
        assert (res.truncated == ((ep_len == 1000) & ~res.terminated)).all()  # 1000-step episodes
        for e in np.flatnonzero(done):
            ended.append((int(ep_len[e]), float(ep_cost[e])))
            assert task.S[e, task.hazard.speed] == 0.0  # the new episode starts at rest for the cost
        ep_len[done], ep_cost[done] = 0, 0.0
    assert ended and all(0 <= cost <= length for length, cost in ended)
    if CATALOG[name].robot.rules.health is None:  # cheetahs and swimmer never terminate
        assert [length for length, _c in ended] == [1000] * E


@pytest.fixture()
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Gymnasium's half_cheetah.xml makes MuJoCo write MUJOCO_LOG.TXT here


@pytest.mark.usefixtures("_in_tmp")
@pytest.mark.parametrize("name", NAMES)
def test_reward_speed_and_cost_match_gymnasium_v4_and_safemaenv(name):
    gym = pytest.importorskip("gymnasium")
    pytest.importorskip("gymnasium.envs.mujoco.ant_v4")
    key = CATALOG[name]
    with warnings.catch_warnings():  # Gymnasium 1.x still ships v4, marked out of date
        warnings.simplefilter("ignore", DeprecationWarning)
        env = gym.make(GYM_ID[key.robot.key]).unwrapped
    env.reset(seed=7)
    task = make_task(name, 1, 0)
    m, d = task.model, task.datas[0]
    # the same robot: masses, friction (Walker2d-v4's 1.9 left foot), and the state layout
    np.testing.assert_allclose(m.body_mass, env.model.body_mass, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(m.geom_friction, env.model.geom_friction)
    assert (m.nq, m.nv, m.nu) == (env.model.nq, env.model.nv, env.model.nu)
    d.qpos[:], d.qvel[:] = env.data.qpos, env.data.qvel
    mujoco.mj_forward(m, d)
    task.sync()
    task.hazard.anchor(task.S)
    rng = np.random.default_rng(3)
    lo, hi = env.action_space.low, env.action_space.high
    for t in range(60):
        a = rng.uniform(lo, hi).astype(np.float32).astype(np.float64)
        _o, r, term, _trunc, info = env.step(a)
        res = task.step([a[cols][None].astype(np.float32) for cols in task.layout.act_cols])
        # SafeMAEnv.step's speed and cost
        v = np.sqrt(info["x_velocity"] ** 2 + info.get("y_velocity", 0) ** 2)
        if key.robot.key == "swimmer":
            v = info["x_velocity"]
        cost = float(v > key.hazard.threshold)
        assert res.reward[0] == pytest.approx(r, rel=2e-6, abs=2e-5), f"step {t}"
        assert bool(res.terminated[0]) == bool(term), f"step {t}"
        assert res.cost[0][0, 0] == cost, f"step {t}"
        if term:  # our copy was reset; the speed column now belongs to the new episode
            break
        # HalfCheetah's masses are folded from settotalmass (1e-16 apart): 60 steps make that ~1e-9
        assert task.S[0, task.hazard.speed] == pytest.approx(v, rel=1e-7, abs=1e-7), f"step {t}"
    env.close()


def test_khop_run_inprocess_logs_episodes(tmp_path):
    """A real `khop run` of the family with the safe learner: episodes and the cost reach the logs."""
    run = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--run-dir", str(run), "--no-progress",
                          "--inprocess", "--task", "safe-velocity-halfcheetah-2x3", "--algo", "dec-mappo-l",
                          "--steps", "4000", "--envs", "2", "--seed", "1"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [json.loads(line) for line in (run / "envserver" / "episodes.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["episode_length"] for r in rows} == {1000}
    for r in rows:
        assert np.isfinite(r["episode_return"]) and r["episode_costs"] == [r["episode_cost"]]
        assert r["episode_cost"] == int(r["episode_cost"]) and 0 <= r["episode_cost"] <= 1000
    for i in (0, 1):
        cfg = json.loads((run / f"agent-{i}" / "learner_config.json").read_text())
        # the hyperparameters DEC-MAPPO-L reads, and only those: the family's DPO d_target is not one
        assert cfg["lambda_lr"] == 0.035 and cfg["actor_input"] == "khop" and "d_target" not in cfg
        metrics = [json.loads(line) for line in (run / f"agent-{i}" / "metrics.jsonl").read_text().splitlines()]
        assert metrics and all(np.isfinite(row["lambda0"]) for row in metrics)
