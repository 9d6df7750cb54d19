r"""What the Lagrangian learners (DEC-MAPPO-L / MAPPO-L's λ, MAFOCOPS's ν) share: one dual variable
per cost, stepped once per update on the constraint gap, and the advantage that folds the costs in
(omnisafe's ``_compute_adv_surrogate``, written once here).

With μ_u the multipliers (λ_u or ν_u), Â the (token-weighted) standardised reward advantage and Â_u
the standardised cost advantages, :func:`lagrangian_advantage` in each form::

    plain       Â − Σ_u μ_u Â_u                    (SafePO / MACPO-repo MAPPO-L; MAFOCOPS eq. 11's η̂ − ν·Â)
    normalised  (Â − Σ_u μ_u Â_u) / (1 + Σ_u μ_u)  (omnisafe PPOLag: the scale stays bounded as μ grows)
    eq21        Â − Σ_u μ_u (Â_u + d_u)            (dec-mappo-l.md eq. 21 literally, d_u = (1 − γ)(J_u − c_u))

:class:`CostLagrangian` is the base of both learners: before the epochs it steps the multipliers on
J_u − c_u (J_u the per-episode cost estimate of the rollout, c_u the task's limit) and logs them with
``cost_gap{u}``; the subclass builds the multipliers (``_make_coefs``: names, rate, bounds) and picks
the form (:meth:`CostLagrangian.advantage_form`).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Batch, Learner


def lagrangian_advantage(adv: torch.Tensor, cost_adv: torch.Tensor | None, mult: list[float], form: str,
                         d: torch.Tensor | None = None) -> torch.Tensor:
    """The combined advantage ``[B]`` of ``adv [B]`` and ``cost_adv [B, m]`` with multipliers ``mult``
    (module doc); ``d`` [m] only for ``eq21`` (zeros when None). No cost columns: ``adv`` itself."""
    if cost_adv is None or cost_adv.shape[-1] == 0:
        return adv
    lam = torch.as_tensor(mult, dtype=adv.dtype)
    if form == "eq21":
        d = torch.zeros(len(lam)) if d is None else d
        return adv - ((cost_adv + d.to(adv.dtype)) * lam).sum(-1)
    combined = adv - (cost_adv * lam).sum(-1)
    return combined / (1.0 + lam.sum()) if form == "normalised" else combined


class CostLagrangian(Learner):
    """A constrained policy-gradient learner with one multiplier per cost (module doc)."""

    uses_costs = True
    config_keys = Learner.config_keys + ("lambda_optimizer",)  # the multipliers' optimiser (coef.Lagrange)

    def advantage_form(self) -> str:
        """How Â and the Â_u combine: ``plain``, ``normalised`` or ``eq21`` (module doc)."""
        raise NotImplementedError

    def cost_gaps(self) -> np.ndarray:
        """J_u − c_u from the per-episode cost estimate of the latest rollout."""
        return self.ep_cost_est - self.cost_limits

    def before_update(self, batch: Batch) -> dict[str, float]:
        """One multiplier step on the gaps, before the epochs; keeps eq. 21's d_u = (1 − γ)·gap."""
        assert self.coefs is not None
        gap = self.cost_gaps()
        self.coefs.step(gap)
        self._d = torch.as_tensor((1.0 - self.cfg.gamma) * gap, dtype=torch.float32)
        return {**self.coefs.values, **{f"cost_gap{u}": float(x) for u, x in enumerate(gap)}}

    def lagrangian_advantage(self, adv: torch.Tensor, cost_adv: torch.Tensor | None) -> torch.Tensor:
        """:func:`lagrangian_advantage` with the current multipliers, this learner's form and d."""
        assert self.coefs is not None
        return lagrangian_advantage(adv, cost_adv, self.coefs.as_list(), self.advantage_form(),
                                    getattr(self, "_d", None))
