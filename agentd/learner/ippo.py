"""IPPO: independent PPO-clip, each agent on its own trajectories (de Witt et al. 2020; the DPO
paper's baseline, dpo.md App. B, clip 0.2) — and HAPPO, the same clip loss on the sequential
token-weighted advantage.

    L^CLIP = −mean_B min(r·Â, clip(r, 1−ε, 1+ε)·Â)        (Schulman et al. 2017, eq. 7)

For HAPPO (Kuba et al. 2022) Â is M·Â with the token M = Π_{j before i} π_j^new/π_j^old that the
base multiplies in (base.Learner.update); since M ≥ 0, min(r·MÂ, clip(r)·MÂ) = M·min(r·Â, clip(r)·Â),
HAPPO's own form. The entropy bonus −c_ent·H is added by the base. Logs nothing beyond the base keys.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch

from .base import Learner


def clip_surrogate(ratio: torch.Tensor, adv: torch.Tensor, eps: float) -> torch.Tensor:
    """−mean min(r·A, clip(r, 1−ε, 1+ε)·A): the PPO-clip loss every clip learner shares."""
    return -torch.min(ratio * adv, torch.clamp(ratio, 1.0 - eps, 1.0 + eps) * adv).mean()


class IPPO(Learner):
    """Independent PPO-clip (de Witt et al. 2020), dpo.md App. B settings."""

    algo = "ippo"
    supports_sequential = True

    def policy_loss(self, ratio: torch.Tensor, logp_new: torch.Tensor, logp_old: torch.Tensor,
                    adv: torch.Tensor, kl_per_state: torch.Tensor,
                    cost_adv: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        return clip_surrogate(ratio, adv, self.cfg.clip), {}


class HAPPO(IPPO):
    """HAPPO: sequential PPO-clip on the token-weighted advantage (Kuba et al. 2022)."""

    algo = "happo"
    centralised = True  # κ = graph diameter by default (issue 4: centralized references)
    defaults: ClassVar[dict[str, Any]] = {
        "update_order": "sequential",  # agents update one after another, passing the token
        "epochs": 5,  # safe-mamujoco.md §5.3: SafePO HAPPO learning_iters 5
        "minibatches": 1,  # §5.3: num_mini_batch 1
        # lr 5e-4 / 5e-4, hidden 128 × 2, clip 0.2, entropy 0.01: §5.3, equal to the base defaults
    }
