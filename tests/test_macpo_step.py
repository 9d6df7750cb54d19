"""MACPO's trust-region step against a direct solve of the CPO subproblem, and the units of its
cost advantage (learner-audit.md finding 7 / M1).

The step x of :meth:`MACPO.step_direction` (g and b by autograd, H⁻¹g and H⁻¹b by conjugate
gradients on the Fisher-vector product, the dual in closed form) must solve

    max_x gᵀx   s.t.  ½ xᵀHx ≤ δ,   c + bᵀx ≤ 0

or, when no x inside the trust region meets the constraint, CPO's recovery problem
min_x bᵀx s.t. ½ xᵀHx ≤ δ. Here g, b and H are formed explicitly, in float64, from the
log-policy Jacobian of a linear-softmax policy on a hand-made batch, and both problems are solved
by SLSQP: no closed form is shared with the code under test. Then: the cost advantage MACPO puts
into b is the GAE cost advantage centred, not rescaled, so c and bᵀx are in the same units, and
a step planned to lower the cost by c lowers the exact expected cost of a bandit by about c.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch.func import functional_call, jacrev
from torch.nn.utils import parameters_to_vector

from agentd.learner import make_learner
from agentd.learner.base import Batch, Learner
from agentd.learner.buffer import gae
from agentd.learner.macpo import MACPO, set_flat
from envserver.tasks.base import AgentSpec

torch.set_num_threads(1)

AGENT = AgentSpec(obs_dim=3, act_kind="discrete", act_dim=1, n_actions=4)
DELTA = 0.01
T64 = torch.float64


def _learner(algo: str, n_envs: int, **over: object) -> Learner:
    # hidden_layers 0: the actor is a linear softmax, 3·4 + 4 = 16 parameters
    return make_learner(algo, AGENT, critic_dim=2, n_agents=2, n_envs=n_envs, seed=0,
                        overrides={"hidden_layers": 0, "gamma": 0.0, **over}, cost_limits=(0.2,),
                        episode_length=1)


def _tiny_problem() -> tuple[MACPO, Batch]:
    """A MACPO learner (CG run to convergence on the 16 parameters) and a hand-made batch of 32
    samples at θ_k: known Â (standardised) and a cost advantage in raw units, correlated with Â
    so that following g raises the cost (r = gᵀH⁻¹b > 0)."""
    lrn = _learner("macpo", n_envs=4, rollout_len=8, trust_region_delta=DELTA, cg_iters=64)
    assert isinstance(lrn, MACPO)
    gen = torch.Generator().manual_seed(3)
    n = 32
    obs = torch.randn(n, 3, generator=gen)
    act = torch.randint(0, 4, (n,), generator=gen)
    with torch.no_grad():
        params = lrn.actor(obs)
    adv = torch.randn(n, generator=gen)
    adv = (adv - adv.mean()) / adv.std()
    cost_adv = 2.5 * (0.6 * adv + 0.8 * torch.randn(n, generator=gen))
    cost_adv = (cost_adv - cost_adv.mean())[:, None]
    zeros = torch.zeros(n)
    return lrn, Batch(obs, torch.zeros(n, 2), act, params.gather(1, act[:, None]).squeeze(1), params,
                      adv, zeros, cost_adv, zeros[:, None])


def _explicit(lrn: MACPO, batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """g, b and H = F + damping·I in float64 from the Jacobian of log π(·|s) at θ_k."""
    names = [k for k, _ in lrn.actor.named_parameters()]
    shapes = [p.shape for _, p in lrn.actor.named_parameters()]
    theta = parameters_to_vector(lrn.actor.parameters()).detach().double()
    actor64 = copy.deepcopy(lrn.actor).double()
    obs = batch.obs.double()

    def logpi(flat: torch.Tensor) -> torch.Tensor:
        parts, i = {}, 0
        for k, sh in zip(names, shapes):
            parts[k] = flat[i:i + sh.numel()].view(sh)
            i += sh.numel()
        return functional_call(actor64, parts, (obs,))

    jac = jacrev(logpi)(theta)  # [N, K, P]
    pi = logpi(theta).detach().exp()
    n = len(batch)
    jac_a = jac[torch.arange(n), batch.act]  # ∇ log π(a_n|s_n), [N, P]
    g = jac_a.T @ batch.adv.double() / n  # ∇ mean r·Â at r = 1
    b = jac_a.T @ batch.cost_adv[:, 0].double() / n
    fisher = torch.einsum("nk,nkp,nkq->pq", pi, jac, jac) / n
    h = fisher + lrn.cfg.cg_damping * torch.eye(len(theta), dtype=T64)
    return g.numpy(), b.numpy(), h.numpy()


def _slsqp(objective: np.ndarray, h: np.ndarray, delta: float, b: np.ndarray | None = None,
           c: float = 0.0) -> np.ndarray:
    """argmin objectiveᵀx s.t. ½xᵀHx ≤ δ (and c + bᵀx ≤ 0 if b is given), by SLSQP."""
    cons = [{"type": "ineq", "fun": lambda x: delta - 0.5 * x @ h @ x, "jac": lambda x: -(h @ x)}]
    if b is not None:
        cons.append({"type": "ineq", "fun": lambda x: -(c + b @ x), "jac": lambda x: -b})
    res = minimize(lambda x: objective @ x, np.zeros(len(objective)), jac=lambda x: objective,
                   constraints=cons, method="SLSQP", options={"ftol": 1e-15, "maxiter": 1000})
    assert res.success, res.message
    return np.asarray(res.x)


def direct_cpo_step(g: np.ndarray, b: np.ndarray, h: np.ndarray, c: float, delta: float) -> np.ndarray:
    """The CPO subproblem solved directly: the recovery step if even the most cost-lowering x in
    the trust region violates c + bᵀx ≤ 0, else max gᵀx under both constraints."""
    recovery = _slsqp(b, h, delta)
    if c + b @ recovery > 0:
        return recovery
    return _slsqp(-g, h, delta, b, c)


# (name, expected case, whether c + bᵀx ≤ 0 binds at the solution (None: recovery), c from q, r, s):
# the five regimes of the closed form. √(2δ/q)·r is bᵀx of the plain TRPO step, √(2δs) the most
# any x in the trust region can lower bᵀx.
CASES = [
    ("feasible, whole trust region", 3, False, lambda q, r, s: -2.0 * math.sqrt(2 * DELTA * s)),
    ("feasible, constraint inactive", 2, False,
     lambda q, r, s: -0.5 * (math.sqrt(2 * DELTA / q) * r + math.sqrt(2 * DELTA * s))),
    ("feasible, constraint active", 2, True, lambda q, r, s: -0.5 * math.sqrt(2 * DELTA / q) * r),
    ("infeasible, recoverable", 1, True, lambda q, r, s: 0.5 * math.sqrt(2 * DELTA * s)),
    ("infeasible, recovery", 0, None, lambda q, r, s: 2.0 * math.sqrt(2 * DELTA * s)),
]


def step_against_direct_solve(name: str) -> dict[str, float]:
    """MACPO's step and the direct solution on the tiny problem for one case of :data:`CASES`."""
    lrn, batch = _tiny_problem()
    g, b, h = _explicit(lrn, batch)
    q, r, s = (float(v) for v in (g @ np.linalg.solve(h, g), g @ np.linalg.solve(h, b),
                                  b @ np.linalg.solve(h, b)))
    _, case, _, fn = next(x for x in CASES if x[0] == name)
    c = fn(q, r, s)
    x, got_case, _, _ = lrn.step_direction(batch, c)
    x = x.double().numpy()
    ref = direct_cpo_step(g, b, h, c, DELTA)
    return {"case": float(got_case), "expected_case": float(case), "r": r, "c": c,
            "max_abs_diff": float(np.abs(x - ref).max()), "max_abs_x": float(np.abs(ref).max()),
            "ref_kl_quadratic": float(0.5 * ref @ h @ ref), "ref_constraint": float(c + b @ ref)}


@pytest.mark.parametrize("name,binds", [(x[0], x[2]) for x in CASES])
def test_step_matches_direct_solve_of_the_cpo_subproblem(name: str, binds: bool | None) -> None:
    m = step_against_direct_solve(name)
    assert m["r"] > 0  # the hand-made batch makes reward and cost pull the same way
    assert m["case"] == m["expected_case"]
    assert m["max_abs_diff"] <= 1e-4 * m["max_abs_x"], m
    assert m["ref_kl_quadratic"] == pytest.approx(DELTA, rel=1e-6)  # every regime ends on the KL boundary
    if binds is True:
        assert abs(m["ref_constraint"]) < 1e-8
    elif binds is False:
        assert m["ref_constraint"] < -1e-4
    else:
        assert m["ref_constraint"] > 0  # recovery: no x in the trust region is feasible


# ------------------------------------------------------------------ units of the cost advantage
COST = np.array([1.0, 0.0, 0.0, 0.0], np.float32)  # arm 0 costs 1; arm 0 also pays best
REWARD = np.array([1.0, 0.5, 0.0, 0.0], np.float32)


def _bandit_batch(algo: str, n_envs: int = 8, rollout_len: int = 16) -> tuple[Learner, Batch, np.ndarray]:
    """A rollout of one-step episodes on the cost bandit; the prepared batch and the raw GAE cost
    advantage of the same rollout."""
    lrn = _learner(algo, n_envs=n_envs, rollout_len=rollout_len)
    obs, cin = np.ones((n_envs, 3), np.float32), np.ones((n_envs, 2), np.float32)
    while not lrn.ready():
        a = lrn.act(obs, cin)
        lrn.observe(REWARD[a], COST[a][:, None], np.ones(n_envs, bool))
    buf = lrn.buffer
    with torch.no_grad():
        last_cv = lrn.cost_critics[0](torch.from_numpy(lrn.critic_norm.normalize(cin))).numpy()
    raw, _ = gae(buf.costs[:, :, 0], lrn.rollout_values()[1][:, :, 0], buf.dones, last_cv,
                 lrn.cfg.gamma, lrn.cfg.gae_lambda)
    return lrn, lrn._prepare(cin, lrn._check_token(None)), raw.reshape(-1).astype(np.float64)


@pytest.mark.parametrize("algo", ["macpo", "dec-mappo-l"])
def test_cost_advantage_centred_for_macpo_standardised_for_the_lagrangian(algo: str) -> None:
    lrn, batch, raw = _bandit_batch(algo)
    fed = batch.cost_adv[:, 0].double().numpy()
    assert abs(raw.std() - 1.0) > 0.3  # so the two normalisations are told apart
    assert abs(fed.mean()) < 1e-6
    if algo == "macpo":
        assert lrn.cost_adv_norm == "centre"
        np.testing.assert_allclose(fed, raw - raw.mean(), atol=1e-6)
        assert fed.std() == pytest.approx(raw.std(), rel=1e-5)
    else:
        assert lrn.cost_adv_norm == "standardise"
        np.testing.assert_allclose(fed, (raw - raw.mean()) / (raw.std() + 1e-8), atol=1e-5)
        assert fed.std() == pytest.approx(1.0, rel=1e-5)


def _exact_cost(lrn: Learner) -> float:
    """E_π[cost] of the one-state bandit under the current policy, exactly."""
    with torch.no_grad():
        probs = lrn.actor(torch.from_numpy(lrn.obs_norm.normalize(np.ones((1, 3), np.float32)))).exp()
    return float(probs[0].double() @ torch.from_numpy(COST).double())


def test_planned_cost_decrease_is_the_real_one() -> None:
    """γ = 0 and one-step episodes make c = J − d in cost per step. A recoverable step planned to
    bring c + bᵀx to 0 must lower the bandit's exact expected cost by about c; with a standardised
    Â_c (σ_c ≈ 0.43 here) it would lower it by about σ_c·c."""
    lrn, batch, raw = _bandit_batch("macpo", rollout_len=128)  # 1024 samples
    assert isinstance(lrn, MACPO)
    weights = list(lrn.actor.parameters())
    theta0 = parameters_to_vector(weights).detach().clone()
    j0 = _exact_cost(lrn)
    c = 0.02
    x, case, _, _ = lrn.step_direction(batch, c)
    assert case == 1
    set_flat(weights, theta0 + x)
    drop = j0 - _exact_cost(lrn)
    assert drop == pytest.approx(c, rel=0.1), (drop, c, raw.std())
