"""DPO: decentralised policy optimisation (Su & Lu, dpo.md §3.5), its two ablations (§4.5) and
IPPO-KL (App. C) — one loss with switches.

Each agent i maximises its share of a lower bound on the joint objective (eq. 20)::

    L^DPO = −mean_B [ (1/N)·r·Â − β1·sqrt(KL_s + 1e-8) − β2·KL_s ]

with KL_s = KL(π_old(·|s) ‖ π_new(·|s)) exact per state (closed form, dists.py), N = n_agents
(the 1/N is the bound's, so each agent claims 1/N of the joint improvement), and the 1e-8 keeping
∂sqrt finite at KL_s = 0, where every update starts. The base's entropy bonus is scaled by the same
1/N (:attr:`DPO.entropy_weight`): the bonus belongs to the agent's own surrogate, and since Adam
ignores a global scale, dividing r·Â alone by N would multiply the entropy's relative weight by N
(six times IPPO's on the 6-agent game; learner-audit.md finding 2). Table 2 lists no entropy term;
we keep IPPO's c_ent·H, divided by N, rather than drop it, so DPO and IPPO explore alike
(``--set ent_coef=0`` drops it). After each update (eq. 21), with D = batch-mean KL_s after the last
epoch::

    D > d_target·δ  →  β ×= ω ;   D < d_target/δ  →  β /= ω      (δ = 1.5, ω = 2)

Variants (class switches; every other setting is DPO's, as the paper controls them):

    dpo-no-sqrt   β1 ≡ 0:  −mean[(1/N)·r·Â − β2·KL_s]       (DPO_w/o_sqrt, §4.5)
    dpo-no-kl     β2 ≡ 0:  −mean[(1/N)·r·Â − β1·sqrt(KL_s)] (DPO_w/o_kl, §4.5)
    ippo-kl       PPO-KL per agent: −mean[r·Â − β2·KL_s]     (App. C; no 1/N, no sqrt term)

Logs, besides the base keys: the coefficients the next update uses (beta1 and/or beta2),
sqrt_kl_penalty and kl_penalty (the two penalty terms' minibatch means, before weighting by β).
"""
from __future__ import annotations

from typing import ClassVar

import torch

from .base import Learner
from .coef import AdaptiveCoef


class DPO(Learner):
    """DPO: (1/N)·r·Â − β1·√KL − β2·KL with adaptive β (Su & Lu, dpo.md eq. 20–21)."""

    algo = "dpo"
    coef_names: ClassVar[tuple[str, ...]] = ("beta1", "beta2")  # beta1: sqrt-KL term, beta2: KL term
    share_1_over_n: ClassVar[bool] = True  # scale r·Â by 1/N (the decentralised bound's share)
    config_keys = Learner.config_keys + ("beta_init", "d_target", "dpo_delta", "dpo_omega", "beta_min", "beta_max")

    def _make_coefs(self) -> AdaptiveCoef:
        c = self.cfg
        return AdaptiveCoef(self.coef_names, c.beta_init, c.d_target, c.dpo_delta, c.dpo_omega,
                            c.beta_min, c.beta_max)

    @property
    def entropy_weight(self) -> float:
        """c_ent/N when the surrogate takes its 1/N share (see module docstring), else c_ent."""
        return self.cfg.ent_coef / (self.n_agents if self.share_1_over_n else 1)

    def policy_loss(self, ratio: torch.Tensor, logp_new: torch.Tensor, logp_old: torch.Tensor,
                    adv: torch.Tensor, kl_per_state: torch.Tensor,
                    cost_adv: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        assert self.coefs is not None
        sqrt_kl = torch.sqrt(kl_per_state + 1e-8)
        objective = ratio * adv / (self.n_agents if self.share_1_over_n else 1)
        if "beta1" in self.coefs.values:
            objective = objective - self.coefs["beta1"] * sqrt_kl
        if "beta2" in self.coefs.values:
            objective = objective - self.coefs["beta2"] * kl_per_state
        return -objective.mean(), {"sqrt_kl_penalty": sqrt_kl.mean().item(),
                                   "kl_penalty": kl_per_state.mean().item()}

    def after_update(self, mean_kl: float) -> dict[str, float]:
        assert self.coefs is not None
        return self.coefs.step(mean_kl)


class DPONoSqrt(DPO):
    """DPO without the √KL term (β1 ≡ 0; dpo.md §4.5 DPO_w/o_sqrt)."""

    algo = "dpo-no-sqrt"
    coef_names = ("beta2",)


class DPONoKL(DPO):
    """DPO without the KL term (β2 ≡ 0; dpo.md §4.5 DPO_w/o_kl)."""

    algo = "dpo-no-kl"
    coef_names = ("beta1",)


class IPPOKL(DPO):
    """IPPO-KL: per-agent PPO with the adaptive KL penalty only, r·Â − β·KL (dpo.md App. C)."""

    algo = "ippo-kl"
    coef_names = ("beta2",)  # PPO's β, named as DPO's KL coefficient so the two plot together
    share_1_over_n = False
