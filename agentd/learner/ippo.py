"""IPPO: independent PPO-clip, each agent on its own trajectories (de Witt et al. 2020; the DPO
paper's baseline, dpo.md App. B, clip 0.2).

    L^CLIP = −mean_B min(r·Â, clip(r, 1−ε, 1+ε)·Â)        (Schulman et al. 2017, eq. 7)

The entropy bonus −c_ent·H is added by the base. Logs nothing beyond the base keys.
"""
from __future__ import annotations

import torch

from .base import Learner


class IPPO(Learner):
    algo = "ippo"

    def policy_loss(self, ratio: torch.Tensor, logp_new: torch.Tensor, logp_old: torch.Tensor,
                    adv: torch.Tensor, kl_per_state: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        eps = self.cfg.clip
        surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1.0 - eps, 1.0 + eps) * adv)
        return -surrogate.mean(), {}
