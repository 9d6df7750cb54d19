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
* λ_u ≥ 0 is one :class:`~agentd.learner.coef.Lagrange` step per update, before the epochs, on
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

import numpy as np
import torch

from .base import Batch
from .coef import Lagrange
from .ippo import IPPO, clip_surrogate


class DecMAPPOL(IPPO):
    """DEC-MAPPO-L: PPO-clip on (A − Σλ_u A_u)/(1 + Σλ_u), λ by a dual optimiser, κ-hop policy (dec-mappo-l.md)."""

    algo = "dec-mappo-l"
    uses_costs = True
    config_keys = IPPO.config_keys + ("lambda_optimizer", "lambda_init", "lambda_lr", "lambda_max", "lagrangian_form")
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

    def cost_gaps(self) -> np.ndarray:
        """J_u − c_u from the per-episode cost estimate of the latest rollout."""
        return self.ep_cost_est - self.cost_limits

    def before_update(self, batch: Batch) -> dict[str, float]:
        assert self.coefs is not None
        gap = self.cost_gaps()
        self.coefs.step(gap)
        self._d = torch.as_tensor((1.0 - self.cfg.gamma) * gap, dtype=torch.float32)  # eq. 21's d_u
        return {**self.coefs.values, **{f"cost_gap{u}": float(x) for u, x in enumerate(gap)}}

    def lagrangian_advantage(self, adv: torch.Tensor, cost_adv: torch.Tensor | None) -> torch.Tensor:
        """A^{(λ)} in the configured ``lagrangian_form``, with the current λ (and d for eq21)."""
        if cost_adv is None or cost_adv.shape[-1] == 0:
            return adv
        assert self.coefs is not None
        lam = torch.as_tensor(self.coefs.as_list(), dtype=adv.dtype)
        form = self.cfg.lagrangian_form
        if form == "eq21":
            d = getattr(self, "_d", torch.zeros(len(lam))).to(adv.dtype)
            return adv - ((cost_adv + d) * lam).sum(-1)
        combined = adv - (cost_adv * lam).sum(-1)
        return combined / (1.0 + lam.sum()) if form == "normalised" else combined

    def policy_loss(self, ratio: torch.Tensor, logp_new: torch.Tensor, logp_old: torch.Tensor,
                    adv: torch.Tensor, kl_per_state: torch.Tensor,
                    cost_adv: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        return clip_surrogate(ratio, self.lagrangian_advantage(adv, cost_adv), self.cfg.clip), {}
