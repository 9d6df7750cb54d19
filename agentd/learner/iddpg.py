"""IDDPG: independent DDPG, each agent on its own transitions (Lillicrap et al. 2016; the DPO
paper's continuous baseline, dpo.md §4.3 and App. B: 3-layer MLPs, actor and critic lr 5e-4).

    a = μ(o) ∈ [−1, 1]^d (tanh head), acting a + N(0, σ²) clipped to [−1, 1], scaled to [low, high]
    critic  L_Q = mean_B (Q(x, a) − y)²,   y = r + γ·(1 − done)·Q'(x', μ'(o'))
    actor   L_μ = −mean_B Q(x, μ(o))
    targets θ' ← (1 − τ)·θ' + τ·θ after every gradient step

o is the agent's local observation (or, with ``actor_input=khop``, the κ-hop input); x is the κ-hop
critic input, so the critic is Q(critic_in, own action) — as the other learners' critics, it sees the κ-ball.
Actions live in [−1, 1] inside the learner (replay and critic input) and are mapped affinely to
[act_low, act_high] for the env. Logs: value_loss, policy_loss, q_mean, replay_size, updates.
"""
from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .adam import Adam
from .nets import MLP
from .offpolicy import OffPolicyLearner, polyak


class IDDPG(OffPolicyLearner):
    """IDDPG: independent DDPG per agent, Gaussian exploration, Polyak targets (dpo.md App. B)."""

    algo = "iddpg"
    act_kinds = ("continuous",)
    config_keys = OffPolicyLearner.config_keys + ("lr_actor", "tau", "expl_noise")
    defaults: ClassVar[dict[str, Any]] = {
        # actor and critic lr 5e-4, 3-layer MLPs of 128 (dpo.md App. B) = base defaults; τ and the
        # noise σ are not in the paper (LearnerConfig: TD3 / SB3 defaults).
    }

    def _build_nets(self) -> None:
        cfg, d = self.cfg, self.agent.act_dim
        hidden = [cfg.hidden] * cfg.hidden_layers
        policy_dim = self.critic_dim if self.khop_actor else self.agent.obs_dim
        self.mu = MLP([policy_dim] + hidden + [d], 0.01, self.gen)
        self.q = MLP([self.critic_dim + d] + hidden + [1], 1.0, self.gen)
        self.mu_target = copy.deepcopy(self.mu).requires_grad_(False)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.mu_opt = Adam(self.mu.parameters(), lr=cfg.lr_actor, eps=1e-5)
        self.q_opt = Adam(self.q.parameters(), lr=cfg.lr_critic, eps=1e-5)

    def _modules(self) -> dict[str, Any]:
        return {"actor": self.mu, "critic": self.q, "actor_target": self.mu_target,
                "critic_target": self.q_target, "actor_opt": self.mu_opt, "critic_opt": self.q_opt}

    def _scale(self, a: np.ndarray) -> np.ndarray:
        lo, hi = self.agent.act_low, self.agent.act_high
        return (lo + (a + 1.0) * 0.5 * (hi - lo)).astype(np.float32)

    def _select(self, obs: torch.Tensor, cin: torch.Tensor,
                mask: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        mean = torch.tanh(self.mu(self._policy_in(obs, cin)))
        noise = torch.randn(mean.shape, generator=self.gen) * self.cfg.expl_noise
        a = (mean + noise).clamp(-1.0, 1.0).numpy().astype(np.float32)
        return self._scale(a), a

    def policy_action(self, obs: np.ndarray, critic_in: np.ndarray, deterministic: bool = True,
                      mask: np.ndarray | None = None) -> np.ndarray:
        """μ(o) scaled to the action range; not ``deterministic``: with its exploration noise, as it acts.
        (``mask`` must be None: continuous actions are never masked.)"""
        self._mask(mask, len(obs))
        with torch.inference_mode():
            mean = torch.tanh(self.mu(torch.from_numpy(self._policy_input(obs, critic_in))))
            if not deterministic:
                mean = (mean + torch.randn(mean.shape, generator=self.gen) * self.cfg.expl_noise).clamp(-1.0, 1.0)
        return self._scale(mean.numpy().astype(np.float32))

    def _q(self, net: nn.Module, cin: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return net(torch.cat([cin, a], -1)).squeeze(-1)

    def _gradient_step(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.cfg
        with torch.no_grad():
            a_next = torch.tanh(self.mu_target(self._policy_in(b["next_obs"], b["next_cin"])))
            y = b["rew"] + cfg.gamma * (1.0 - b["done"]) * self._q(self.q_target, b["next_cin"], a_next)
        q = self._q(self.q, b["cin"], b["act"])
        value_loss = (q - y).square().mean()
        self.q_opt.zero_grad()
        value_loss.backward()
        self.q_opt.clip_grad_norm_(cfg.max_grad_norm)
        self.q_opt.step()

        mu = torch.tanh(self.mu(self._policy_in(b["obs"], b["cin"])))
        policy_loss = -self._q(self.q, b["cin"], mu).mean()
        self.mu_opt.zero_grad()
        policy_loss.backward()
        self.mu_opt.clip_grad_norm_(cfg.max_grad_norm)
        self.mu_opt.step()
        polyak(self.mu_target, self.mu, cfg.tau)
        polyak(self.q_target, self.q, cfg.tau)
        return {"value_loss": value_loss.item(), "policy_loss": policy_loss.item(), "q_mean": q.mean().item()}
