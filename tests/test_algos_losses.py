"""Loss formulas and update rules of the algorithms beyond IPPO/DPO, each against a hand-computed
value on a tiny batch: DEC-MAPPO-L's Lagrangian clip surrogate, FOCOPS (with its KL indicator, and
its gradient against mafocops.md eq. 11 by finite differences), HAPPO's token-weighted clip, the
DPO ablations and IPPO-KL; the λ / ν / β rules; MACPO's conjugate gradients, Fisher-vector
products, trust-region step and recovery; and the sequential token."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call, jacrev
from torch.nn.utils import parameters_to_vector

from agentd.learner import make_learner
from agentd.learner.base import TOKEN_MAX, Learner, standardise
from agentd.learner.buffer import EpisodeCosts, gae
from agentd.learner.coef import AdaptiveCoef, Lagrange
from agentd.learner.dists import Categorical
from agentd.learner.macpo import conjugate_gradient, cpo_direction
from envserver.tasks.base import AgentSpec

torch.set_num_threads(1)

DISCRETE = AgentSpec(obs_dim=3, act_kind="discrete", act_dim=1, n_actions=4)
E = 8
T64 = torch.float64


def _learner(algo: str, cost_limits: tuple[float, ...] = (), seed: int = 0, **over: object) -> Learner:
    return make_learner(algo, DISCRETE, critic_dim=5, n_agents=2, n_envs=E, seed=seed,
                        overrides={"rollout_len": 16, "hidden": 16, **over}, cost_limits=cost_limits,
                        episode_length=1)


def _t(*xs: object) -> torch.Tensor:
    return torch.tensor(xs, dtype=T64)


# One-state bandit with a cost: arm 0 pays 1 and costs 1, arm 1 pays 0.5, arms 2-3 pay nothing.
REWARD = np.array([1.0, 0.5, 0.0, 0.0], np.float32)
COST = np.array([1.0, 0.0, 0.0, 0.0], np.float32)


def _fill(learner: Learner, rng: np.random.Generator | None = None) -> np.ndarray:
    """Fill the rollout on the cost bandit (one-step episodes); return the last critic input."""
    obs, cin = np.ones((E, 3), np.float32), np.ones((E, 5), np.float32)
    while not learner.ready():
        if rng is not None:
            obs, cin = rng.normal(size=(E, 3)).astype(np.float32), rng.normal(size=(E, 5)).astype(np.float32)
        a = learner.act(obs, cin)
        learner.observe(REWARD[a], COST[a][:, None], np.ones(E, bool))
    return cin


# ------------------------------------------------------------------ DEC-MAPPO-L (eq. 21-22)
RATIO, ADV = (0.5, 1.1, 1.5), (-1.0, -2.0, 1.0)
COST_ADV = [[1.0, 0.0], [0.0, -1.0], [2.0, 0.5]]


@pytest.mark.parametrize("form, combined", [
    # λ = (0.5, 2), Σλ = 2.5, A_u rows: (1, 0), (0, −1), (2, 0.5)
    # normalised: (A − Σλ_u A_u)/(1 + Σλ) = (−1 − 0.5)/3.5, (−2 + 2)/3.5, (1 − 1 − 1)/3.5
    ("normalised", (-1.5 / 3.5, 0.0, -1.0 / 3.5)),
    ("plain", (-1.5, 0.0, -1.0)),  # SafePO: A − Σλ_u A_u
    # eq21: A − Σλ_u (A_u + d_u) with d = (0.1, −0.2): −1 − (0.55 − 0.4), −2 − (0.05 − 2.4), 1 − (1.05 + 0.6)
    ("eq21", (-1.15, 0.35, -0.65)),
])
def test_dec_mappo_l_surrogate_hand_computed(form: str, combined: tuple[float, ...]) -> None:
    lrn = _learner("dec-mappo-l", cost_limits=(1.0, 2.0), lagrangian_form=form)
    assert lrn.coefs is not None
    lrn.coefs.values.update(lambda0=0.5, lambda1=2.0)
    lrn._d = torch.tensor([0.1, -0.2], dtype=T64)
    ratio, adv, cost_adv = _t(*RATIO), _t(*ADV), torch.tensor(COST_ADV, dtype=T64)
    np.testing.assert_allclose(lrn.lagrangian_advantage(adv, cost_adv).numpy(), combined, atol=1e-12)
    # PPO-clip on those advantages: −mean min(r·A, clip(r, 0.8, 1.2)·A)
    expected = -np.mean([min(r * a, min(max(r, 0.8), 1.2) * a) for r, a in zip(RATIO, combined)])
    loss, _ = lrn.policy_loss(ratio, ratio.log(), torch.zeros(3, dtype=T64), adv, torch.zeros(3, dtype=T64), cost_adv)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_normalised_lagrangian_hand_value() -> None:
    """One number written out: λ = (0.5, 2), sample 0: r = 0.5, A = −1, A_u = (1, 0) → A^(λ) = −1.5/3.5,
    min(0.5·A, 0.8·A) = 0.8·(−0.428571) = −0.342857."""
    lrn = _learner("dec-mappo-l", cost_limits=(1.0, 2.0))
    assert lrn.cfg.lagrangian_form == "normalised" and lrn.coefs is not None
    lrn.coefs.values.update(lambda0=0.5, lambda1=2.0)
    loss, _ = lrn.policy_loss(_t(0.5), _t(0.5).log(), _t(0.0), _t(-1.0), _t(0.0), torch.tensor([[1.0, 0.0]], dtype=T64))
    assert loss.item() == pytest.approx(0.342857, abs=1e-6)


def test_dec_mappo_l_lambda_sgd_rule_and_cost_gap() -> None:
    """SGD: λ_u ← max(0, λ_u + lr·(J_u − c_u)), applied before the policy epochs; d_u = (1−γ)(J_u − c_u)."""
    lrn = _learner("dec-mappo-l", cost_limits=(1.0, 2.0), lambda_optimizer="sgd", lambda_init=0.3, lambda_lr=0.1,
                   gamma=0.9)
    lrn.ep_cost_est = np.array([3.0, 1.0])  # violated by 2, slack by 1
    np.testing.assert_allclose(lrn.cost_gaps(), [2.0, -1.0])
    out = lrn.before_update(None)  # type: ignore[arg-type]
    assert out["lambda0"] == pytest.approx(0.3 + 0.1 * 2.0) and out["lambda1"] == pytest.approx(0.2)
    assert out["cost_gap0"] == pytest.approx(2.0) and out["cost_gap1"] == pytest.approx(-1.0)
    np.testing.assert_allclose(lrn._d.numpy(), [0.2, -0.1], rtol=1e-6)  # eq. 21's d_u
    for _ in range(3):
        out = lrn.before_update(None)  # type: ignore[arg-type]
    assert out["lambda1"] == 0.0  # projected at 0


def test_lagrange_adam_is_omnisafes_procedure() -> None:
    """coef.Lagrange with adam equals omnisafe common/lagrange.py: torch.optim.Adam on the loss
    −λ·(J − c), then λ clamped to [0, upper] — step for step, through rises, falls and both bounds."""
    gaps = [30.0, 30.0, 12.0, -5.0, -40.0, -40.0, -40.0, 3.0, 60.0, 60.0, 60.0, 60.0]
    ours = Lagrange(["lambda0"], init=0.001, lr=0.035, optimizer="adam", upper=0.12)
    lam = torch.nn.Parameter(torch.tensor(0.001, dtype=T64))
    opt = torch.optim.Adam([lam], lr=0.035)
    for gap in gaps:
        opt.zero_grad()
        (-lam * gap).backward()
        opt.step()
        lam.data.clamp_(0.0, 0.12)
        assert ours.step([gap])["lambda0"] == pytest.approx(lam.item(), abs=1e-12)
    assert ours.t == len(gaps)
    resumed = Lagrange(["lambda0"], init=0.1, lr=0.035, optimizer="adam", upper=0.12)
    resumed.load_state_dict(ours.state_dict())
    assert (resumed.values, resumed.m, resumed.v, resumed.t) == (ours.values, ours.m, ours.v, ours.t)
    resumed.load_state_dict({"lambda0": 0.05})  # a checkpoint from before the optimiser: fresh moments
    assert resumed["lambda0"] == 0.05 and resumed.t == 0


def test_default_lambda_moves_per_update_and_tracks_the_constraint() -> None:
    """With the defaults (Adam, lr 0.035, init 0.001: omnisafe PPOLag), λ rises by ~lr per update
    while J > c whatever the gap's size, and falls back once J < c (learner-audit.md Q2: SafePO's
    1e-5 would move it 3.5e-6 per update)."""
    lrn = _learner("dec-mappo-l", cost_limits=(25.0,))
    assert (lrn.cfg.lambda_optimizer, lrn.cfg.lambda_lr, lrn.cfg.lambda_init) == ("adam", 0.035, 0.001)
    lams = []
    for j in [60.0] * 30 + [0.0] * 40:  # violated by 35 for 30 updates, then slack by 25
        lrn.ep_cost_est = np.array([j])
        lams.append(lrn.before_update(None)["lambda0"])  # type: ignore[arg-type]
    assert lams[0] == pytest.approx(0.001 + 0.035, rel=1e-6)
    assert np.all(np.diff(lams[:30]) > 0) and lams[29] > 0.9  # +~0.035 per update while violated
    peak = int(np.argmax(lams))  # Adam's momentum carries λ a few updates past the switch, then it falls
    assert 30 <= peak < 40 and np.all(np.diff(lams[peak:]) < 0) and lams[-1] < lams[peak] - 0.5


def test_safepo_preset_is_the_nearly_constant_lambda() -> None:
    lrn = _learner("dec-mappo-l", cost_limits=(5.0,), preset="safepo")
    c = lrn.cfg
    assert (c.lambda_optimizer, c.lambda_lr, c.lambda_init, c.lagrangian_form) == ("sgd", 5e-7, 0.78, "plain")
    lrn.ep_cost_est = np.array([40.0])
    for _ in range(31):  # the κ-sweep's 31 updates of issue 12: λ 0.78 → 0.7801
        lam = lrn.before_update(None)["lambda0"]  # type: ignore[arg-type]
    assert lam == pytest.approx(0.78 + 31 * 5e-7 * 35, rel=1e-9) and lam < 0.7806
    assert _learner("dec-mappo-l", cost_limits=(5.0,), preset="safepo", lambda_lr=0.1).cfg.lambda_lr == 0.1
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        _learner("dec-mappo-l", cost_limits=(5.0,), preset="nope")


# ------------------------------------------------------------------ MAFOCOPS (eq. 10-11)
def test_focops_loss_with_kl_indicator_hand_computed() -> None:
    lrn = _learner("mafocops", cost_limits=(1.0,), focops_lam=2.0, focops_delta=0.05)
    assert lrn.coefs is not None
    lrn.coefs.values["nu0"] = 0.5
    ratio, adv = _t(1.2, 0.9, 1.0), _t(1.0, -1.0, 2.0)
    cost_adv = torch.tensor([[0.5], [-1.0], [1.0]], dtype=T64)
    kl = _t(0.01, 0.1, 0.0)  # state 1 exceeds δ = 0.05: it contributes nothing
    # target = A − ν·A_c = [0.75, −0.5, 1.5];  ℓ = (KL − r·target/λ)·I
    expected = ((0.01 - 1.2 * 0.75 / 2.0) + 0.0 + (0.0 - 1.0 * 1.5 / 2.0)) / 3
    loss, extra = lrn.policy_loss(ratio, ratio.log(), torch.zeros(3, dtype=T64), adv, kl, cost_adv)
    assert loss.item() == pytest.approx(expected, abs=1e-12) and expected == pytest.approx(-0.396667, abs=1e-6)
    assert extra["accepted_frac"] == pytest.approx(2 / 3)


def test_focops_gradient_matches_eq_11_by_finite_differences() -> None:
    """Tabular softmax policy θ = logits z[s]; the loss's finite-difference gradient equals eq. 11,
    (1/N) Σ_j I(s_j) [∇KL(π_θ‖π_θk)[s_j] − ∇π_θ(a_j|s_j)/(λ π_θk(a_j|s_j)) (η_j − ν A_j)]."""
    lam, nu = 1.7, 0.6
    lrn = _learner("mafocops", cost_limits=(1.0,), focops_lam=lam)
    assert lrn.coefs is not None
    lrn.coefs.values["nu0"] = nu
    g = torch.Generator().manual_seed(0)
    n_states, k, n = 3, 4, 12
    z_old = torch.randn(n_states, k, generator=g, dtype=T64)
    z = z_old + 0.4 * torch.randn(n_states, k, generator=g, dtype=T64)
    states = torch.arange(n) % n_states
    actions = torch.randint(0, k, (n,), generator=g)
    eta, a_c = torch.randn(n, generator=g, dtype=T64), torch.randn(n, 1, generator=g, dtype=T64)

    def loss_of(zz: torch.Tensor) -> float:
        new, old = torch.log_softmax(zz, -1)[states], torch.log_softmax(z_old, -1)[states]
        logp, logp_old = Categorical.log_prob(new, actions), Categorical.log_prob(old, actions)
        kl = lrn.kl_per_state(old, new)  # KL(π_θ ‖ π_θk)
        return lrn.policy_loss(torch.exp(logp - logp_old), logp, logp_old, eta, kl, a_c)[0].item()

    # δ between the states' KLs, so the indicator rejects some states but not all
    p, q = torch.softmax(z, -1), torch.softmax(z_old, -1)
    kl_s = (p * (p.log() - q.log())).sum(-1)
    lo, hi = kl_s.sort().values[:2].tolist()
    assert hi - lo > 1e-3
    lrn.cfg.focops_delta = delta = (lo + hi) / 2
    accept = (kl_s <= delta).to(T64)
    assert accept.sum() == 1
    # eq. 11, analytically: ∇_z KL = π ⊙ (log π − log π_k − KL), ∇_z π(a) = π(a)(e_a − π)
    grad = torch.zeros_like(z)
    for j in range(n):
        s, a = states[j], actions[j]
        d_kl = p[s] * (p[s].log() - q[s].log() - kl_s[s])
        d_pi = p[s, a] * (torch.nn.functional.one_hot(a, k).to(T64) - p[s])
        grad[s] += accept[s] * (d_kl - d_pi / (lam * q[s, a]) * (eta[j] - nu * a_c[j, 0])) / n
    fd = torch.zeros_like(z)
    h = 1e-6
    for idx in np.ndindex(*z.shape):
        zp, zm = z.clone(), z.clone()
        zp[idx] += h
        zm[idx] -= h
        fd[idx] = (loss_of(zp) - loss_of(zm)) / (2 * h)
    torch.testing.assert_close(fd, grad, rtol=1e-6, atol=1e-8)


def test_mafocops_nu_rule_and_early_stop() -> None:
    lrn = _learner("mafocops", cost_limits=(0.2,), lambda_optimizer="sgd", nu_init=1.0, nu_lr=0.5, nu_max=1.3,
                   focops_delta=2e-5, minibatch_size=0, minibatches=2, epochs=15)
    lrn.ep_cost_est = np.array([0.8])  # J − c = 0.6 → ν + 0.3, clamped at ν_max
    assert lrn.before_update(None)["nu0"] == 1.3  # type: ignore[arg-type]
    lrn.ep_cost_est = np.array([0.0])  # J − c = −0.2 → 1.3 − 0.1
    assert lrn.before_update(None)["nu0"] == pytest.approx(1.2)  # type: ignore[arg-type]
    for _ in range(20):
        lrn.before_update(None)  # type: ignore[arg-type]
    assert lrn.coefs is not None and lrn.coefs["nu0"] == 0.0  # projected at 0
    # early stop: with δ = 2e-5 the mean KL(new‖old) reaches δ long before 15 epochs
    m = lrn.update(_fill(lrn))
    assert m["epochs"] < 15 and m["kl"] >= 2e-5


def test_lagrange_and_adaptive_coef_rules() -> None:
    lam = Lagrange(["lambda0", "lambda1"], init=0.5, lr=2.0, optimizer="sgd")
    assert lam.step([0.1, -0.1]) == {"lambda0": pytest.approx(0.7), "lambda1": pytest.approx(0.3)}
    assert lam.step([-1.0, 0.0])["lambda0"] == 0.0  # projection at 0
    with pytest.raises(ValueError, match="lambda_optimizer must be one of adam, sgd; got 'foo'"):
        Lagrange(["lambda0"], init=0.5, lr=2.0, optimizer="foo")
    nu = Lagrange(["nu0"], init=1.2, lr=1.0, optimizer="sgd", upper=1.3)
    assert nu.step([0.5]) == {"nu0": 1.3} and nu.step([-0.2]) == {"nu0": pytest.approx(1.1)}
    with pytest.raises(ValueError):
        lam.step([1.0])
    with pytest.raises(ValueError):
        Lagrange(["nu0"], init=2.0, lr=1.0, upper=1.3)
    beta = AdaptiveCoef(("beta2",), 0.01, target=0.1, delta=1.5, omega=2.0, lo=1e-6, hi=1e6)
    assert beta.step(0.2) == {"beta2": 0.02} and beta.step(0.1) == {"beta2": 0.02} and beta.step(0.0) == {"beta2": 0.01}


def test_episode_cost_estimate() -> None:
    """Finished episodes when there are any; otherwise the latest finished episodes' mean (omnisafe's
    EpCost); the running per-step cost × the episode length only before any episode finished."""
    ec = EpisodeCosts(n_envs=2, n_costs=1)
    ec.add(np.array([[1.0], [2.0]]), np.array([False, False]))
    assert ec.estimate(episode_length=10)[0] == pytest.approx(15.0)  # (1 + 2)/2 steps × 10
    assert ec.source == "per_step"
    assert ec.estimate(episode_length=None)[0] == pytest.approx(1.5)  # partial sums
    ec.add(np.array([[1.0], [0.0]]), np.array([True, False]))  # copy 0 finishes with 2
    ec.add(np.array([[4.0], [1.0]]), np.array([True, True]))  # copy 0 with 4, copy 1 with 3
    assert ec.estimate(10)[0] == pytest.approx((2.0 + 4.0 + 3.0) / 3) and ec.source == "episodes"
    ec.add(np.array([[9.0], [9.0]]), np.array([False, False]))  # a costly start of the next episodes
    assert ec.estimate(10)[0] == pytest.approx(3.0) and ec.source == "previous"  # not 9 × 10
    restored = EpisodeCosts(n_envs=2, n_costs=1)
    restored.load_state_dict(ec.state_dict())
    assert restored.estimate(10)[0] == pytest.approx(3.0)


# ------------------------------------------------------------------ HAPPO and the token
def test_happo_token_weighted_clip_hand_computed() -> None:
    happo = _learner("happo")
    ratio, adv, token = _t(0.5, 1.1, 1.5), _t(-1.0, -2.0, 1.0), _t(2.0, 0.5, 0.0)
    # HAPPO: −mean M·min(r·A, clip(r)·A) = −(2·(−0.8) + 0.5·(−2.2) + 0)/3
    expected = -(2 * -0.8 + 0.5 * -2.2 + 0.0) / 3
    loss, _ = happo.policy_loss(ratio, ratio.log(), torch.zeros(3, dtype=T64), token * adv, torch.zeros(3, dtype=T64))
    assert loss.item() == pytest.approx(expected, abs=1e-12) and expected == pytest.approx(0.9)


def test_token_multiplies_the_standardised_reward_advantage_only() -> None:
    lrn = _learner("mappo-l", cost_limits=(0.5,))
    assert lrn.sequential
    cin = _fill(lrn, np.random.default_rng(0))
    b = lrn.buffer
    token = np.random.default_rng(1).uniform(0, 2, 16 * E).astype(np.float32)
    with torch.no_grad():
        last_v = lrn.critic(torch.from_numpy(lrn.critic_norm.normalize(cin))).numpy()
    adv, _ = gae(b.rewards, lrn.rollout_values()[0], b.dones, last_v, lrn.cfg.gamma, lrn.cfg.gae_lambda)
    batch = lrn._prepare(cin, token)
    np.testing.assert_allclose(batch.adv.numpy(), standardise(adv.reshape(-1)) * token, rtol=1e-5, atol=1e-6)
    assert batch.cost_adv.abs().mean() > 0 and abs(float(batch.cost_adv.mean())) < 1e-5  # standardised, unweighted
    # buffer order: sample n = t·E + e
    np.testing.assert_array_equal(batch.act.numpy(), b.actions.reshape(-1))


def test_sequential_token_is_the_product_of_ratios() -> None:
    """Three agents on sample-aligned rollouts update one after another; the token the last one
    passes on equals Π_i π_i^new(a_i|s)/π_i^old(a_i|s) over the same samples."""
    learners = [_learner("happo", seed=s, epochs=3) for s in range(3)]
    rng = np.random.default_rng(0)
    cin = np.ones((E, 5), np.float32)
    while not learners[0].ready():
        obs = rng.normal(size=(E, 3)).astype(np.float32)
        joint = [lr.act(obs, cin) for lr in learners]
        reward = np.mean([REWARD[a] for a in joint], axis=0)  # team reward
        for lr in learners:
            lr.observe(reward, np.zeros((E, 0)), np.ones(E, bool))
    token, ratios = None, []
    for lr in learners:
        lr.update(cin, token=token)
        token = lr.token_out(token)
        b = lr.buffer  # cleared, but its arrays still hold the rollout just used
        with torch.no_grad():
            logp = Categorical.log_prob(lr.actor(torch.from_numpy(b.obs.reshape(-1, 3))),
                                        torch.from_numpy(b.actions.reshape(-1)))
        ratios.append(np.exp(logp.double().numpy() - b.logp.reshape(-1).astype(np.float64)))
    expected = np.prod(ratios, axis=0)
    assert token is not None and token.dtype == np.float32 and token.shape == (16 * E,)
    assert np.abs(expected - 1).max() > 1e-2  # the policies did move
    np.testing.assert_allclose(token, expected, rtol=1e-4)
    assert learners[0].token_out(np.full(16 * E, 1e9)).max() == TOKEN_MAX  # clipped


def test_token_validation() -> None:
    ippo, happo = _learner("ippo"), _learner("happo")
    for lr in (ippo, happo):
        _fill(lr)
    with pytest.raises(ValueError, match="simultaneous"):
        ippo.update(np.ones((E, 5), np.float32), token=np.ones(16 * E, np.float32))
    with pytest.raises(ValueError, match="token"):
        happo.update(np.ones((E, 5), np.float32), token=np.ones(3, np.float32))
    with pytest.raises(RuntimeError):
        _learner("happo").token_out()
    with pytest.raises(ValueError, match="sequential"):
        _learner("dpo", update_order="sequential")


# ------------------------------------------------------------------ DPO ablations and IPPO-KL
@pytest.mark.parametrize("algo,betas,expected", [
    ("dpo-no-sqrt", {"beta2": 0.25}, -((0.6 - 0.01) + (-0.45 - 0.0225) + 1.0) / 3),
    ("dpo-no-kl", {"beta1": 0.5},
     -((0.6 - 0.5 * math.sqrt(0.04 + 1e-8)) + (-0.45 - 0.5 * math.sqrt(0.09 + 1e-8)) + (1.0 - 0.5 * 1e-4)) / 3),
    ("ippo-kl", {"beta2": 0.25}, -((1.2 - 0.01) + (-0.9 - 0.0225) + 2.0) / 3),  # no 1/N, no sqrt
])
def test_dpo_ablations_hand_computed(algo: str, betas: dict[str, float], expected: float) -> None:
    lrn = _learner(algo)  # n_agents = 2
    assert lrn.coefs is not None and set(lrn.coefs.values) == set(betas)
    lrn.coefs.values.update(betas)
    ratio, adv, kl = _t(1.2, 0.9, 1.0), _t(1.0, -1.0, 2.0), _t(0.04, 0.09, 0.0)
    loss, _ = lrn.policy_loss(ratio, ratio.log(), torch.zeros(3, dtype=T64), adv, kl)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    name = next(iter(betas))
    assert lrn.after_update(1.0)[name] == betas[name] * 2  # the eq.-21 rule drives the remaining β


# ------------------------------------------------------------------ MACPO
def test_conjugate_gradient_matches_direct_solve() -> None:
    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=g, dtype=T64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=T64)
    b = torch.randn(6, generator=g, dtype=T64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=6)
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(a.numpy(), b.numpy()), rtol=1e-8)


def test_fisher_vector_product_and_cg_on_the_fisher() -> None:
    """H·v by double backprop equals (F + damping·I)·v with F = mean_s J_sᵀ diag(π_s) J_s formed
    explicitly from the log-policy Jacobian; CG on it matches a direct solve."""
    lrn = _learner("macpo", cost_limits=(0.5,), hidden=4, hidden_layers=1)
    obs = torch.randn(10, 3, generator=torch.Generator().manual_seed(1))
    names = [n for n, _ in lrn.actor.named_parameters()]
    shapes = [p.shape for _, p in lrn.actor.named_parameters()]
    theta = parameters_to_vector(lrn.actor.parameters()).detach()

    def logpi(flat: torch.Tensor) -> torch.Tensor:
        parts, i = {}, 0
        for n, sh in zip(names, shapes):
            parts[n] = flat[i:i + sh.numel()].view(sh)
            i += sh.numel()
        return functional_call(lrn.actor, parts, (obs,))

    jac = jacrev(logpi)(theta)  # [B, K, P]
    old = logpi(theta).detach()
    fisher = torch.einsum("bk,bkp,bkq->pq", old.exp(), jac, jac) / obs.shape[0]
    damp = lrn.cfg.cg_damping
    v = torch.randn(theta.shape[0], generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(lrn.fisher_vector_product(obs, old, v), fisher @ v + damp * v, rtol=1e-4, atol=1e-6)
    b = torch.randn(theta.shape[0], generator=torch.Generator().manual_seed(3))
    x = conjugate_gradient(lambda u: lrn.fisher_vector_product(obs, old, u), b, iters=200)
    direct = torch.linalg.solve((fisher + damp * torch.eye(len(b))).double(), b.double())
    torch.testing.assert_close(x.double(), direct, rtol=1e-3, atol=1e-4)


def test_cpo_direction_cases() -> None:
    xg, xb = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])  # H = I: q = |g|², r = g·b, s = |b|²
    x, case, _, nu = cpo_direction(xg, xb, q=1.0, r=0.0, s=1.0, c=-10.0, delta=0.01)
    assert case == 3 and nu == 0 and float(x @ x) / 2 == pytest.approx(0.01, rel=1e-4)  # TRPO step on the boundary
    x, case, _, nu = cpo_direction(xg, xb, q=1.0, r=0.0, s=1.0, c=10.0, delta=0.01)
    assert case == 0 and x[1] < 0 and x[0] == 0 and float(x @ x) / 2 == pytest.approx(0.01, rel=1e-4)  # recovery
    # case 1: infeasible but recoverable: the step satisfies the linearised constraint c + b·x ≤ 0
    x, case, _, nu = cpo_direction(xg, xb, q=1.0, r=0.0, s=1.0, c=0.1, delta=0.01)
    assert case == 1 and nu > 0 and 0.1 + float(x[1]) <= 1e-6 and float(x @ x) / 2 <= 0.01 + 1e-6


def _macpo_batch(**over: object) -> tuple[Learner, object]:
    lrn = _learner("macpo", cost_limits=(0.3,), gamma=0.0, **over)
    cin = _fill(lrn, np.random.default_rng(0))
    return lrn, lrn._prepare(cin, np.ones(16 * E, np.float32))


@pytest.mark.parametrize("c", [-0.05, 0.02, 0.5])  # feasible, recoverable, recovery
def test_macpo_step_keeps_kl_within_delta(c: float) -> None:
    lrn, batch = _macpo_batch(trust_region_delta=0.01, ls_fraction_coef=1.0)
    r0, c0, old = lrn._surrogates(batch)
    m = lrn._trust_region_step(batch, c)
    assert m["ls_accepted"] == 1.0
    with torch.no_grad():
        r1, c1, new = lrn._surrogates(batch)
        assert float(Categorical.kl(old.detach(), new).mean()) <= 0.01
        r0, c0 = r0.detach(), c0.detach()
    if c > 0:  # infeasible: the cost surrogate must not rise
        assert float(c1) < float(c0)
    else:
        assert float(r1) >= float(r0)


def test_macpo_infeasible_recovery_decreases_cost_surrogate() -> None:
    lrn, batch = _macpo_batch()  # the paper's δ = 0.008 and fraction coef 0.3
    _, c0, _ = lrn._surrogates(batch)
    m = lrn._trust_region_step(batch, c=1.0)
    assert m["macpo_case"] == 0 and m["ls_accepted"] == 1.0 and m["cost_surrogate_change"] < 0
    with torch.no_grad():
        assert float(lrn._surrogates(batch)[1]) < float(c0)


def test_macpo_rejects_two_costs() -> None:
    with pytest.raises(ValueError, match="one cost"):
        _learner("macpo", cost_limits=(1.0, 2.0))
