"""Playing a trained learner (agentd/learner/play.py) learns nothing, and its modes are the
policy's modes, for every algorithm; plus the Student-t quantile the evaluation intervals use."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from agentd.learner import ALGOS, make_learner
from agentd.learner.checkpoint import state_digest
from compose.judge.stats import mean_ci, t_quantile
from envserver.tasks.base import AgentSpec

torch.set_num_threads(1)
DISCRETE = AgentSpec(obs_dim=3, act_kind="discrete", act_dim=1, n_actions=4)
CONTINUOUS = AgentSpec(obs_dim=3, act_kind="continuous", act_dim=2, act_low=-0.5, act_high=0.5)
E, B = 4, 64  # learner copies; rows asked for at play time (any batch, not only E)


def trained(algo: str, agent: AgentSpec):
    """A learner after a few acting steps (normalisers moved off their initial state)."""
    learner = make_learner(algo, agent, critic_dim=5, n_agents=2, n_envs=E, seed=1, overrides={"rollout_len": 8})
    rng = np.random.default_rng(0)
    for _ in range(3):
        learner.act(rng.normal(size=(E, 3)).astype(np.float32), rng.normal(size=(E, 5)).astype(np.float32))
        learner.observe(np.zeros(E, np.float32), np.zeros((E, 1), np.float32), np.zeros(E, bool))
    return learner


def pending(learner) -> tuple:
    """What acting records besides the state_dict: the rollout buffer or the replay and pending step."""
    if hasattr(learner, "replay"):
        return len(learner.replay), id(learner._pending)
    return (learner.buffer.pos,)


CASES = [(a, s) for a, cls in sorted(ALGOS.items()) for s in (DISCRETE, CONTINUOUS) if s.act_kind in cls.act_kinds]


@pytest.mark.parametrize("algo, agent", CASES, ids=[f"{a}-{s.act_kind}" for a, s in CASES])
def test_playing_learns_nothing_and_modes_are_modes(algo: str, agent: AgentSpec) -> None:
    learner = trained(algo, agent)
    held = pending(learner)
    before = state_digest({k: v for k, v in learner.state_dict().items() if k not in ("torch_rng", "numpy_rng")})
    rng = np.random.default_rng(1)
    obs, cin = rng.normal(size=(B, 3)).astype(np.float32), rng.normal(size=(B, 5)).astype(np.float32)
    mode = learner.policy_action(obs, cin, deterministic=True)
    sample = learner.policy_action(obs, cin, deterministic=False)
    assert np.array_equal(mode, learner.policy_action(obs, cin, deterministic=True))
    if agent.act_kind == "discrete":
        probs = learner.action_probs(obs, cin)
        assert probs.shape == (B, 4) and np.allclose(probs.sum(axis=1), 1.0)
        assert np.array_equal(mode, probs.argmax(axis=1)) and mode.dtype == np.int64
        assert np.array_equal(learner.action_probs(obs, cin, deterministic=True), np.eye(4)[mode])
        assert sample.shape == (B,) and (probs[np.arange(B), sample] > 0).all()
    else:
        assert mode.shape == sample.shape == (B, 2) and mode.dtype == np.float32
        assert (np.abs(mode) <= 0.5).all() and (np.abs(sample) <= 0.5).all()
        assert not np.array_equal(mode, sample)  # the sample carries the policy's noise
        with pytest.raises(ValueError, match="discrete"):
            learner.action_probs(obs, cin)
    after = state_digest({k: v for k, v in learner.state_dict().items() if k not in ("torch_rng", "numpy_rng")})
    assert before == after and pending(learner) == held
    with pytest.raises(ValueError, match="shape"):  # the input the policy reads, cut short
        learner.policy_action(obs, cin[:, :2], True) if learner.khop_actor else learner.policy_action(obs[:, :2], cin, True)


def test_ppo_mode_is_the_gaussian_mean_and_iql_mixes_epsilon() -> None:
    ppo = trained("ippo", CONTINUOUS)
    obs = np.random.default_rng(2).normal(size=(B, 3)).astype(np.float32)
    with torch.no_grad():
        mean = ppo.actor(torch.from_numpy(ppo.obs_norm.normalize(obs)))[:, :2].numpy()
    assert np.allclose(ppo.policy_action(obs, np.zeros((B, 5)), True), np.clip(mean, -0.5, 0.5))
    iql = trained("iql", DISCRETE)
    with torch.no_grad():
        greedy = iql.q(torch.from_numpy(iql.obs_norm.normalize(obs))).argmax(-1).numpy()
    eps = iql.epsilon()
    assert 0 < eps < 1
    assert np.allclose(iql.action_probs(obs, np.zeros((B, 5))), (1 - eps) * np.eye(4)[greedy] + eps / 4)


def test_student_t_quantile_and_interval() -> None:
    # two-sided 95 % critical values of Student's t (any statistics table)
    for df, t in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423), (1000, 1.9623)):
        assert t_quantile(0.975, df) == pytest.approx(t, abs=1e-4)
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (3, 7, 19, 60):
        assert t_quantile(0.975, df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=1e-8)
    s = mean_ci([1.0, 2.0, 3.0, 6.0])
    assert s["mean"] == 3.0 and s["n"] == 4
    assert s["ci95"] == pytest.approx(3.1824463 * np.std([1, 2, 3, 6], ddof=1) / 2, rel=1e-6)
    assert mean_ci([5.0])["ci95"] is None and mean_ci([])["mean"] is None
