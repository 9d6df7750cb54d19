r"""DEC-MAPPO-L: decentralised MAPPO-Lagrangian on the κ-hop critic (dec-mappo-l.md §3.3, Alg. 1).

Each agent i keeps a reward critic V(s_{N_κ^i}) and one cost critic V_u per cost u (eq. 23, on the
κ-hop input), and maximises the PPO-clip form (eq. 22) of the Lagrangian (eq. 19–21)::

    A^{(λ)} = M·Â − Σ_u λ_u (Â_u + d_u)                                          (eq. 21)
    L       = −mean_B min(r·A^{(λ)}, clip(r, 1−ε, 1+ε)·A^{(λ)})                  (eq. 22)

* Â, Â_u: GAE advantages, each standardised over the batch (as the MAPPO-L code the paper
  reuses, SafePO ``mappolag.py``); M: the sequential token (1 when update_order="simultaneous",
  the paper's eq. 22, where every agent optimises independently).
* d_u = (1 − γ)·(J_u − c_u): the constraint's value J_u(π) − c_u of eq. 18–19 put on the
  per-step scale of an advantage, with J_u the mean per-episode cost of this rollout (buffer
  .EpisodeCosts) and c_u the task's per-episode limit. The paper leaves the scale implicit; the
  (1 − γ) factor is the MAPPO-L / MACPO code's ``(aver_episode_costs − safety_bound)·(1 − γ)``.
* λ_u ≥ 0 by projected dual ascent before each policy update (the inner min of eq. 19: its
  derivative at θ_old is −(E[Â_u] + d_u) = −d_u since Â_u is centred)::

      λ_u ← max(0, λ_u + lr_λ · d_u)                                             (coef.Lagrange)

  SafePO steps λ once per minibatch and adds the surrogate term mean(r·Â_u); we step once per
  update on the rollout's gap, so λ moves only when the constraint is violated or slack.

Logs, besides the base keys: lambda{u} (the multipliers this update used) and cost_gap{u} (d_u).
Defaults: SafePO MAPPO-Lag on Safe MaMuJoCo (safe-mamujoco.md §5.3), since dec-mappo-l.md §4.1
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
    """DEC-MAPPO-L: PPO-clip on A − Σλ_u(A_u + d_u), λ by projected dual ascent (dec-mappo-l.md)."""

    algo = "dec-mappo-l"
    uses_costs = True
    defaults: ClassVar[dict[str, Any]] = {
        "update_order": "simultaneous",  # eq. 22: each agent optimises its own surrogate (no token)
        "epochs": 5,  # safe-mamujoco.md §5.3: SafePO MAPPO-Lag learning_iters 5
        "minibatches": 1,  # §5.3: num_mini_batch 1
        "lambda_init": 0.78,  # §5.2/§5.3: lamda_lagr 0.78 (MACPO repo script and SafePO)
        "lambda_lr": 1e-5,  # §5.3: SafePO lagrangian_coef_rate 1e-5
        # lr 5e-4 / 5e-4, hidden 128 × 2, clip 0.2, entropy 0.01, γ 0.99, GAE λ 0.95: §5.3, = base
    }

    def _make_coefs(self) -> Lagrange:
        return Lagrange([f"lambda{u}" for u in range(self.n_costs)], self.cfg.lambda_init, self.cfg.lambda_lr)

    def cost_gaps(self) -> np.ndarray:
        """d_u = (1 − γ)(J_u − c_u) from the latest rollout's per-episode cost estimate."""
        return (1.0 - self.cfg.gamma) * (self.ep_cost_est - self.cost_limits)

    def before_update(self, batch: Batch) -> dict[str, float]:
        assert self.coefs is not None
        d = self.cost_gaps()
        self.coefs.step(d)
        self._d = torch.as_tensor(d, dtype=torch.float32)
        return {**self.coefs.state_dict(), **{f"cost_gap{u}": float(x) for u, x in enumerate(d)}}

    def lagrangian_advantage(self, adv: torch.Tensor, cost_adv: torch.Tensor | None) -> torch.Tensor:
        """A^{(λ)} = A − Σ_u λ_u (A_u + d_u)  (eq. 21), with the current λ and d."""
        if cost_adv is None or cost_adv.shape[-1] == 0:
            return adv
        assert self.coefs is not None
        lam = torch.as_tensor(self.coefs.as_list(), dtype=adv.dtype)
        d = getattr(self, "_d", torch.zeros(len(lam))).to(adv.dtype)
        return adv - ((cost_adv + d) * lam).sum(-1)

    def policy_loss(self, ratio: torch.Tensor, logp_new: torch.Tensor, logp_old: torch.Tensor,
                    adv: torch.Tensor, kl_per_state: torch.Tensor,
                    cost_adv: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        return clip_surrogate(ratio, self.lagrangian_advantage(adv, cost_adv), self.cfg.clip), {}
