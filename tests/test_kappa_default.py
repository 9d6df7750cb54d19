"""κ defaults to the graph's diameter for the centralised references (MAPPO-L, HAPPO, MACPO) when
the user passes no --kappa, and to 1 otherwise; the effective κ and its origin are recorded."""
import json
import subprocess
import sys

import pytest

from compose.run.config import RunConfig, validate


@pytest.mark.parametrize("algo, topology, expected", [
    ("happo", "line", 5), ("mappo-l", "", 3), ("macpo", "star", 2),  # diameters of line-6, ring-6, star-6
    ("dpo", "line", 1), ("mafocops", "line", 5), ("ippo", "", 1),  # MAFOCOPS Alg. 1: global value network
])
def test_default_kappa(algo, topology, expected):
    cfg = RunConfig(algo=algo, topology=topology)
    validate(cfg)
    assert cfg.kappa == expected
    assert ("diameter" in cfg.kappa_rule) == (algo in ("happo", "mappo-l", "macpo", "mafocops"))


def test_explicit_kappa_wins():
    cfg = RunConfig(algo="happo", topology="line", kappa=2)
    validate(cfg)
    assert (cfg.kappa, cfg.kappa_rule) == (2, "--kappa")


def test_run_records_the_effective_kappa(tmp_path):
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--algo", "happo", "--topology", "line",
                          "--steps", "40", "--envs", "2", "--inprocess", "--no-progress", "--run-dir", str(run_dir)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    config = json.loads((run_dir / "config.json").read_text())
    assert config["kappa"] == 5 and config["graph_diameter"] == 5 and "diameter" in config["kappa_rule"]
    for i in range(6):
        assert json.loads((run_dir / f"agent-{i}" / "learner_config.json").read_text())["kappa"] == 5


@pytest.mark.parametrize("algo, flag, expected", [
    ("dec-mappo-l", None, "khop"), ("shadow-pg", None, "khop"),  # dec-mappo-l.md eq. 14; policy factorization
    ("dpo", None, "local"), ("mappo-l", None, "local"), ("dec-mappo-l", "local", "local"), ("ippo", "khop", "khop"),
])
def test_actor_input_default_follows_the_paper_and_is_recorded(algo, flag, expected):
    from compose.run.config import run_record

    cfg = RunConfig(algo=algo, actor_input=flag)
    spec, graph = validate(cfg)
    assert cfg.actor_input == expected
    assert run_record(cfg, spec, graph, "r")["actor_input"] == expected


@pytest.mark.parametrize("algo", ["dec-mappo-l", "iql", "iddpg"])
def test_khop_actor_reads_the_critic_input(algo):
    """actor_input=khop: the policy's input width is the critic's, and its actions follow the κ-hop
    input, not the local observation."""
    import numpy as np
    import torch

    from agentd.learner import ALGOS, make_learner
    from envserver.tasks.base import AgentSpec

    agent = (AgentSpec(obs_dim=3, act_kind="continuous", act_dim=2, act_low=-1.0, act_high=1.0) if algo == "iddpg"
             else AgentSpec(obs_dim=3, act_kind="discrete", act_dim=1, n_actions=4))
    no_noise = {"eps_start": 0.0, "eps_finish": 0.0, "expl_noise": 0.0}  # IQL's ε and IDDPG's σ: each takes its own
    lrn = make_learner(algo, agent, critic_dim=7, n_agents=3, n_envs=4, seed=0,
                       overrides={"actor_input": "khop", "normalize_obs": False,
                                  **{k: v for k, v in no_noise.items() if k in ALGOS[algo].used_keys()}})
    policy = {"dec-mappo-l": "actor", "iql": "q", "iddpg": "mu"}[algo]
    first = next(m for m in getattr(lrn, policy).modules() if isinstance(m, torch.nn.Linear))
    assert first.in_features == lrn.critic_dim == 7
    rng = np.random.default_rng(0)
    cin = rng.normal(size=(4, 7)).astype(np.float32)

    def act(obs, c):
        """What the policy output for this input: the distribution (on-policy) or the greedy action."""
        a = lrn.act(obs, c)
        lrn.observe(np.zeros(4), np.zeros((4, 0)), np.zeros(4, bool))
        return lrn.buffer.params[lrn.buffer.pos - 1].copy() if algo == "dec-mappo-l" else a

    same_cin = [act(rng.normal(size=(4, 3)).astype(np.float32) * 100, cin) for _ in range(3)]
    assert all(np.array_equal(same_cin[0], a) for a in same_cin[1:])
    if algo == "dec-mappo-l":  # and a different κ-hop input changes the distribution
        assert not np.allclose(same_cin[0], act(np.zeros((4, 3), np.float32), cin + 1.0))
