"""Every registered algorithm learns something small, honours the agent-side contract, and resumes
exactly: the registry and its docstrings, action-kind checks, short learning runs (one-state
bandits; for the constrained learners a bandit whose constrained optimum is known; a 2-agent
coordination game for the sequential token), checkpoint round trips that restore λ / ν / β and
the cost critics, and the off-policy learners' act/observe/ready/update contract."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agentd.learner import ALGOS, make_learner
from agentd.learner.base import Learner
from envserver.tasks.base import AgentSpec

torch.set_num_threads(1)

DISCRETE = AgentSpec(obs_dim=3, act_kind="discrete", act_dim=1, n_actions=4)
CONTINUOUS = AgentSpec(obs_dim=3, act_kind="continuous", act_dim=1, act_low=-1.0, act_high=1.0)
E = 8
NAMES = {"ippo", "dpo", "dpo-no-sqrt", "dpo-no-kl", "ippo-kl", "dec-mappo-l", "mafocops", "happo", "mappo-l",
         "macpo", "iql", "iddpg", "shadow-pg"}
CONSTRAINED = ("dec-mappo-l", "mappo-l", "mafocops", "macpo")
# Cost bandit: arm 0 pays 1 and costs 1, arm 1 pays 0.5 for free, arms 2-3 pay nothing. With the
# limit 0.3 per (one-step) episode the constrained optimum is π = (0.3, 0.7, 0, 0): return 0.65.
REWARD = np.array([1.0, 0.5, 0.0, 0.0], np.float32)
COST = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
LIMIT = 0.3


def _make(algo: str, agent: AgentSpec = DISCRETE, seed: int = 0, cost_limits: tuple[float, ...] = (),
          **over: object) -> Learner:
    return make_learner(algo, agent, critic_dim=5, n_agents=2, n_envs=E, seed=seed,
                        overrides={"rollout_len": 16, "hidden": 32, **over}, cost_limits=cost_limits,
                        episode_length=1)


def _probs(learner: Learner) -> np.ndarray:
    """The policy on the bandit's one state (as _run presents it: obs and critic input all ones)."""
    norm, dim = (learner.critic_norm, 5) if learner.khop_actor else (learner.obs_norm, 3)
    with torch.no_grad():
        return learner.actor(torch.from_numpy(norm.normalize(np.ones((1, dim), np.float32))))[0].exp().numpy()


def _run(learner: Learner, reward_fn, cost_fn=None, rng: np.random.Generator | None = None) -> dict[str, float]:
    """One rollout on a one-state bandit (every step ends an episode), then one update."""
    obs, cin = np.ones((E, 3), np.float32), np.ones((E, 5), np.float32)
    while not learner.ready():
        if rng is not None:
            obs, cin = rng.normal(size=(E, 3)).astype(np.float32), rng.normal(size=(E, 5)).astype(np.float32)
        a = learner.act(obs, cin)
        cost = cost_fn(a)[:, None] if cost_fn is not None else np.zeros((E, 0), np.float32)
        learner.observe(reward_fn(a), cost, np.ones(E, bool))
    return learner.update(cin)


def _arm2(a: np.ndarray) -> np.ndarray:
    return (a == 2).astype(np.float32)


# ------------------------------------------------------------------ registry and construction
def test_registry_names_and_docstrings() -> None:
    assert set(ALGOS) == NAMES
    for name, cls in ALGOS.items():
        assert cls.algo == name
        doc = cls.__dict__.get("__doc__") or ""
        assert doc.strip().splitlines()[0], f"{name} has no one-line class docstring"
        assert sys.modules[cls.__module__].__doc__


def test_action_kind_and_cost_checks() -> None:
    with pytest.raises(ValueError, match="'iql'.*continuous"):
        _make("iql", CONTINUOUS)
    with pytest.raises(ValueError, match="'iddpg'.*discrete"):
        _make("iddpg", DISCRETE)
    lrn = _make("dec-mappo-l", cost_limits=(1.0,))
    lrn.act(np.zeros((E, 3), np.float32), np.zeros((E, 5), np.float32))
    with pytest.raises(ValueError, match="cost"):
        lrn.observe(np.zeros(E), np.zeros((E, 2)), np.zeros(E, bool))
    assert _make("ippo", cost_limits=(1.0,)).n_costs == 0  # unconstrained algorithms ignore limits
    assert _make("mafocops").n_costs == 0  # a task without costs: the unconstrained form
    # per-algorithm defaults sit beneath the caller's overrides
    assert _make("mafocops").cfg.focops_lam == 2.2 and _make("mafocops", focops_lam=1.0).cfg.focops_lam == 1.0
    assert _make("happo").sequential and not _make("dec-mappo-l").sequential and _make("mappo-l").sequential
    assert _make("mafocops")._n_minibatches(512) == 2  # Table 5's minibatch size 256
    with pytest.raises(ValueError, match="update_order"):
        _make("ippo", update_order="sequentially")


@pytest.mark.parametrize("algo", ["ippo", "macpo"])
def test_continuous_actions_are_sent_clipped_or_raw_and_the_buffer_keeps_the_sample(algo: str) -> None:
    """clip_actions (default on) clips what act() returns into the action range; off, act() returns the
    Gaussian sample itself (MACPO's and SafePO's runners send it raw). The buffer stores the sample either way,
    so the update's log-probabilities are those of the action drawn."""
    obs, crit = np.zeros((E, 3), np.float32), np.zeros((E, 5), np.float32)
    sent = {}
    for clip in (True, False):
        lrn = _make(algo, CONTINUOUS, seed=3, init_log_std=1.0, clip_actions=clip)  # σ ≈ 2.7: most samples outside
        sent[clip] = lrn.act(obs, crit)
        stored = lrn.buffer.actions[0]
        assert sent[clip].dtype == np.float32 and (np.abs(stored) > 1.0).any()
        if clip:
            assert sent[clip].min() >= -1.0 and sent[clip].max() <= 1.0
            assert np.array_equal(sent[clip], np.clip(stored, -1.0, 1.0))
        else:
            assert np.array_equal(sent[clip], stored)
        played = lrn.policy_action(obs, crit, deterministic=False)
        assert (np.abs(played) <= 1.0).all() if clip else (np.abs(played) > 1.0).any()
    assert np.array_equal(sent[True], np.clip(sent[False], -1.0, 1.0))  # the same draw, only clipped
    with pytest.raises(ValueError, match="clip_actions"):
        _make("iql", DISCRETE, clip_actions=False)  # the off-policy learners explore their own way


# ------------------------------------------------------------------ learning: unconstrained
@pytest.mark.parametrize("algo", ["dpo-no-sqrt", "dpo-no-kl", "ippo-kl", "happo", "dec-mappo-l"])
def test_learns_discrete_bandit(algo: str) -> None:
    """The paying arm's probability rises from 0.25 past 0.8 (no costs: DEC-MAPPO-L is PPO here)."""
    lrn = _make(algo, epochs=5)
    assert _probs(lrn)[2] < 0.3
    for _ in range(40):
        m = _run(lrn, _arm2)
        if _probs(lrn)[2] > 0.8:
            break
    assert _probs(lrn)[2] > 0.8 and all(np.isfinite(v) for v in m.values())


def test_macpo_learns_continuous_bandit() -> None:
    """Without a cost MACPO is a trust-region step (HATRPO); the mean moves from 0 towards 0.5."""
    lrn = _make("macpo", CONTINUOUS, trust_region_delta=0.02, ls_fraction_coef=1.0, epochs=3)
    reward = lambda a: -((a[:, 0] - 0.5) ** 2)  # noqa: E731
    for _ in range(30):
        m = _run(lrn, reward)
    with torch.no_grad():
        mean = float(lrn.actor(torch.zeros(1, 3))[0, 0])
    assert abs(mean - 0.5) < 0.2 and m["ls_accepted"] == 1.0


def test_iql_learns_bandit() -> None:
    lrn = _make("iql", eps_anneal_steps=500, learning_starts=64, batch_size=64, rollout_len=4, gradient_steps=8)
    x = torch.from_numpy(np.zeros((1, 3), np.float32))
    for _ in range(40):
        m = _run(lrn, _arm2)
    with torch.no_grad():
        q = lrn.q(x)[0].numpy()
    assert q.argmax() == 2 and abs(q[2] - 1.0) < 0.2 and m["epsilon"] == pytest.approx(0.05)
    assert (lrn.act(np.ones((E, 3), np.float32), np.ones((E, 5), np.float32)) == 2).mean() > 0.5


def test_iddpg_learns_continuous_bandit() -> None:
    # lr 2e-3 instead of the paper's 5e-4 only to keep the test short
    lrn = _make("iddpg", CONTINUOUS, learning_starts=64, batch_size=64, rollout_len=4, gradient_steps=8,
                expl_noise=0.3, lr_actor=2e-3, lr_critic=2e-3)
    reward = lambda a: -((a[:, 0] - 0.5) ** 2)  # noqa: E731
    for _ in range(60):
        _run(lrn, reward)
    with torch.no_grad():
        mu = float(torch.tanh(lrn.mu(torch.zeros(1, 3))))
    assert abs(mu - 0.5) < 0.1


def test_sequential_happo_team_learns_coordination() -> None:
    """Two HAPPO agents (two actions each), updated one after the other with the token, learn to
    both pick action 1: the team return rises from ≈ 0.25 (random) past 0.7."""
    two = AgentSpec(obs_dim=3, act_kind="discrete", act_dim=1, n_actions=2)
    team = [_make("happo", two, seed=s, epochs=15) for s in range(2)]
    obs, cin = np.ones((E, 3), np.float32), np.ones((E, 5), np.float32)
    returns = []
    for _ in range(20):
        while not team[0].ready():
            joint = [lr.act(obs, cin) for lr in team]
            r = ((joint[0] == 1) & (joint[1] == 1)).astype(np.float32)
            for lr in team:
                lr.observe(r, np.zeros((E, 0)), np.ones(E, bool))
        token = None
        for lr in team:
            returns.append(lr.update(cin, token=token)["rollout_return_mean"])
            token = lr.token_out(token)
    assert np.mean(returns[:4]) < 0.4 and np.mean(returns[-4:]) > 0.7, np.round(returns[::4], 2)


# ------------------------------------------------------------------ learning: constrained
@pytest.mark.parametrize("algo,over", [
    ("dec-mappo-l", {}),  # the default dual: Adam, lr 0.035 from λ = 0.001 (omnisafe PPOLag)
    ("dec-mappo-l", {"lambda_optimizer": "sgd", "lambda_init": 1.0, "lambda_lr": 0.5}),
    ("mappo-l", {"lambda_optimizer": "sgd", "lambda_init": 1.0, "lambda_lr": 0.5}),
    ("mafocops", {"lambda_optimizer": "sgd", "nu_init": 1.0, "nu_lr": 0.5, "nu_max": 3.0, "focops_delta": 0.05,
                  "minibatch_size": 0, "minibatches": 1}),
    ("macpo", {"trust_region_delta": 0.02, "ls_fraction_coef": 1.0, "epochs": 3}),
])
def test_constrained_bandit_settles_at_the_limit(algo: str, over: dict) -> None:
    """The unconstrained optimum (arm 0 only) costs 1 per episode against a limit of 0.3. Each
    learner must end near the constrained optimum π = (0.3, 0.7, 0, 0): expected cost within 0.1
    of the limit and return above what the best cost-free policy earns (0.5). Primal-dual methods
    (λ, ν) circle the saddle point, so the cost is averaged over the second half of the run —
    the quantity dual ascent controls (Σ lr·(J_t − c) = λ_T − λ_0 is bounded); MACPO's trust-region
    step settles directly. γ = 0 makes the per-step and per-episode constraint values equal."""
    lrn = make_learner(algo, DISCRETE, 5, 2, E, 0, {"rollout_len": 8, "hidden": 32, "gamma": 0.0, **over},
                       cost_limits=(LIMIT,), episode_length=1)
    cost, ret = [], []
    for _ in range(100):
        m = _run(lrn, lambda a: REWARD[a], lambda a: COST[a])
        p = _probs(lrn)
        cost.append(p @ COST)
        ret.append(p @ REWARD)
    assert abs(np.mean(cost[50:]) - LIMIT) < 0.1, np.round(cost[::10], 2)
    assert np.mean(ret[50:]) > 0.55, np.round(ret[::10], 2)
    assert m["episode_cost0_est"] >= 0 and np.isfinite(m["cost_value_loss"])


# ------------------------------------------------------------------ checkpoints
def _equal(a: object, b: object) -> None:
    if isinstance(a, (dict, list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in (((a[k], b[k]) for k in a) if isinstance(a, dict) else zip(a, b)):
            _equal(x, y)
    else:
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


@pytest.mark.parametrize("algo,coef", [("dec-mappo-l", "lambda0"), ("mafocops", "nu0"), ("macpo", None),
                                       ("dpo-no-sqrt", "beta2"), ("ippo-kl", "beta2")])
def test_checkpoint_round_trip_restores_duals_and_cost_critics(tmp_path: Path, algo: str, coef: str | None) -> None:
    # each algorithm takes only the keys it reads (learner_config refuses the others)
    over = {k: v for k, v in {"lambda_lr": 0.3, "nu_lr": 0.3, "epochs": 2}.items() if k in ALGOS[algo].used_keys()}
    lrn = _make(algo, seed=1, cost_limits=(0.1,), **over)  # the random policy costs 0.25 > 0.1
    for _ in range(2):
        _run(lrn, lambda a: REWARD[a], lambda a: COST[a], np.random.default_rng(0))
    if coef is not None:
        assert lrn.coefs is not None and lrn.coefs[coef] != _make(algo, cost_limits=(0.1,), **over).coefs[coef]
    path = lrn.save_checkpoint(tmp_path, step=2)
    fresh = _make(algo, seed=7, cost_limits=(0.1,), **over)
    fresh.load_checkpoint(path)
    _equal(lrn.state_dict(), fresh.state_dict())
    if lrn.n_costs:
        for a, b in zip(lrn.cost_critics.parameters(), fresh.cost_critics.parameters()):
            assert torch.equal(a, b)
    rng = np.random.default_rng(3)
    m1 = _run(lrn, lambda a: REWARD[a], lambda a: COST[a], rng)
    m2 = _run(fresh, lambda a: REWARD[a], lambda a: COST[a], np.random.default_rng(3))
    assert m1 == m2


@pytest.mark.parametrize("algo,agent", [("iql", DISCRETE), ("iddpg", CONTINUOUS)])
def test_off_policy_contract_and_checkpoint(tmp_path: Path, algo: str, agent: AgentSpec) -> None:
    lrn = _make(algo, agent, learning_starts=32, batch_size=16, rollout_len=4, gradient_steps=2)
    obs, cin = np.ones((E, 3), np.float32), np.ones((E, 5), np.float32)
    no_cost = np.zeros((E, 0))
    a = lrn.act(obs, cin)
    assert a.shape == ((E,) if agent is DISCRETE else (E, 1))
    pytest.raises(RuntimeError, lrn.act, obs, cin)  # act twice without observe
    lrn.observe(np.zeros(E), no_cost, np.zeros(E, bool))
    pytest.raises(RuntimeError, lrn.observe, np.zeros(E), no_cost, np.zeros(E, bool))
    assert not lrn.ready()
    pytest.raises(RuntimeError, lrn.update, cin)
    steps = 1
    while not lrn.ready():
        lrn.act(obs, cin)
        lrn.observe(np.ones(E), no_cost, np.zeros(E, bool))
        steps += 1
    assert len(lrn.replay) >= 32 and steps * E >= 32 + E  # the last transition waits for its successor
    pytest.raises(ValueError, lrn.update, cin, np.ones(4 * E, np.float32))
    m = lrn.update(cin)
    assert m["updates"] == 1.0 and not lrn.ready() and np.isfinite(m["value_loss"])
    pytest.raises(RuntimeError, lrn.token_out)
    path = lrn.save_checkpoint(tmp_path, step=1)
    assert Learner.latest_checkpoint(tmp_path) == path
    fresh = _make(algo, agent, seed=9, learning_starts=32, batch_size=16, rollout_len=4, gradient_steps=2)
    fresh.load_checkpoint(path)
    _equal(lrn.state_dict(), fresh.state_dict())
    np.testing.assert_array_equal(lrn.act(obs, cin), fresh.act(obs, cin))
