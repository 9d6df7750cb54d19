"""IQL: independent Q-learning, each agent a DQN on its own transitions (Tan 1993; Tampuu et al.
2015; the DPO paper's discrete baseline, dpo.md §4 and App. B).

    y = r + γ·(1 − done)·Q'(s', argmax_a Q(s', a))      (Double DQN, van Hasselt et al. 2016)
    y = r + γ·(1 − done)·max_a Q'(s', a)                (double_q = False)
    L = mean_B (Q(s, a) − y)²

Q' is a copy of Q refreshed every ``target_update_every`` gradient steps. Acting is ε-greedy with ε
annealed linearly from eps_start to eps_finish over eps_anneal_steps of this agent's transitions
(summed over the E copies). Input s: by default the agent's own local observation, as PyMARL's
IQL (an independent learner); ``actor_input = "khop"`` gives Q the κ-hop critic input instead,
i.e. Q-learning on communicated state (then κ matters for IQL as for the critics of the others).
Logs: value_loss (L), q_mean, epsilon, grad_norm, replay_size, updates.
"""
from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import torch

from .adam import Adam
from .nets import MLP
from .offpolicy import OffPolicyLearner
from .play import one_hot_argmax


class IQL(OffPolicyLearner):
    """IQL: independent (Double) DQN per agent, ε-greedy, target network (dpo.md App. B)."""

    algo = "iql"
    act_kinds = ("discrete",)
    config_keys = OffPolicyLearner.config_keys + ("target_update_every", "double_q", "eps_start", "eps_finish",
                                                  "eps_anneal_steps")
    defaults: ClassVar[dict[str, Any]] = {
        # lr 5e-4 (dpo.md App. B "learning rate of IQL is also 5e-4"; PyMARL default.yaml lr 0.0005),
        # hidden 128 (App. B; an MLP here, PyMARL's RNN is for partial observability), γ 0.99, grad
        # clip 10 (PyMARL grad_norm_clip) — all equal to the base defaults. ε 1.0 → 0.05 over 50000,
        # target every 200, double_q: PyMARL iql.yaml (LearnerConfig).
    }

    def _build_nets(self) -> None:
        cfg = self.cfg
        in_dim = self.critic_dim if self.khop_actor else self.agent.obs_dim
        self.q = MLP([in_dim] + [cfg.hidden] * cfg.hidden_layers + [self.agent.n_actions], 1.0, self.gen)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.q_opt = Adam(self.q.parameters(), lr=cfg.lr_critic, eps=1e-5)

    def _modules(self) -> dict[str, Any]:
        return {"q": self.q, "q_target": self.q_target, "q_opt": self.q_opt}

    def epsilon(self) -> float:
        c = self.cfg
        frac = min(1.0, self.samples_seen / c.eps_anneal_steps) if c.eps_anneal_steps else 1.0
        return c.eps_start + frac * (c.eps_finish - c.eps_start)

    def _select(self, obs: torch.Tensor, cin: torch.Tensor,
                mask: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        greedy = masked_q(self.q(self._policy_in(obs, cin)), mask).argmax(-1).numpy()
        explore = self.np_rng.random(self.n_envs) < self.epsilon()
        if mask is None:
            uniform = self.np_rng.integers(0, self.agent.n_actions, self.n_envs)
        else:  # uniform over each row's available actions: the largest of uniform keys where allowed
            uniform = (self.np_rng.random(tuple(mask.shape)) * mask.numpy()).argmax(-1)
        action = np.where(explore, uniform, greedy).astype(np.int64)
        return action, action.copy()

    def action_probs(self, obs: np.ndarray, critic_in: np.ndarray, deterministic: bool = False,
                     mask: np.ndarray | None = None) -> np.ndarray:
        """The ε-greedy policy it acts with at its current ε (``deterministic``: greedy in Q), over
        the available actions ``mask`` where its task masks them."""
        m = self._mask(mask, len(obs))
        with torch.inference_mode():
            q = self.q(torch.from_numpy(self._policy_input(obs, critic_in)))
            greedy = one_hot_argmax(masked_q(q, m).double().numpy())
        eps = 0.0 if deterministic else self.epsilon()
        allowed = np.ones_like(greedy) if m is None else m.numpy().astype(np.float64)
        return (1.0 - eps) * greedy + eps * allowed / allowed.sum(axis=1, keepdims=True)

    def _gradient_step(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.cfg
        s, s_next = self._policy_in(b["obs"], b["cin"]), self._policy_in(b["next_obs"], b["next_cin"])
        with torch.no_grad():
            next_mask = b.get("next_mask")  # the bootstrap maximises over the successor's available actions
            q_next = masked_q(self.q_target(s_next), next_mask)
            if cfg.double_q:
                best = masked_q(self.q(s_next), next_mask).argmax(-1, keepdim=True)
                v_next = q_next.gather(-1, best).squeeze(-1)
            else:
                v_next = q_next.max(-1).values
            y = b["rew"] + cfg.gamma * (1.0 - b["done"]) * v_next
        q = self.q(s).gather(-1, b["act"].long().unsqueeze(-1)).squeeze(-1)
        loss = (q - y).square().mean()
        self.q_opt.zero_grad()
        loss.backward()
        grad_norm = self.q_opt.clip_grad_norm_(cfg.max_grad_norm)
        self.q_opt.step()
        if (self.grad_steps + 1) % cfg.target_update_every == 0:
            self.q_target.load_state_dict(self.q.state_dict())
        return {"value_loss": loss.item(), "q_mean": q.mean().item(), "epsilon": self.epsilon(),
                "grad_norm": float(grad_norm)}


def masked_q(q: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Q-values with unavailable actions at −inf, so no argmax or max picks them (None: unchanged)."""
    return q if mask is None else q.masked_fill(~mask, float("-inf"))
