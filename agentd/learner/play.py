"""Playing a trained policy without learning: what `khop eval` and `khop render` act with.

A mixin of :class:`~agentd.learner.base.Learner`, so every algorithm gets it: the acting path of
training (``act``) records the half-transition and updates the running normalisers; these methods
touch neither the buffer, nor the statistics, nor any counter, so a loaded checkpoint can be played
for as long as wanted and still be the checkpoint. The policy-gradient learners act with their
actor here; the off-policy ones override what differs (IQL: its Q-values and ε; IDDPG: μ and its
exploration noise).
"""
from __future__ import annotations

import numpy as np
import torch

from .dists import DiagGaussian


def one_hot_argmax(probs: np.ndarray) -> np.ndarray:
    """Rows of ``probs`` as one-hot float64 vectors on their largest entry (ties: the lowest index)."""
    out = np.zeros(probs.shape, dtype=np.float64)
    out[np.arange(len(probs)), probs.argmax(axis=1)] = 1.0
    return out


class Playing:
    """``policy_action`` and ``action_probs`` for any batch of inputs (B rows, not only E)."""

    def _policy_input(self, obs: np.ndarray, critic_in: np.ndarray) -> torch.Tensor:
        """What the policy reads (own obs, or the κ-hop input with actor_input=khop), normalised
        with the running statistics as they are, never updating them."""
        x, dim, norm, what = ((critic_in, self.critic_dim, self.critic_norm, "critic_in") if self.khop_actor
                              else (obs, self.agent.obs_dim, self.obs_norm, "obs"))
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != dim:
            raise ValueError(f"{what} must have shape (B, {dim}), got {x.shape}")
        return torch.from_numpy(np.ascontiguousarray(norm.normalize(x) if self.cfg.normalize_obs else x))

    def action_probs(self, obs: np.ndarray, critic_in: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """π(·|input) ``[B, n_actions]`` float64 of a discrete learner, as it would act;
        ``deterministic``: one-hot on its most likely action. Why: `khop eval` computes a tabular
        game's exact J from these tables."""
        if not self.discrete:
            raise ValueError(f"action_probs is for discrete actions; this agent's are {self.agent.act_kind}")
        with torch.inference_mode():
            probs = torch.exp(self.actor(self._policy_input(obs, critic_in))).double().numpy()
        return one_hot_argmax(probs) if deterministic else probs / probs.sum(axis=1, keepdims=True)

    def policy_action(self, obs: np.ndarray, critic_in: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """The current policy's action for each row. ``deterministic``: the mode (argmax, or the
        Gaussian mean clipped to the action range); otherwise a sample drawn with the learner's
        own generator (discrete: from :meth:`action_probs`)."""
        if self.discrete:
            probs = self.action_probs(obs, critic_in, deterministic)
            if deterministic:
                return probs.argmax(axis=1).astype(np.int64)
            return torch.multinomial(torch.from_numpy(probs), 1, generator=self.gen).squeeze(-1).numpy()
        with torch.inference_mode():
            params = self.actor(self._policy_input(obs, critic_in))
            a = DiagGaussian.split(params)[0] if deterministic else self.dist.sample(params, self.gen)[0]
        return np.clip(a.numpy(), self.agent.act_low, self.agent.act_high).astype(np.float32)
