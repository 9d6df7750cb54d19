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

from .dists import Categorical, DiagGaussian


def one_hot_argmax(probs: np.ndarray) -> np.ndarray:
    """Rows of ``probs`` as one-hot float64 vectors on their largest entry (ties: the lowest index)."""
    out = np.zeros(probs.shape, dtype=np.float64)
    out[np.arange(len(probs)), probs.argmax(axis=1)] = 1.0
    return out


class Playing:
    """``policy_action`` and ``action_probs`` for any batch of inputs (B rows, not only E)."""

    def _rows(self, x: np.ndarray, dim: int, what: str) -> np.ndarray:
        """``x`` as float32 rows [E, dim], or a ValueError naming ``what`` is wrong."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape != (self.n_envs, dim):
            raise ValueError(f"{what} must have shape ({self.n_envs}, {dim}), got {x.shape}")
        return x

    def _mask(self, mask: np.ndarray | None, rows: int) -> torch.Tensor | None:
        """An action mask [rows, n_actions] as bool, checked: given exactly when the agent's task
        masks actions (AgentSpec.action_mask), with at least one available action per row."""
        if not self.agent.action_mask:
            if mask is not None:
                raise ValueError("an action mask was given, but this agent's task does not mask actions")
            return None
        m = None if mask is None else np.asarray(mask, dtype=bool)
        if m is None or m.shape != (rows, self.agent.n_actions) or not m.any(axis=1).all():
            raise ValueError(f"this agent's task masks actions: a mask of shape ({rows}, {self.agent.n_actions}) "
                             f"with an available action in every row is needed, got "
                             f"{None if m is None else m.shape}")
        return torch.from_numpy(m)

    def _apply_mask(self, params: torch.Tensor, mask: np.ndarray | None) -> torch.Tensor:
        """The actor's ``params`` restricted to the available actions (unchanged without masks)."""
        m = self._mask(mask, params.shape[0])
        return params if m is None else self.dist.masked(params, m)

    def _policy_input(self, obs: np.ndarray, critic_in: np.ndarray) -> np.ndarray:
        """What the policy reads (own obs, or the κ-hop input with actor_input=khop), normalised
        with the running statistics as they are, never updating them."""
        x, dim, norm, what = ((critic_in, self.critic_dim, self.critic_norm, "critic_in") if self.khop_actor
                              else (obs, self.agent.obs_dim, self.obs_norm, "obs"))
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != dim:
            raise ValueError(f"{what} must have shape (B, {dim}), got {x.shape}")
        return norm.normalize(x) if self.cfg.normalize_obs else x

    def action_probs(self, obs: np.ndarray, critic_in: np.ndarray, deterministic: bool = False,
                     mask: np.ndarray | None = None) -> np.ndarray:
        """π(·|input) ``[B, n_actions]`` float64 of a discrete learner, as it would act (over the
        available actions, ``mask``, where its task masks them); ``deterministic``: one-hot on its
        most likely action. Why: `khop eval` computes a tabular game's exact J from these tables."""
        if not self.discrete:
            raise ValueError(f"action_probs is for discrete actions; this agent's are {self.agent.act_kind}")
        with torch.inference_mode():
            params = self._apply_mask(torch.from_numpy(self.actor.infer(self._policy_input(obs, critic_in))), mask)
            probs = torch.exp(params).double().numpy()
        return one_hot_argmax(probs) if deterministic else probs / probs.sum(axis=1, keepdims=True)

    def policy_action(self, obs: np.ndarray, critic_in: np.ndarray, deterministic: bool = True,
                      mask: np.ndarray | None = None) -> np.ndarray:
        """The current policy's action for each row. ``deterministic``: the mode (argmax, or the
        Gaussian mean); otherwise a sample drawn with the learner's own generator (discrete: from
        :meth:`action_probs`, over the actions ``mask`` allows). Continuous actions as training sent them."""
        if self.discrete:
            probs = self.action_probs(obs, critic_in, deterministic, mask)
            if deterministic:
                return probs.argmax(axis=1).astype(np.int64)
            return torch.multinomial(torch.from_numpy(probs), 1, generator=self.gen).squeeze(-1).numpy()
        params = self.actor.infer(self._policy_input(obs, critic_in))
        a = params[:, :self.agent.act_dim] if deterministic else DiagGaussian.sample(params, self.gen)[0]
        return self._as_sent(a)

    def _draw(self, x: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distribution parameters, action, log-prob) of one sample per row of the actor's normalised
        input ``x``, as numpy. The acting path of training: the network in numpy (nets.MLP.infer, a
        third of torch's cost at batch E), a Gaussian drawn in numpy, a categorical by torch (masks,
        multinomial) under inference_mode, which skips autograd's bookkeeping (bench/NOTES.md §5)."""
        params = self.actor.infer(x)
        if not self.discrete:
            action, logp = DiagGaussian.sample(params, self.gen)
            return params, action, logp
        with torch.inference_mode():
            masked = self._apply_mask(torch.from_numpy(params), mask)
            action, logp = Categorical.sample(masked, self.gen)
        return masked.numpy(), action.numpy(), logp.numpy()

    def _as_sent(self, a: np.ndarray) -> np.ndarray:
        """A continuous action [B, d] as the agent sends it, a new float32 array: clipped into the action
        range, or with ``clip_actions`` off the raw sample (as MACPO's and SafePO's runners send it).
        The clip gives np.clip(…).astype(np.float32)'s values without np.clip's wrapper and a second
        copy (2.6 → 1.4 µs at batch 8, bench/NOTES.md §12): it runs on every acting step."""
        if not self.cfg.clip_actions:
            return a.astype(np.float32)
        out = np.maximum(a, self.agent.act_low, dtype=np.float32)
        return np.minimum(out, self.agent.act_high, out=out)
