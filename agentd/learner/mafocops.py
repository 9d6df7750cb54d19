r"""MAFOCOPS: multi-agent first-order constrained optimisation in policy space (mafocops.md §4).

Agent i_h projects the optimal non-parametric update (eq. 4) back onto its policy class by
minimising E_s[KL(π_θ ‖ π*)(s)] with the sample gradient of eq. 11; the per-sample loss whose
gradient that is::

    ℓ_j = ( KL(π_θ ‖ π_θk)[s_j] − (1/λ) · r_j · (η̂_j − Σ_u ν_u Â_u,j) ) · I(s_j)
    L   = mean_B ℓ_j,        r_j = π_θ(a_j|s_j)/π_θk(a_j|s_j),  I(s_j) = 1[KL(π_θ ‖ π_θk)[s_j] ≤ δ]

(∇r_j = ∇π_θ(a_j|s_j)/π_θk(a_j|s_j), the eq.-11 term.) η̂ = M·Â: the standardised reward
advantage weighted by the sequential token M (Alg. 1 lines 7, 13, 19); Â_u the standardised cost
advantages of the agent's own cost critics (line 5). The indicator multiplies the whole per-sample
term, as in the FOCOPS reference code ("rejecting sampled states", §4.3; eq. 11's typesetting
leaves its scope ambiguous). Note the KL direction: KL(π_θ ‖ π_θk), new ‖ old, for the loss, the
indicator, the early stop and the logged ``kl``.

Before the agent's update (Alg. 1 line 9, eq. 10), from the mean episode cost J_u of the episodes
finished since the last update, one :class:`~agentd.learner.coef.Lagrange` step on −ν_u·(J_u − c_u)
(J_u − c_u = −b_u, Theorem 1; lagrangian.CostLagrangian, shared with DEC-MAPPO-L's λ), projected onto
[0, ν_max]. Eq. 10 is that step with plain SGD and α = 5e-5 (Table 5), which moves ν
by ~1.8e-3 per update (learner-audit.md finding 8): kept as ``preset=mafocops-paper``. The default is
the same dual optimiser as DEC-MAPPO-L's λ, with omnisafe FOCOPS's Adam, lr 0.035, init 0.001.

λ (the temperature) is fixed (§4.3). The epochs stop early once the batch-mean KL(π_θ ‖ π_θk)
reaches δ (Alg. 1 lines 15–16). No entropy bonus (eq. 11 has none). Logs, besides the base keys:
nu{u}, cost_gap{u} (J_u − c_u) and accepted_frac (mean I(s_j)).
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch

from .base import Batch
from .coef import Lagrange
from .lagrangian import CostLagrangian


class MAFOCOPS(CostLagrangian):
    """MAFOCOPS: FOCOPS loss with per-state KL indicator, ν ∈ [0, ν_max] (Zhao et al., mafocops.md)."""

    algo = "mafocops"
    config_keys = CostLagrangian.config_keys + ("focops_lam", "focops_delta", "nu_init", "nu_lr", "nu_max")
    supports_sequential = True
    centralised = True  # Alg. 1 l.1, l.7: a global value network and the joint advantage (κ = diameter)
    defaults: ClassVar[dict[str, Any]] = {
        "update_order": "sequential",  # Alg. 1: agents in a random permutation, token M
        "focops_lam": 2.2,  # mafocops.md Table 5 (Safe MAMuJoCo): λ 2.2
        "nu_max": 1.3,  # Table 5: ν_max 1.3
        "focops_delta": 0.0125,  # Table 5: kl-threshold 0.0125
        "minibatch_size": 256,  # Table 5: minibatch size 256
        "epochs": 5,  # Table 5: update numbers 5
        "ent_coef": 0.0,  # eq. 11 has no entropy term
        # lr 5e-4 / 5e-4 (dpo.md Table 2): Table 5 keeps the MACPO codebase's, which are tied to its
        # PopArt critics (safe-mamujoco.md §5.2: 9e-5 / 5e-3); not reported for MAFOCOPS itself.
    }

    def _make_coefs(self) -> Lagrange:
        c = self.cfg
        return Lagrange([f"nu{u}" for u in range(self.n_costs)], c.nu_init, c.nu_lr, c.lambda_optimizer,
                        upper=c.nu_max)

    def kl_per_state(self, params_old: torch.Tensor, params_new: torch.Tensor) -> torch.Tensor:
        return self.dist.kl(params_new, params_old)  # KL(π_θ ‖ π_θk), eq. 6 / 11

    def advantage_form(self) -> str:
        return "plain"  # eq. 11: η̂ − Σ_u ν_u Â_u, no normalisation

    def policy_loss(self, ratio: torch.Tensor, logp_new: torch.Tensor, logp_old: torch.Tensor,
                    adv: torch.Tensor, kl_per_state: torch.Tensor,
                    cost_adv: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        target = self.lagrangian_advantage(adv, cost_adv)
        accept = (kl_per_state.detach() <= self.cfg.focops_delta).to(adv.dtype)
        loss = ((kl_per_state - ratio * target / self.cfg.focops_lam) * accept).mean()
        return loss, {"accepted_frac": accept.mean().item()}

    def stop_epochs(self, batch: Batch) -> bool:
        with torch.no_grad():
            kl = self.kl_per_state(batch.params_old, self._policy(batch.obs, batch.params_old)).mean()
        return bool(kl >= self.cfg.focops_delta)
