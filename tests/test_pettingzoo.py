"""PettingZoo both ways: any ParallelEnv served as a khop task (``pettingzoo:module:factory``), and
any khop task driven as a ParallelEnv through a real envserver (``envserver.pettingzoo``)."""
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pettingzoo")
from gymnasium import spaces  # noqa: E402
from pettingzoo import ParallelEnv  # noqa: E402

with warnings.catch_warnings():  # pettingzoo.test imports its own deprecated env-creation API
    warnings.simplefilter("ignore", DeprecationWarning)
    from pettingzoo.test import parallel_api_test  # noqa: E402

from envserver.pettingzoo import parallel_env  # noqa: E402
from envserver.tasks import make_task, task_class, task_spec  # noqa: E402

TOY = "pettingzoo:envserver.tasks.pettingzoo_toy:parallel_env"
HERE = f"pettingzoo:{__name__}"  # factories below, importable because pytest put tests/ on sys.path
ROOT = Path(__file__).resolve().parents[1]


# --- ParallelEnvs for the adapter tests ------------------------------------------------------
class Staggered(ParallelEnv):
    """Agent 'a' (Discrete obs, Box action with per-entry bounds) is done after 2 steps, 'b' after 3.

    'a' terminates, 'b' truncates; rewards are 1 for 'a' and 3 for 'b'; 'b' reports a 2-vector cost.
    """

    metadata = {"name": "staggered"}
    render_mode = None

    def __init__(self, ends=(2, 3)):
        self.possible_agents = ["a", "b"]
        self.agents = []
        self.ends = dict(zip(self.possible_agents, ends))
        self.seen = []  # every actions dict step() received
        self.spaces = {"a": (spaces.Discrete(4), spaces.Box(np.array([0, -10], np.float32), np.array([1, 10], np.float32))),
                       "b": (spaces.Box(-1, 1, (2, 3)), spaces.Discrete(2))}
        self.cost_limits = [5.0, 7.0]

    def observation_space(self, agent):
        return self.spaces[agent][0]

    def action_space(self, agent):
        return self.spaces[agent][1]

    def _obs(self):
        return {"a": self.t % 4, "b": np.full((2, 3), self.t / 10, dtype=np.float32)}

    def reset(self, seed=None, options=None):
        self.t, self.agents = 0, list(self.possible_agents)
        obs = self._obs()
        return {a: obs[a] for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        self.seen.append(dict(actions))
        self.t += 1
        obs = self._obs()
        live = list(self.agents)
        done = {a: self.t >= self.ends[a] for a in live}
        self.agents = [a for a in live if not done[a]]
        infos = {a: ({"cost": [1.0, 2.0]} if a == "b" else {}) for a in live}
        return ({a: obs[a] for a in live}, {a: {"a": 1.0, "b": 3.0}[a] for a in live},
                {a: done[a] and a == "a" for a in live}, {a: done[a] and a == "b" for a in live}, infos)


def staggered():
    return Staggered()


def raising():
    raise RuntimeError("no GPU\nfound")


def not_an_env():
    return 42


def an_aec_env():
    from pettingzoo.utils.conversions import parallel_to_aec

    return parallel_to_aec(Staggered())


def dict_obs():
    env = Staggered()
    env.spaces["b"] = (spaces.Dict({"x": spaces.Discrete(2)}), spaces.Discrete(2))
    return env


NOT_CALLABLE = 3
_ONE = Staggered()


def singleton():
    return _ONE


# --- server side: the adapter ---------------------------------------------------------------
def test_toy_spec_mapping_and_cache():
    cls = task_class(TOY)
    assert cls is task_class(TOY)  # built once per name
    spec = task_spec(TOY)
    assert spec.name == TOY and spec.n_agents == 2 and spec.episode_length == 12
    assert spec.cost_names == ("cost",) and spec.cost_limits == (float("inf"),)
    a = spec.agents[0]
    assert (a.obs_dim, a.act_kind, a.n_actions) == (2, "discrete", 3)


def test_toy_steps_mean_reward_costs_and_auto_reset():
    task = make_task(TOY, n_envs=2, seed=0)
    obs = task.reset()
    np.testing.assert_array_equal(obs[0], [[0, 0], [0, 0]])
    np.testing.assert_array_equal(obs[1], [[6, 0], [6, 0]])
    toward = [np.array([2, 1]), np.array([0, 1])]  # copy 0: walk toward each other; copy 1: stand still
    for step in range(1, 4):
        res = task.step(toward)
        assert res.terminated.tolist() == [step == 3, False] and not res.truncated.any()
        np.testing.assert_allclose(res.reward, [0.0 if step == 3 else -(6 - 2 * step) / 6, -1.0])
    np.testing.assert_array_equal(res.obs[0][0], [0, 0])  # copy 0 met and restarted at the ends
    np.testing.assert_array_equal(res.obs[0][1], [0, 3])
    res = task.step([np.array([0, 0]), np.array([2, 2])])  # everyone walks off the line: cost 1
    np.testing.assert_array_equal(res.cost[0], [[1.0], [1.0]])
    np.testing.assert_array_equal(res.cost[1], [[1.0], [1.0]])


def test_staggered_agents_spaces_costs_and_episode_end():
    spec = task_spec(f"{HERE}:staggered")
    a, b = spec.agents
    assert (a.obs_dim, a.act_kind, a.act_dim, a.act_low, a.act_high) == (4, "continuous", 2, -1.0, 1.0)
    assert (b.obs_dim, b.act_kind, b.n_actions) == (6, "discrete", 2)
    assert spec.cost_names == ("cost0", "cost1") and spec.cost_limits == (5.0, 7.0)
    task = make_task(f"{HERE}:staggered", n_envs=1, seed=0)
    obs = task.reset()
    np.testing.assert_array_equal(obs[0], [[1, 0, 0, 0]])  # Discrete observation → one-hot
    act = [np.array([[-1.0, 0.5]], dtype=np.float32), np.array([1])]
    res = task.step(act)
    assert task.envs[0].seen[-1]["a"].tolist() == [0.0, 5.0]  # [−1, 1] mapped onto the Box's bounds
    assert res.reward[0] == 2.0 and not (res.terminated[0] or res.truncated[0])  # mean of 1 and 3
    np.testing.assert_array_equal(res.cost[1], [[1.0, 2.0]])
    np.testing.assert_array_equal(res.cost[0], [[0.0, 0.0]])
    res = task.step(act)  # 'a' terminates, 'b' lives on
    assert not (res.terminated[0] or res.truncated[0])
    np.testing.assert_array_equal(res.obs[0], [[0, 0, 1, 0]])
    res = task.step(act)  # only 'b' acts; 'a' keeps its last observation; 'b' truncates → truncated
    assert set(task.envs[0].seen[-1]) == {"b"} and res.reward[0] == 3.0
    assert res.truncated[0] and not res.terminated[0]
    np.testing.assert_array_equal(res.obs[0], [[1, 0, 0, 0]])  # auto-reset


@pytest.mark.parametrize("target,message", [
    ("pettingzoo:no_such_module_xyz:make", "cannot import 'no_such_module_xyz': ModuleNotFoundError"),
    ("pettingzoo:just_a_module", "must look like pettingzoo:package.module:factory"),
    (f"{HERE}:missing", "has no attribute 'missing'"),
    (f"{HERE}:NOT_CALLABLE", "'NOT_CALLABLE' is a int, not a callable factory"),
    (f"{HERE}:raising", "the factory raised RuntimeError: no GPU found"),
    (f"{HERE}:not_an_env", "the factory returned a int, not a pettingzoo.ParallelEnv"),
    (f"{HERE}:an_aec_env", "not a pettingzoo.ParallelEnv (an AECEnv: pass its parallel_env factory)"),
    (f"{HERE}:dict_obs", "agent 'b' has unsupported observation space Dict('x': Discrete(2))"),
])
def test_bad_factories_are_one_line_value_errors(target, message):
    with pytest.raises(ValueError) as err:
        task_class(target)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_factory_must_build_a_new_env_per_copy():
    with pytest.raises(ValueError, match="returned the same env twice"):
        make_task(f"{HERE}:singleton", n_envs=2, seed=0)


def test_simple_spread_static_spec_agrees_with_mpe2(monkeypatch):
    spec = task_spec("mpe-simple-spread")
    assert spec.n_agents == 5 and spec.agents[0].obs_dim == 30 and spec.episode_length == 25
    pytest.importorskip("mpe2")
    from envserver.tasks.pettingzoo_mpe import simple_spread

    task = make_task("mpe-simple-spread", n_envs=1, seed=0)  # builds mpe2 envs and checks the spec
    obs = task.reset()
    ref = simple_spread()
    ref_obs, _ = ref.reset(seed=task._first_seeds[0])
    for i in range(5):
        np.testing.assert_allclose(obs[i][0], ref_obs[f"agent_{i}"])
    acts = [1, 2, 3, 4, 0]
    res = task.step([np.array([a]) for a in acts])
    _, rew, _, _, _ = ref.step({f"agent_{i}": a for i, a in enumerate(acts)})
    np.testing.assert_allclose(res.reward[0], np.mean(list(rew.values())), rtol=1e-6)
    monkeypatch.setitem(sys.modules, "mpe2", None)
    with pytest.raises(ValueError, match=r"needs mpe2: pip install 'khop\[mpe\]'"):
        make_task("mpe-simple-spread", n_envs=1, seed=0)


# --- client side: khop tasks as ParallelEnvs ------------------------------------------------
@pytest.mark.parametrize("name", ["coop-game", "mpe-line-control"])
def test_parallel_api(name):
    env = parallel_env(name)
    try:
        parallel_api_test(env, num_cycles=100)
    finally:
        env.close()


def test_client_seeds_resets_costs_and_close():
    env = parallel_env(TOY, seed=4)
    try:
        assert env.possible_agents == ["agent_0", "agent_1"]
        assert env.action_space("agent_0") == spaces.Discrete(3)
        with pytest.raises(RuntimeError, match="reset"):
            env.step({})
        obs, infos = env.reset()
        session = env._session
        assert env.server_seed == 4 and infos == {"agent_0": {}, "agent_1": {}}
        np.testing.assert_array_equal(obs["agent_1"], [6, 0])
        with pytest.raises(ValueError, match="int in 0..2"):
            env.step({"agent_0": 3})
        obs, rew, term, trunc, infos = env.step({"agent_0": 0, "agent_1": 1})  # left walks off the line
        assert rew == {"agent_0": -1.0, "agent_1": -1.0} and not any(term.values()) and not any(trunc.values())
        assert infos["agent_0"] == {"costs": {"cost": 1.0}, "cost": 1.0} and infos["agent_1"]["cost"] == 0.0
        env.reset()  # mid-episode: a fresh server, seed + 1
        assert env._session is not session and env.server_seed == 5 and session.proc.poll() is not None
        for _ in range(3):
            obs, rew, term, trunc, _ = env.step({"agent_0": 2, "agent_1": 0})
        assert all(term.values()) and env.agents == []
        np.testing.assert_array_equal(obs["agent_0"], [0, 0])  # already the next episode's first
        session = env._session
        again, _ = env.reset()  # at the boundary: no restart, same observation
        assert env._session is session and env.agents == env.possible_agents
        np.testing.assert_array_equal(again["agent_0"], obs["agent_0"])
        env.reset(seed=4)
        assert env.server_seed == 4 and env._session is not session
        proc, tmp = env._session.proc, env._session.tmp
    finally:
        env.close()
    assert proc.poll() is not None and not Path(tmp).exists()


def test_client_joins_a_running_envserver(tmp_path):
    from compose.run.launcher import free_ports

    endpoint = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    server = subprocess.Popen([sys.executable, "-m", "envserver.main", "--task", "mpe-circle-control", "--bind",
                               endpoint, "--envs", "1", "--steps", "30", "--seed", "7",
                               "--run-dir", str(tmp_path / "envserver")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        env = parallel_env("mpe-circle-control", endpoint=endpoint)
        assert len(env.possible_agents) == 5 and env.observation_space("agent_0").shape == (6,)
        with pytest.warns(UserWarning, match="ignored"):
            env.reset(seed=1)
        env.step({})
        with pytest.raises(RuntimeError, match="mid-episode"):
            env.reset()
        for _ in range(24):
            *_, trunc, _ = env.step({a: 1 for a in env.agents})
        assert all(trunc.values())
        env.reset()
        env.step({})
        with pytest.raises(RuntimeError, match="BYE"):  # the server's 30 steps are spent
            for _ in range(10):
                env.step({})
        env.close()
        assert server.wait(timeout=20) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_client_refuses_unknown_task_before_starting_anything():
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        parallel_env("nope")


# --- command line ---------------------------------------------------------------------------
def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=240)


def test_khop_run_serves_a_pettingzoo_factory(tmp_path):
    proc = _cli("compose.cli", "run", "--task", TOY, "--steps", "2000", "--envs", "2", "--run-dir",
                str(tmp_path / "run"), "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    episodes = (tmp_path / "run" / "envserver" / "episodes.jsonl").read_text().splitlines()
    assert len(episodes) >= 2000 // 12


@pytest.mark.parametrize("command", [["compose.cli", "run"], ["envserver.main"]])
def test_cli_bad_factory_exits_2_with_one_line(tmp_path, command):
    (tmp_path / "userenv.py").write_text("def broken():\n    raise KeyError('boom')\n")
    proc = _cli(*command, "--task", "pettingzoo:userenv:broken", "--run-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "the factory raised KeyError: 'boom'" in lines[0], proc.stderr
