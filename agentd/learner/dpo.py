"""DPO: decentralised policy optimisation (Su & Lu, dpo.md §3.5).

Each agent i maximises its share of a lower bound on the joint objective (eq. 20)::

    L^DPO = −mean_B [ (1/N)·r·Â − β1·sqrt(KL_s + 1e-8) − β2·KL_s ]

with KL_s = KL(π_old(·|s) ‖ π_new(·|s)) exact per state (closed form, dists.py), N = n_agents
(the 1/N is the bound's, so each agent claims 1/N of the joint improvement), and the 1e-8 keeping
∂sqrt finite at KL_s = 0, where every update starts. The entropy bonus −c_ent·H is added by the
base. After each update (eq. 21), with D = batch-mean KL_s after the last epoch::

    D > d_target·δ  →  β1, β2 ×= ω ;   D < d_target/δ  →  β1, β2 /= ω      (δ = 1.5, ω = 2)

Logs, besides the base keys: beta1, beta2 (the values the next update uses), sqrt_kl_penalty and
kl_penalty (the two penalty terms' minibatch means, before weighting by β).
"""
from __future__ import annotations

import torch

from .base import Learner
from .coef import AdaptiveCoef


class DPO(Learner):
    algo = "dpo"

    def _make_coefs(self) -> AdaptiveCoef:
        c = self.cfg
        return AdaptiveCoef(("beta1", "beta2"), c.beta_init, c.d_target, c.dpo_delta, c.dpo_omega,
                            c.beta_min, c.beta_max)

    def policy_loss(self, ratio: torch.Tensor, logp_new: torch.Tensor, logp_old: torch.Tensor,
                    adv: torch.Tensor, kl_per_state: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        assert self.coefs is not None
        sqrt_kl = torch.sqrt(kl_per_state + 1e-8)
        objective = ratio * adv / self.n_agents - self.coefs["beta1"] * sqrt_kl - self.coefs["beta2"] * kl_per_state
        return -objective.mean(), {"sqrt_kl_penalty": sqrt_kl.mean().item(),
                                   "kl_penalty": kl_per_state.mean().item()}

    def after_update(self, mean_kl: float) -> dict[str, float]:
        assert self.coefs is not None
        return self.coefs.step(mean_kl)
