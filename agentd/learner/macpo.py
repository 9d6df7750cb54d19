r"""MACPO: multi-agent constrained policy optimisation, the trust-region step (Gu et al. 2023;
CPO, Achiam et al. 2017; hyperparameters safe-mamujoco.md §5.2/5.3, mafocops.md Table 5).

Agent i_h, at θ_k, with the (token-weighted) reward surrogate and its own cost surrogate::

    g = ∇_θ mean_N r·M·Â,   b = ∇_θ mean_N r·Â_c,   H = ∇²_θ mean_N KL(π_θk ‖ π_θ) + κ_damp·I

(Â standardised, Â_c centred but not rescaled: see Units below; H·v by double backprop, never
formed; H⁻¹g, H⁻¹b by conjugate gradients), and solves

    max_x gᵀx   s.t.  c + bᵀx ≤ 0,   ½ xᵀHx ≤ δ,    c = (1 − γ)(J_c − d)

(c: the constraint value on the per-step scale, as the MACPO code's ``rescale_constraint_val``;
J_c the rollout's mean episode cost, d the limit) through its dual in closed form. g, b and r are
gradients of the surrogates themselves; code that differentiates the *loss* −surrogate, as
SafePO's, has r of the opposite sign and hence writes "λc − r" where we write "λc + r". With
q = gᵀH⁻¹g, r = gᵀH⁻¹b, s = bᵀH⁻¹b, A = q − r²/s, B = 2δ − c²/s:

    case 4  s ≈ 0 and c < 0        no usable constraint: TRPO step x = H⁻¹g / √(q/2δ)
    case 3  c < 0 and B < 0        whole trust region feasible: the same TRPO step
    case 2  c < 0 and B ≥ 0        } x = (H⁻¹g − ν·H⁻¹b)/λ with λ = argmax of the two-piece dual
    case 1  c ≥ 0 and B ≥ 0        }   f_a(λ) = −½(A/λ + Bλ) + rc/s (where λc + r > 0),
                                       f_b(λ) = −½(q/λ + 2δλ) (elsewhere), each maximiser projected
                                       on its piece (split at λ = −r/c), ν = (λc + r)⁺/s
    case 0  c ≥ 0 and B < 0        infeasible, not recoverable within δ: recovery step
                                       x = −√(2δ/s)·H⁻¹b (pure cost decrease)

then a backtracking line search θ = θ_k + f·ρ^i·x (f = fraction coef, ρ = decay, i < ls_steps)
accepting the first step with mean KL(π_θk ‖ π_θ) ≤ δ, cost-surrogate change ≤ max(−c, 0), and
(cases 2–4 only) a non-negative reward-surrogate change; if none passes, θ_k is kept.

Units. c is on the per-step scale, (1 − γ) times the per-episode gap, and so is bᵀx as long as
Â_c keeps the cost's units: by CPO's bound J_c(π') − J_c(π) ≈ E[r·Â_c]/(1 − γ), the change of
the cost surrogate is (1 − γ)·ΔJ_c. So Â_c is centred but not divided by its std σ_c
(``cost_adv_norm = "centre"``), as in CPO's reference code (learner-audit.md finding 7) and
omnisafe's OnPolicyBuffer.get. Standardising it, as the MACPO code and our Lagrangian learners
do, would turn the true constraint into c + σ_c·bᵀx ≤ 0, put c²/s off by σ_c² in the case
selection and the line search's cost test off by σ_c. Â may stay standardised: scaling g by α
scales λ and ν by α and leaves x unchanged.

The critics then take epochs × minibatches of MSE steps (base). One cost is supported (the
closed form is CPO's single-constraint solution; MACPO's benchmarks have one cost). The SafePO
code weights b by the token too and clips ‖x‖ ≤ 0.5; we follow the paper (agent's own cost
surrogate) and do neither. Logs: macpo_case, tr_lambda, tr_nu, ls_accepted, ls_step,
surrogate_change, cost_surrogate_change, constraint_value.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector

from .base import BATCH_KEYS, Batch, Learner


def conjugate_gradient(avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int,
                       tol: float = 1e-10) -> torch.Tensor:
    """Solve A x = b for symmetric positive-definite A given only v ↦ A v (Hestenes–Stiefel)."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = torch.dot(r, r)
    for _ in range(iters):
        if rr < tol:
            break
        ap = avp(p)
        alpha = rr / (torch.dot(p, ap) + 1e-12)
        x += alpha * p
        r -= alpha * ap
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def cpo_direction(xg: torch.Tensor, xb: torch.Tensor, q: float, r: float, s: float, c: float,
                  delta: float) -> tuple[torch.Tensor, int, float, float]:
    """The CPO step direction (ascent on the reward surrogate) and (case, λ, ν); see module doc."""
    eps = 1e-8
    if s <= eps and c < 0:
        case = 4
    else:
        b_coef = 2 * delta - c * c / (s + eps)
        case = (3 if b_coef < 0 else 2) if c < 0 else (1 if b_coef >= 0 else 0)
    if case in (3, 4):
        lam = math.sqrt(max(q, 0.0) / (2 * delta))
        return xg / (lam + eps), case, lam, 0.0
    if case == 0:
        nu = math.sqrt(2 * delta / (s + eps))
        return -nu * xb, case, 0.0, nu
    a_coef = max(q - r * r / (s + eps), 0.0)
    b_coef = 2 * delta - c * c / (s + eps)
    # ν* = (λc + r)⁺/s; the dual's piece a (ν > 0) lives where λc + r > 0, i.e. on one side of −r/c.
    split = max(0.0, -r / (c if c != 0 else eps))
    la, lb = ((0.0, split), (split, math.inf)) if c < 0 else ((split, math.inf), (0.0, split))

    def proj(x: float, lim: tuple[float, float]) -> float:
        return max(lim[0], min(lim[1], x))

    lam_a = proj(math.sqrt(a_coef / (b_coef + eps)), la)
    lam_b = proj(math.sqrt(max(q, 0.0) / (2 * delta)), lb)
    f_a = -0.5 * (a_coef / (lam_a + eps) + b_coef * lam_a) + r * c / (s + eps)
    f_b = -0.5 * (q / (lam_b + eps) + 2 * delta * lam_b)
    lam = lam_a if f_a >= f_b else lam_b
    nu = max(0.0, lam * c + r) / (s + eps)
    return (xg - nu * xb) / (lam + eps), case, lam, nu


@torch.no_grad()
def set_flat(weights: list[torch.Tensor], vec: torch.Tensor) -> None:
    """Copy a flat vector into the parameters in place (no storage sharing with ``vec``)."""
    i = 0
    for w in weights:
        w.copy_(vec[i:i + w.numel()].view_as(w))
        i += w.numel()


class MACPO(Learner):
    """MACPO: CPO trust-region step with cost constraint and recovery, sequential (Gu et al. 2023)."""

    algo = "macpo"
    uses_costs = True
    supports_sequential = True
    centralised = True  # κ = graph diameter by default
    cost_adv_norm = "centre"  # Â_c in the units of c (module doc, Units; learner-audit.md M1)
    # no ACTOR_STEP_KEYS: the actor moves by the trust-region step, not by Adam (ent_coef and clip are never
    # read; lr_actor only sets up the base's actor Adam, which never steps)
    config_keys = BATCH_KEYS + ("trust_region_delta", "cg_iters", "cg_damping", "ls_steps", "ls_decay",
                                "ls_fraction_coef")
    defaults: ClassVar[dict[str, Any]] = {
        "update_order": "sequential",  # HATRPO-style sequential scheme with the token
        "trust_region_delta": 0.008,  # mafocops.md Table 5: MACPO kl-threshold 0.008 (Safe MAMuJoCo)
        "ls_fraction_coef": 0.3,  # Table 5: MACPO fraction coef 0.3
        "ls_steps": 10,  # safe-mamujoco.md §5.2 ls_step 10; §5.3 searching_steps 10
        "ls_decay": 0.5,  # §5.2 line_search_fraction 0.5; §5.3 step_fraction 0.5
        "cg_iters": 10,  # SafePO macpo.py conjugate_gradient(nsteps=10)
        "cg_damping": 0.1,  # SafePO macpo.py: F·p + 0.1·p
        "lr_critic": 5e-3,  # §5.2 / §5.3: critic_lr 5e-3
        "epochs": 15,  # critic passes per update: §5.3 learning_iters 15 (ppo_epoch default 15, §5.2)
        "minibatches": 1,  # §5.3 num_mini_batch 1
    }

    def _build(self) -> None:
        if self.n_costs > 1:
            raise ValueError(f"algo 'macpo' supports at most one cost, got {self.n_costs} cost limits")
        super()._build()

    def constraint_value(self) -> float:
        """c = (1 − γ)(J_c − d); without a cost, −1 (always feasible: the step is TRPO's)."""
        if not self.n_costs:
            return -1.0
        c = float((1.0 - self.cfg.gamma) * (self.ep_cost_est[0] - self.cost_limits[0]))
        return c if c != 0.0 else 1e-8  # as the MACPO code: c = 0 counts as (barely) infeasible

    def _surrogates(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reward surrogate mean r·MÂ, cost surrogate mean r·Â_c, new params) at the current θ."""
        params = self._policy(batch.obs, batch.params_old)
        ratio = torch.exp(self.dist.log_prob(params, batch.act) - batch.logp_old)
        cost = (ratio * batch.cost_adv[:, 0]).mean() if self.n_costs else torch.zeros(())
        return (ratio * batch.adv).mean(), cost, params

    def fisher_vector_product(self, obs: torch.Tensor, old: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(H + damping·I)·v with H = ∇²_θ mean KL(old ‖ π_θ(·|obs)), by double backprop; ``old``
        must be π_θ's own parameters at the current θ (then H is the Fisher information)."""
        weights = list(self.actor.parameters())
        kl = self.dist.kl_unclamped(old, self._policy(obs, old)).mean()
        grad = parameters_to_vector(torch.autograd.grad(kl, weights, create_graph=True))
        hv = parameters_to_vector(torch.autograd.grad(torch.dot(grad, v), weights))
        return hv + self.cfg.cg_damping * v

    def _optimise(self, batch: Batch) -> dict[str, float]:
        metrics = self._trust_region_step(batch, self.constraint_value())
        sums: dict[str, float] = defaultdict(float)
        n, steps = len(batch), 0
        for _ in range(self.cfg.epochs):
            for idx in np.array_split(self.np_rng.permutation(n), self._n_minibatches(n)):
                for k, v in self._critic_step(batch[torch.from_numpy(idx)]).items():
                    sums[k] += v
                steps += 1
        return {**metrics, **{k: v / steps for k, v in sums.items()}, "epochs": float(self.cfg.epochs)}

    def step_direction(self, batch: Batch, c: float) -> tuple[torch.Tensor, int, float, float]:
        """(x, case, λ, ν) of the CPO subproblem at the current θ (module doc): g and b by autograd
        of the surrogates, H⁻¹g and H⁻¹b by conjugate gradients on the Fisher-vector product."""
        cfg, weights = self.cfg, list(self.actor.parameters())
        reward_surr, cost_surr, params = self._surrogates(batch)
        old = params.detach()  # π_θk on the batch (equals the stored params_old up to rounding)
        g = parameters_to_vector(torch.autograd.grad(reward_surr, weights, retain_graph=True))
        b = (parameters_to_vector(torch.autograd.grad(cost_surr, weights)) if self.n_costs
             else torch.zeros_like(g))

        def fvp(v: torch.Tensor) -> torch.Tensor:
            return self.fisher_vector_product(batch.obs, old, v)

        xg = conjugate_gradient(fvp, g, cfg.cg_iters)
        xb = conjugate_gradient(fvp, b, cfg.cg_iters) if self.n_costs else torch.zeros_like(g)
        q, r, s = float(torch.dot(g, xg)), float(torch.dot(g, xb)), float(torch.dot(b, xb))
        return cpo_direction(xg, xb, q, r, s, c, cfg.trust_region_delta)

    def _trust_region_step(self, batch: Batch, c: float) -> dict[str, float]:
        cfg, weights = self.cfg, list(self.actor.parameters())
        theta0 = parameters_to_vector(weights).detach().clone()
        x, case, lam, nu = self.step_direction(batch, c)
        accepted, step, d_r, d_c = False, -1, 0.0, 0.0
        with torch.no_grad():
            reward_surr, cost_surr, old = self._surrogates(batch)  # at θ_k, as step_direction's
            r0, c0 = reward_surr.item(), cost_surr.item()
            for i in range(cfg.ls_steps):
                set_flat(weights, theta0 + cfg.ls_fraction_coef * cfg.ls_decay ** i * x)
                new_r, new_c, new_params = self._surrogates(batch)
                kl = float(self.dist.kl(old, new_params).mean())
                d_r, d_c = float(new_r) - r0, float(new_c) - c0
                if kl <= cfg.trust_region_delta and d_c <= max(-c, 0.0) and (case <= 1 or d_r >= 0.0):
                    accepted, step = True, i
                    break
            if not accepted:
                set_flat(weights, theta0)
                d_r = d_c = 0.0
        return {"macpo_case": float(case), "tr_lambda": lam, "tr_nu": nu, "ls_accepted": float(accepted),
                "ls_step": float(step), "surrogate_change": d_r, "cost_surrogate_change": d_c,
                "constraint_value": c, "policy_loss": -(r0 + d_r)}
