"""Tests for agentd.learner: loss formulas by hand, exact KLs, the β rule, learning on bandits,
exact checkpoint resume, seeding, and make_learner's validation."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Categorical as TCategorical, Independent, Normal, kl_divergence

from agentd.learner import ALGOS, DPO, IPPO, LearnerConfig, algo_names, make_learner
from agentd.learner.adam import Adam
from agentd.learner.base import Learner
from agentd.learner.buffer import gae
from agentd.learner.dists import Categorical, DiagGaussian
from agentd.learner.nets import RunningNorm, update_and_normalize
from envserver.tasks.base import AgentSpec

torch.set_num_threads(1)

DISCRETE = AgentSpec(obs_dim=3, act_kind="discrete", act_dim=1, n_actions=4)
CONTINUOUS = AgentSpec(obs_dim=3, act_kind="continuous", act_dim=1, act_low=-1.0, act_high=1.0)
E = 8
# One-state bandits: 4 arms of which only arm 2 pays 1; a 1-D action paid −(a − 0.5)².
REWARD = {"discrete": lambda a: (a == 2).astype(np.float32), "continuous": lambda a: -((a[:, 0] - 0.5) ** 2)}


def _learner(algo: str, agent: AgentSpec, seed: int = 0, **over: object) -> Learner:
    return make_learner(algo, agent, critic_dim=5, n_agents=2, n_envs=E, seed=seed,
                        overrides={"rollout_len": 16, **over})


def _rollout(learner: Learner, reward_fn, rng: np.random.Generator | None = None) -> dict[str, float]:
    """Fill the buffer on a one-state bandit (every step is a one-step episode) and update."""
    shapes = (E, learner.agent.obs_dim), (E, learner.critic_dim)
    obs, cin = (np.ones(sh, np.float32) for sh in shapes)
    while not learner.ready():
        if rng is not None:  # varying inputs, so the normalisers and networks see real data
            obs, cin = (rng.normal(size=sh).astype(np.float32) for sh in shapes)
        learner.observe(reward_fn(learner.act(obs, cin)), np.zeros((E, 1), np.float32), np.ones(E, bool))
    return learner.update(cin)


def _policy_params(learner: Learner) -> torch.Tensor:
    obs = np.ones((1, learner.agent.obs_dim), np.float32)
    with torch.no_grad():
        return learner.actor(torch.from_numpy(learner.obs_norm.normalize(obs)))[0]


def _state_equal(a: object, b: object) -> None:
    """Exact equality of nested dicts / lists / tensors / scalars (state_dicts)."""
    if isinstance(a, (dict, list, tuple)):
        assert type(a) is type(b) and len(a) == len(b) and (not isinstance(a, dict) or set(a) == set(b))
        for x, y in (((a[k], b[k]) for k in a) if isinstance(a, dict) else zip(a, b)):
            _state_equal(x, y)
    else:
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


# ------------------------------------------------------------------ losses by hand
def test_ippo_clip_loss_hand_computed() -> None:
    ippo = _learner("ippo", DISCRETE)
    ratio = torch.tensor([0.5, 1.1, 1.5], dtype=torch.float64)
    adv = torch.tensor([-1.0, -2.0, 1.0], dtype=torch.float64)
    # min(r·A, clip(r, 0.8, 1.2)·A): min(-0.5, -0.8) = -0.8; min(-2.2, -2.2) = -2.2; min(1.5, 1.2) = 1.2
    expected = -(-0.8 - 2.2 + 1.2) / 3  # = 0.6
    loss, _ = ippo.policy_loss(ratio, ratio.log(), torch.zeros(3, dtype=torch.float64), adv,
                               torch.zeros(3, dtype=torch.float64))
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_dpo_loss_hand_computed() -> None:
    dpo = _learner("dpo", DISCRETE)  # n_agents = 2
    assert dpo.coefs is not None
    dpo.coefs.values.update(beta1=0.5, beta2=0.25)
    ratio = torch.tensor([1.2, 0.9, 1.0], dtype=torch.float64)
    adv = torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64)
    kl = torch.tensor([0.04, 0.09, 0.0], dtype=torch.float64)
    # (1/N)·r·A − β1·sqrt(KL + 1e-8) − β2·KL, per sample:
    t1 = 0.5 * 1.2 * 1.0 - 0.5 * math.sqrt(0.04 + 1e-8) - 0.25 * 0.04  # ≈ 0.49
    t2 = 0.5 * 0.9 * -1.0 - 0.5 * math.sqrt(0.09 + 1e-8) - 0.25 * 0.09  # ≈ -0.6225
    t3 = 0.5 * 1.0 * 2.0 - 0.5 * math.sqrt(0.0 + 1e-8) - 0.0  # = 0.99995
    expected = -(t1 + t2 + t3) / 3
    assert expected == pytest.approx(-0.28915, abs=1e-6)
    loss, extra = dpo.policy_loss(ratio, ratio.log(), torch.zeros(3, dtype=torch.float64), adv, kl)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert extra["kl_penalty"] == pytest.approx(kl.mean().item())


@pytest.mark.parametrize("algo, n_agents, weight", [
    ("dpo", 6, 0.01 / 6), ("dpo-no-kl", 6, 0.01 / 6), ("dpo-no-sqrt", 3, 0.01 / 3),  # the 1/N share
    ("ippo-kl", 6, 0.01), ("ippo", 6, 0.01),  # independent surrogates: c_ent itself
])
def test_entropy_bonus_takes_the_surrogates_share(algo: str, n_agents: int, weight: float) -> None:
    """DPO's bonus is c_ent·H/N like its (1/N)·r·Â (learner-audit.md finding 2): the actor step's
    gradient equals the gradient of policy_loss − weight·mean H, with weight written out by hand."""
    lrn = make_learner(algo, DISCRETE, critic_dim=5, n_agents=n_agents, n_envs=E, seed=0,
                       overrides={"rollout_len": 4, "hidden": 8})
    assert lrn.entropy_weight == pytest.approx(weight, rel=1e-12)
    if lrn.coefs is not None and "beta1" in lrn.coefs.values:  # √KL's slope at KL = 0 amplifies float noise
        lrn.coefs.values["beta1"] = 0.0
    rng = np.random.default_rng(0)
    obs, cin = rng.normal(size=(E, 3)).astype(np.float32), rng.normal(size=(E, 5)).astype(np.float32)
    while not lrn.ready():
        lrn.act(obs, cin)
        lrn.observe(rng.normal(size=E), np.zeros((E, 0)), np.zeros(E, bool))
    batch = lrn._prepare(cin, None)
    params = lrn.actor(batch.obs)
    logp = lrn.dist.log_prob(params, batch.act)
    ratio = torch.exp(logp - batch.logp_old)
    pl, _ = lrn.policy_loss(ratio, logp, batch.logp_old, batch.adv, lrn.kl_per_state(batch.params_old, params),
                            batch.cost_adv)
    expected = torch.autograd.grad(pl - weight * lrn.dist.entropy(params).mean(), list(lrn.actor.parameters()))
    lrn.actor_opt.step = lambda: None  # keep the gradient the actor step computed, skip the update
    lrn.cfg.max_grad_norm = 1e9
    lrn._actor_step(batch)
    for g, p in zip(expected, lrn.actor.parameters()):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)


def test_categorical_formulas_match_torch_distributions() -> None:
    g = torch.Generator().manual_seed(1)
    old = torch.log_softmax(torch.randn(64, 5, generator=g), -1)
    new = torch.log_softmax(torch.randn(64, 5, generator=g), -1)
    ref = kl_divergence(TCategorical(logits=old), TCategorical(logits=new))
    torch.testing.assert_close(Categorical.kl(old, new), ref, rtol=1e-5, atol=1e-6)
    a = torch.randint(0, 5, (64,), generator=g)
    torch.testing.assert_close(Categorical.log_prob(new, a), TCategorical(logits=new).log_prob(a))
    torch.testing.assert_close(Categorical.entropy(new), TCategorical(logits=new).entropy())
    assert Categorical.kl(old, old).abs().max() < 1e-6


def test_gaussian_formulas_match_torch_distributions() -> None:
    g = torch.Generator().manual_seed(2)
    mu0, mu1 = torch.randn(64, 3, generator=g), torch.randn(64, 3, generator=g)
    ls0, ls1 = 0.5 * torch.randn(64, 3, generator=g), 0.5 * torch.randn(64, 3, generator=g)
    old, new = torch.cat([mu0, ls0], -1), torch.cat([mu1, ls1], -1)
    p, q = Independent(Normal(mu0, ls0.exp()), 1), Independent(Normal(mu1, ls1.exp()), 1)
    torch.testing.assert_close(DiagGaussian.kl(old, new), kl_divergence(p, q), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(DiagGaussian.entropy(new), q.entropy(), rtol=1e-5, atol=1e-5)
    action, logp = (torch.from_numpy(v) for v in DiagGaussian.sample(new.numpy(), torch.Generator().manual_seed(3)))
    torch.testing.assert_close(logp, q.log_prob(action), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(DiagGaussian.log_prob(new, action), q.log_prob(action), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algo,agent", [("dpo", CONTINUOUS), ("ippo", DISCRETE), ("macpo", CONTINUOUS)])
def test_acting_network_in_numpy_is_the_trained_one(tmp_path: Path, algo: str, agent: AgentSpec) -> None:
    """Acting runs the actor in numpy on views of its weights (nets.MLP.infer): it must compute the torch
    actor's function at every moment — fresh, after updates change the weights in place (MACPO's line
    search included), and after a checkpoint of another learner is loaded into one that has acted."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(E, agent.obs_dim)).astype(np.float32)

    def same(learner: Learner) -> None:
        with torch.no_grad():
            want = learner.actor(torch.from_numpy(x))
        torch.testing.assert_close(torch.from_numpy(learner.actor.infer(x.copy())), want, rtol=1e-5, atol=1e-6)

    learner = _learner(algo, agent, seed=1)
    same(learner)
    before = learner.actor.infer(x.copy())
    _rollout(learner, REWARD[agent.act_kind], rng)
    assert not np.array_equal(learner.actor.infer(x.copy()), before)  # the update was seen
    same(learner)
    path = learner.save_checkpoint(tmp_path, step=1)
    other = _learner(algo, agent, seed=7)
    _rollout(other, REWARD[agent.act_kind], rng)  # has acted: its views exist
    other.load_checkpoint(path)
    same(other)
    assert np.array_equal(other.actor.infer(x.copy()), learner.actor.infer(x.copy()))


# ------------------------------------------------------------------ β rule (dpo.md eq. 21)
def test_beta_update_rule() -> None:
    dpo = _learner("dpo", DISCRETE)  # d_target 0.1, δ 1.5, ω 2, β 0.01
    assert dpo.after_update(0.1 * 1.5 + 1e-3) == {"beta1": 0.02, "beta2": 0.02}  # above → ×ω
    for inside in (0.1, 0.14, 0.07):  # inside [d/δ, d·δ] → kept
        assert dpo.after_update(inside) == {"beta1": 0.02, "beta2": 0.02}
    assert dpo.after_update(0.1 / 1.5 - 1e-3) == {"beta1": 0.01, "beta2": 0.01}  # below → /ω
    assert dpo.after_update(0.0) == {"beta1": 0.005, "beta2": 0.005}
    for _ in range(100):  # the floor keeps β recoverable after long KL ≈ 0 stretches
        dpo.after_update(0.0)
    assert dpo.coefs is not None and dpo.coefs["beta1"] == dpo.cfg.beta_min > 0


# ------------------------------------------------------------------ learning
@pytest.mark.parametrize("algo", ["ippo", "dpo"])
@pytest.mark.parametrize("agent", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
def test_learns_bandit(algo: str, agent: AgentSpec) -> None:
    """Discrete: > 0.8 on the paying arm; continuous: the mean moves from ≈0 to within 0.2 of 0.5."""
    learner, discrete = _learner(algo, agent), agent.act_kind == "discrete"

    def solved() -> bool:
        p = _policy_params(learner)
        return p.exp()[2].item() > 0.8 if discrete else abs(p[0].item() - 0.5) < 0.2

    assert not solved()
    for _ in range(30):
        m = _rollout(learner, REWARD[agent.act_kind])
        if solved():
            break
    assert solved() and all(math.isfinite(v) for v in m.values())
    keys = {"policy_loss", "value_loss", "entropy", "kl", "clip_frac", "grad_norm", "rollout_return_mean",
            "rollout_cost0_mean"} | ({"beta1", "beta2"} if algo == "dpo" else set())
    assert keys <= set(m)


# ------------------------------------------------------------------ acting contract
def test_continuous_actions_clipped_but_buffer_keeps_raw_sample() -> None:
    narrow = AgentSpec(obs_dim=3, act_kind="continuous", act_dim=2, act_low=-0.05, act_high=0.05)
    learner = _learner("ippo", narrow)
    a = learner.act(np.zeros((E, 3), np.float32), np.zeros((E, 5), np.float32))
    assert a.dtype == np.float32 and a.shape == (E, 2)
    assert a.min() >= -0.05 and a.max() <= 0.05
    assert np.abs(learner.buffer.actions[0]).max() > 0.05  # σ ≈ 0.6: some raw samples lie outside


def test_discrete_actions_and_protocol_errors() -> None:
    learner = _learner("ippo", DISCRETE)
    obs, cin, no_cost = np.zeros((E, 3), np.float32), np.zeros((E, 5), np.float32), np.zeros((E, 0))
    a = learner.act(obs, cin)
    assert a.dtype == np.int64 and a.shape == (E,) and set(a.tolist()) <= {0, 1, 2, 3}
    pytest.raises(RuntimeError, learner.act, obs, cin)  # act twice without observe
    learner.observe(np.zeros(E), no_cost, np.zeros(E, bool))
    pytest.raises(RuntimeError, learner.observe, np.zeros(E), no_cost, np.zeros(E, bool))
    pytest.raises(RuntimeError, learner.update, cin)  # buffer not full
    pytest.raises(ValueError, learner.act, np.zeros((E + 1, 3), np.float32), cin)


def test_normalisers_merge_exactly_and_update_only_when_acting() -> None:
    rng = np.random.default_rng(0)
    obs = rng.normal(2.0, 3.0, size=(16 * E, 3)).astype(np.float32)
    norm = RunningNorm(3)
    for chunk in (obs[:1], obs[1:40], obs[40:41], obs[41:]):  # parallel merge, incl. batch-1 path
        norm.update(chunk)
    np.testing.assert_allclose(norm.mean, obs.mean(0, dtype=np.float64), rtol=1e-5)
    np.testing.assert_allclose(norm.var, obs.var(0, dtype=np.float64), rtol=1e-4)
    assert np.abs(norm.normalize(np.full((1, 3), 1e6))).max() == 10.0
    learner = _learner("dpo", CONTINUOUS)
    for t in range(16):
        learner.act(obs[t * E:(t + 1) * E], np.ones((E, 5), np.float32))
        learner.observe(np.zeros(E), np.zeros((E, 0)), np.zeros(E, bool))
    np.testing.assert_allclose(learner.obs_norm.mean, norm.mean, rtol=1e-5)
    before = learner.obs_norm.state_dict()
    learner.update(np.full((E, 5), 100.0, np.float32))
    _state_equal(before, learner.obs_norm.state_dict())


def test_normalisers_updated_together_are_bit_identical_to_one_by_one() -> None:
    """The acting step merges the observation and critic normalisers in one set of numpy calls
    (nets.update_and_normalize): statistics and outputs must be exactly those of separate calls."""
    rng = np.random.default_rng(1)
    apart, together = (RunningNorm(3), RunningNorm(7)), (RunningNorm(3), RunningNorm(7))
    for b in (1, 8, 1, 5, 32):  # the batch-1 path too
        xs = (rng.normal(4.0, 9.0, size=(b, 3)).astype(np.float32), rng.normal(-1.0, 0.1, size=(b, 7)).astype(np.float32))
        for n, x in zip(apart, xs):
            n.update(x)
        want = [n.normalize(x) for n, x in zip(apart, xs)]
        got = update_and_normalize(together, xs)
        for w, g in zip(want, got):
            assert np.array_equal(w, g)
        for a, t in zip(apart, together):
            assert a.count == t.count and np.array_equal(a.mean, t.mean) and np.array_equal(a.var, t.var)
            _state_equal(a.state_dict(), t.state_dict())


def test_gae_hand_computed() -> None:
    r = np.array([[1.0], [2.0], [3.0]], np.float32)
    v = np.array([[0.5], [1.0], [1.5]], np.float32)
    d = np.array([[False], [True], [False]])
    adv, ret = gae(r, v, d, np.array([2.0], np.float32), gamma=0.9, lam=0.5)
    a2 = 3.0 + 0.9 * 2.0 - 1.5  # bootstrap from V(last)
    a1 = 2.0 - 1.0  # episode ended: no bootstrap, no carry
    a0 = (1.0 + 0.9 * 1.0 - 0.5) + 0.9 * 0.5 * a1
    np.testing.assert_allclose(adv[:, 0], [a0, a1, a2], rtol=1e-6)
    np.testing.assert_allclose(ret, adv + v)



def test_gae_columns_are_each_the_single_column_gae() -> None:
    """_prepare runs reward and costs through one gae call; each column must be bitwise its own."""
    rng = np.random.default_rng(1)
    r, v = rng.standard_normal((2, 32, 5, 3)).astype(np.float32)
    d, last = rng.random((32, 5)) < 0.1, rng.standard_normal((5, 3)).astype(np.float32)
    adv, ret = gae(r, v, d, last, gamma=0.99, lam=0.95)
    for k in range(3):
        a1, r1 = gae(r[..., k], v[..., k], d, last[:, k], gamma=0.99, lam=0.95)
        assert np.array_equal(adv[..., k], a1) and np.array_equal(ret[..., k], r1)


# ------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("algo,agent", [("dpo", CONTINUOUS), ("ippo", DISCRETE)])
def test_checkpoint_round_trip_resumes_exactly(tmp_path: Path, algo: str, agent: AgentSpec) -> None:
    rng = np.random.default_rng(0)
    reward = REWARD[agent.act_kind]
    learner = _learner(algo, agent, seed=1)
    _rollout(learner, reward, rng), _rollout(learner, reward, rng)
    path = learner.save_checkpoint(tmp_path, step=2)
    assert path.name == "ckpt-000000000002.pt" and Learner.latest_checkpoint(tmp_path) == path

    fresh = _learner(algo, agent, seed=99)
    fresh.load_checkpoint(path)
    _state_equal(learner.state_dict(), fresh.state_dict())  # nets, Adam, norms, β, RNGs, counters
    # Same future: same actions for the same inputs, and the same next update.
    assert _rollout(learner, reward, np.random.default_rng(5)) == _rollout(fresh, reward, np.random.default_rng(5))
    obs, cin = np.ones((E, 3), np.float32), np.ones((E, 5), np.float32)
    np.testing.assert_array_equal(learner.act(obs, cin), fresh.act(obs, cin))
    with pytest.raises(ValueError, match="algo"):
        make_learner("dpo" if algo == "ippo" else "ippo", agent, 5, 2, E, 0,
                     {"rollout_len": 16}).load_checkpoint(path)


def test_checkpoint_retention_and_corrupt_newest(tmp_path: Path) -> None:
    learner = _learner("dpo", DISCRETE, keep_checkpoints=3)
    for step in range(1, 6):
        learner.save_checkpoint(tmp_path, step)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"ckpt-{s:012d}.pt" for s in (3, 4, 5)]  # no .tmp left, oldest pruned
    newest = tmp_path / "ckpt-000000000005.pt"
    newest.write_bytes(newest.read_bytes()[:2000])  # truncated, as after a crash mid-copy
    assert Learner.latest_checkpoint(tmp_path) == tmp_path / "ckpt-000000000004.pt"
    (tmp_path / "ckpt-000000000009.pt").write_bytes(b"not a checkpoint")
    assert Learner.latest_checkpoint(tmp_path) == tmp_path / "ckpt-000000000004.pt"
    assert Learner.latest_checkpoint(tmp_path / "missing") is None
    with pytest.raises(ValueError):
        learner.load_checkpoint(newest)


# ------------------------------------------------------------------ optimiser
def test_adam_matches_torch_optim() -> None:
    torch.manual_seed(0)
    net_a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    net_b = copy.deepcopy(net_a)
    ours = Adam(net_a.parameters(), lr=1e-2, eps=1e-5)
    ref = torch.optim.Adam(net_b.parameters(), lr=1e-2, eps=1e-5, foreach=False)
    x = torch.randn(16, 4)
    for _ in range(20):
        for net, opt in ((net_a, ours), (net_b, ref)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for pa, pb in zip(net_a.parameters(), net_b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)



def test_adam_clip_is_torchs_clip_grad_norm() -> None:
    """Adam.clip_grad_norm_ replaces torch.nn.utils.clip_grad_norm_ on the update path: same norm,
    same clipped gradients, bit for bit, both when it clips and when it does not."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    ours = Adam(net.parameters(), lr=1e-2)
    for scale, max_norm in ((100.0, 0.5), (1e-3, 10.0)):
        net.zero_grad()
        (scale * net(torch.randn(16, 4)).square().mean()).backward()
        grads = [p.grad.clone() for p in net.parameters()]
        ref_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)
        ref = [p.grad.clone() for p in net.parameters()]
        for p, g in zip(net.parameters(), grads):
            p.grad = g
        assert torch.equal(ours.clip_grad_norm_(max_norm), ref_norm)
        assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), ref))

def test_learner_never_imports_dynamo() -> None:
    """torch.optim's first use imports torch._dynamo + sympy (~1.2 s, ~70 MiB per agent)."""
    code = (
        "import sys, numpy as np, torch; from agentd.learner import make_learner\n"
        "from envserver.tasks.base import AgentSpec; torch.set_num_threads(1)\n"
        "L = make_learner('dpo', AgentSpec(3, 'continuous', 1), 5, 2, 2, 0, {'rollout_len': 4, 'epochs': 1})\n"
        "z = np.zeros((2, 3), np.float32), np.zeros((2, 5), np.float32)\n"
        "while not L.ready(): L.act(*z); L.observe(np.zeros(2), np.zeros((2, 0)), np.zeros(2, bool))\n"
        "L.update(z[1]); L.load_state_dict(L.state_dict())\n"
        "print(any(m.startswith('torch._dynamo') for m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


# ------------------------------------------------------------------ seeding and construction
@pytest.mark.parametrize("agent", [DISCRETE, CONTINUOUS])
def test_same_seed_same_actions(agent: AgentSpec) -> None:
    learners = [_learner("dpo", agent, seed=s) for s in (7, 7, 8)]
    rng = np.random.default_rng(0)
    runs: list[list[np.ndarray]] = [[], [], []]
    for _ in range(10):
        obs, cin = rng.normal(size=(E, 3)).astype(np.float32), rng.normal(size=(E, 5)).astype(np.float32)
        for lr, run in zip(learners, runs):
            run.append(lr.act(obs, cin))
            lr.observe(np.zeros(E), np.zeros((E, 0)), np.zeros(E, bool))
    assert np.array_equal(np.stack(runs[0]), np.stack(runs[1]))
    assert not np.array_equal(np.stack(runs[0]), np.stack(runs[2]))


def test_make_learner_validation() -> None:
    assert ALGOS["ippo"] is IPPO and ALGOS["dpo"] is DPO and algo_names() == sorted(ALGOS)
    with pytest.raises(ValueError, match="'sac'.*dpo, .*ippo"):
        make_learner("sac", DISCRETE, 5, 2, E, 0)
    with pytest.raises(ValueError, match="'epoch'"):
        make_learner("ippo", DISCRETE, 5, 2, E, 0, {"epoch": 3})
    with pytest.raises(ValueError, match="epochs"):
        make_learner("ippo", DISCRETE, 5, 2, E, 0, {"epochs": 2.5})
    learner = make_learner("dpo", DISCRETE, 5, 2, E, 0,
                           {"epochs": "3", "normalize_obs": "false", "d_target": "0.01", "rollout_len": 4.0})
    assert learner.cfg == LearnerConfig(epochs=3, normalize_obs=False, d_target=0.01, rollout_len=4)
    assert isinstance(learner.cfg.epochs, int) and learner.cfg.normalize_obs is False
    assert LearnerConfig().epochs == 15 and LearnerConfig().beta_init == 0.01
