r"""The discounted local occupancy of eq. 20 (scalable-general-utilities.md) from a stream of
lockstep samples, for the shadow-reward learner (shadow_pg.py).

Eq. 20 averages Σ_k γ^k·e_i(s_i^k, a_i^k) over B whole trajectories from the start distribution ξ.
A learner here sees consecutive lockstep samples instead, each env copy somewhere inside an
episode, and does not observe k. :class:`EpisodeOccupancy` derives k per env copy from the done
flags, adds each sample's γ^k·e(x, a) to its episode's running sum, and lets an episode join the
estimate when it ends:

    λ̃(x, a) = Σ_τ Σ_k γ^k·1[x_k = x, a_k = a] / ((1 − γ)·Σ_τ Σ_k γ^k)

over the episodes τ that ended since the previous estimate: eq. 20 normalised so that
(1 − γ)·Σ λ̃ = 1 (eq. 20 itself sums to (1 − γ^H)/(1 − γ) over H-step episodes). Weighting each
rollout's own samples instead would be biased: env copies started together stay in step, so a
rollout shorter than an episode may hold no early step at all, and its γ^k-weighted frequencies
are then those of the late steps. An episode that spans rollouts mixes the policies of the
updates it spans, as EpisodeCosts' cost sums do (buffer.py).

When no episode ended in a rollout the previous estimate is kept; before the first one ends, the
running episodes' partial sums serve (they hold the early steps, which weigh most); with neither
(a restore from a checkpoint saved before any estimate, then no done) :meth:`estimate` is None.

Episode starts: a fresh tracker takes its first sample as an episode start (the envserver resets
every copy before its first STEP). After a restore the copies are inside episodes this learner
did not see start — an agent restarted mid-run joins them where they are (README "Fault
tolerance") — so each copy counts from its first done on and its samples before that weigh 0.
Only the last estimate is saved.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class EpisodeOccupancy:
    """Per env copy: steps since the episode's start, whether that start was seen, and the
    γ^k-weighted visits of the running episode; plus the visits of episodes ended since the last
    :meth:`estimate`."""

    def __init__(self, n_envs: int, n_states: int, n_actions: int, gamma: float) -> None:
        self.gamma = gamma
        self.step = np.zeros(n_envs, dtype=np.int64)
        self.seen = np.ones(n_envs, dtype=bool)
        self.running = np.zeros((n_envs, n_states, n_actions))
        self.ended = np.zeros((n_states, n_actions))
        self.n_ended = 0
        self.last: np.ndarray | None = None

    def add(self, states: np.ndarray, actions: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Take one rollout (``[T, E]`` local states, actions, done flags; done[t]: sample t was its
        episode's last) and return each sample's weight γ^k, 0 where its episode's start was not seen."""
        w = np.empty(dones.shape)
        envs = np.arange(dones.shape[1])
        for t in range(dones.shape[0]):
            w[t] = np.where(self.seen, self.gamma ** self.step, 0.0)
            self.running[envs, states[t], actions[t]] += w[t]
            end = dones[t]
            self.ended += self.running[end & self.seen].sum(axis=0)
            self.n_ended += int((end & self.seen).sum())
            self.running[end] = 0.0
            self.step = np.where(end, 0, self.step + 1)
            self.seen |= end
        return w

    def estimate(self) -> np.ndarray | None:
        """λ̃ [k_s, k_a] (module doc): the episodes ended since the last call, else the previous
        estimate, else the running partial sums, else None."""
        if self.n_ended:
            self.last = self.ended / ((1.0 - self.gamma) * self.ended.sum())
            self.ended[:] = 0.0
            self.n_ended = 0
            return self.last.copy()
        if self.last is not None:
            return self.last.copy()
        partial = self.running.sum(axis=0)
        return partial / ((1.0 - self.gamma) * partial.sum()) if partial.sum() > 0 else None

    def state_dict(self) -> dict[str, Any]:
        return {"last": None if self.last is None else self.last.tolist()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """The last estimate; every copy's episode start is unknown from here on (module doc)."""
        self.last = None if d["last"] is None else np.asarray(d["last"], dtype=np.float64)
        self.step[:] = 0
        self.seen[:] = False
        self.running[:] = 0.0
        self.ended[:] = 0.0
        self.n_ended = 0
