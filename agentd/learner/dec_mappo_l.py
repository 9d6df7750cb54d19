r"""DEC-MAPPO-L: decentralised MAPPO-Lagrangian on the κ-hop critic and policy (dec-mappo-l.md §3.3, Alg. 1).

Each agent i keeps a reward critic V(s_{N_κ^i}) and one cost critic V_u per cost u (eq. 23), a
policy π^i(·|s_{N_κ^i}) on the same κ-hop input (eqs. 14, 18, 22: ``actor_input=khop``), and
maximises the PPO-clip form (eq. 22) of the Lagrangian (eqs. 19–21)::

    A^{(λ)} = (M·Â − Σ_u λ_u Â_u) / (1 + Σ_u λ_u)        lagrangian_form="normalised" (default)
    L       = −mean_B min(r·A^{(λ)}, clip(r, 1−ε, 1+ε)·A^{(λ)})                  (eq. 22)

* Â, Â_u: GAE advantages, each standardised over the batch (SafePO ``mappolag.py``); M: the
  sequential token (1 when update_order="simultaneous", the paper's eq. 22).
* Why not eq. 21 literally, Â − Σ_u λ_u (Â_u + d_u) with d_u = (1 − γ)(J_u − c_u): d_u does not
  depend on θ, so it has no gradient in eq. 19; inside PPO-clip it only shifts every advantage by
  −λd, which pushes every sampled action's ratio down (learner-audit.md finding 5). The literal form
  stays available as ``lagrangian_form=eq21``; ``plain`` (Â − Σλ_u Â_u) is SafePO's / the MACPO
  repo's. The 1/(1 + Σλ) keeps the advantage's scale bounded as λ grows (omnisafe PPOLag
  ``_compute_adv_surrogate``), so the clip keeps its meaning.
* λ_u ≥ 0 is one :class:`~agentd.learner.coef.Lagrange` step per update, before the epochs
  (lagrangian.CostLagrangian, shared with MAFOCOPS's ν), on
  the loss −λ_u·(J_u − c_u), with J_u the mean cost of the episodes finished since the last update
  (buffer.EpisodeCosts) and c_u the task's per-episode limit: Adam with lr 0.035 from 0.001
  (omnisafe PPOLag), since the paper gives no rule; the MAPPO-L code's nearly constant λ is the
  ``preset=safepo``.

Logs, besides the base keys: lambda{u} (the multipliers this update used) and cost_gap{u} (J_u − c_u).
Other defaults: SafePO MAPPO-Lag on Safe MaMuJoCo (safe-mamujoco.md §5.3), since dec-mappo-l.md §4.1
trains "with same network architecture and hyperparameters as the original MAPPO-L".
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch

from .coef import Lagrange
from .ippo import IPPO, clip_surrogate
from .lagrangian import CostLagrangian


class DecMAPPOL(CostLagrangian, IPPO):
    """DEC-MAPPO-L: PPO-clip on (A − Σλ_u A_u)/(1 + Σλ_u), λ by a dual optimiser, κ-hop policy (dec-mappo-l.md)."""

    algo = "dec-mappo-l"
    config_keys = CostLagrangian.config_keys + ("lambda_init", "lambda_lr", "lambda_max", "lagrangian_form")
    defaults: ClassVar[dict[str, Any]] = {
        "update_order": "simultaneous",  # eq. 22: each agent optimises its own surrogate (no token)
        "actor_input": "khop",  # eqs. 14, 18, 22 and Alg. 1 l.3: π^i(·|s_{N_κ^i})
        "epochs": 5,  # safe-mamujoco.md §5.3: SafePO MAPPO-Lag learning_iters 5
        "minibatches": 1,  # §5.3: num_mini_batch 1
        # λ: omnisafe PPOLag (config.py); lr 5e-4 / 5e-4, hidden 128 × 2, clip 0.2, entropy 0.01, γ 0.99,
        # GAE λ 0.95: §5.3, = base
    }

    def _make_coefs(self) -> Lagrange:
        c = self.cfg
        return Lagrange([f"lambda{u}" for u in range(self.n_costs)], c.lambda_init, c.lambda_lr,
                        c.lambda_optimizer, upper=c.lambda_max or None)

    def advantage_form(self) -> str:
        return self.cfg.lagrangian_form

    def policy_loss(self, ratio: torch.Tensor, logp_new: torch.Tensor, logp_old: torch.Tensor,
                    adv: torch.Tensor, kl_per_state: torch.Tensor,
                    cost_adv: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        return clip_surrogate(ratio, self.lagrangian_advantage(adv, cost_adv), self.cfg.clip), {}
