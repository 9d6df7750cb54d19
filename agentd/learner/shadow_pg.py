r"""Shadow-reward truncated policy gradient (scalable-general-utilities.md §3.4, Algorithm 1), as a
decentralised agentd learner on the tabular tasks.

Per update, for agent i on its own rollout of N = T·E samples n (local state x_n = the index of
the largest entry of its own observation — the one-hot of the tabular tasks — and its action a_n),
with k_n the number of steps since the start of the episode sample n belongs to:

    λ̃_i(x, a) = Σ_τ Σ_k γ^k·1[x_k = x, a_k = a] / ((1 − γ)·Σ_τ Σ_k γ^k)   (line 4, eq. 20 over the
                   episodes τ that ended since the last update, normalised so that (1 − γ)·Σ λ̃_i = 1;
                   occupancy.py)
    r̃_i(x, a) = ∇_{λ_i} f_i(λ̃_i)(x, a)                             (line 4: the shadow reward)
    Q̃_i(s_n, a_n): the λ-return of r̃_i bootstrapped by the critic V_i(s_{N_i^κ})   (line 5, TD(λ) on
                   the κ-hop state the relay delivers; the critic is fitted to the same targets)
    g̃_i = mean_n γ^{k_n}·∇ log π_i(a_n | o_n)·std[(1/n)·Σ_{j ∈ N_i^κ} Q̃_j(s_n, a_n)]   (line 6, eq. 21)
    θ_i ← θ_i + Adam step on g̃_i                                                      (line 7)

Why γ^k: eq. 20 sums γ^k·e_i(s^k, a^k) over B whole trajectories from the start distribution ξ,
so λ̃ estimates the *discounted* occupancy from ξ (eq. 4), and eq. 21 weights step k of each
trajectory by γ^k (eq. 6's form of the policy gradient). The agent does not observe k: the
tracker in occupancy.py derives it per env copy from the done flags and carries it from rollout
to rollout (how it treats episodes whose start it did not see, e.g. after a restore, is
documented there). ``occupancy=stationary`` is the earlier estimator: λ̃ the plain visit
frequencies of the rollout and no γ^k in the gradient, so the learner maximises f of the time-average
occupancy over the episode instead — a different optimum whenever ξ is far from what the utility
wants (experiments/results/shadow_pg_occupancy.md).

Utilities (``--set utility=…``; utility.py): ``entropy`` f_i = −Σ_x d_i(x)·log d_i(x), d_i = (1−γ)·Σ_a λ_i
(maximum-entropy exploration; d floored at ``occupancy_floor``); ``linear`` f_i = ⟨r, λ_i⟩ with r the
task's reward, so r̃ is the reward itself; ``target`` f_i = −Σ_x (d_i(x) − d*(x))² with d* from
``utility_target`` (uniform when empty).

The Q̃_j of the ball's agents arrive over the links through agentd/qvals.py (:meth:`shadow_q` →
exchange → :meth:`update_from_q`). Where we chose, the paper being silent or tabular:

* the actor is the base's MLP on the κ-hop input (``actor_input=khop``, the paper's localized
  policy π_i(a_i | s_{N_i^κ})); ``actor_input=local`` gives the κ = 0 member, a tabular softmax π_i(a | x);
* the samples are consecutive lockstep transitions, not B fresh trajectories: λ̃ pools the
  episodes that ended since the last update (one that spans rollouts mixes the policies of the
  updates it spans; when none ended, the previous λ̃ is kept), and the gradient's mean over N
  samples at ages spread over the episode is eq. 21's (1/B)·Σ_τ Σ_k up to a positive factor;
* the gradient uses the standardised Q-sum: subtracting a constant keeps eq. 21 unbiased because
  E_{a∼π_i}[∇ log π_i(a | x)] = 0 in every state, whatever weight γ^k the state's sample carries,
  and the division is a positive scale per update; one Adam step per update instead of eq. 22's
  plain step; the critic takes ``epochs × minibatches`` steps on every sample, whatever its γ^k;
* the TD key is the κ-hop state and the agent's own action; the neighbours' actions are not
  relayed (they are part of what the λ-return averages over);
* a missed step makes AgentCore cut the trajectory with a done, so k restarts at 0 there
  although the env copy did not reset.

Logs, besides the base keys: utility (f_i(λ̃_i) used in this update), shadow_reward_mean, q_mean,
occupancy_episodes (episodes pooled into this update's λ̃; 0 = an earlier estimate was kept).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

import numpy as np
import torch

from .base import Batch, Learner, standardise
from .occupancy import EpisodeOccupancy
from .utility import entropy_utility, target_utility


class ShadowPG(Learner):
    """Shadow-reward truncated policy gradient with κ-hop Q sharing (scalable-general-utilities Alg. 1)."""

    algo = "shadow-pg"
    act_kinds = ("discrete",)
    shares_q = True  # update() needs the κ-ball's Q-values (agentd/qvals.py)
    config_keys = Learner.config_keys + ("utility", "utility_target", "occupancy_floor", "occupancy")
    defaults: ClassVar[dict[str, Any]] = {
        "normalize_obs": False,  # the local state is read off the raw one-hot observation
        "actor_input": "khop",  # "policy factorization": π^i(a_i | s_{N_i^κ}), the κ-hop localised policy
        "ent_coef": 0.0,  # Alg. 1 has no entropy bonus (the entropy utility is the objective itself)
        "epochs": 5,  # critic passes per update (TD on the shadow reward); the actor takes one step
        "gamma": 0.9,  # the reference experiment's γ (experiments/shadow_pg.py); the paper sets none
        "lr_actor": 1e-2,  # one step per update: not in the paper (no experiments), measured on networked-mdp
    }

    def _check_cfg(self) -> None:
        super()._check_cfg()
        if self.cfg.normalize_obs:
            raise ValueError("shadow-pg reads the local state off the raw observation; keep normalize_obs=false")

    def _build(self) -> None:
        super()._build()
        self.target = self._target_occupancy()
        self.occ = (EpisodeOccupancy(self.n_envs, self.agent.obs_dim, self.agent.n_actions, self.cfg.gamma)
                    if self.cfg.occupancy == "discounted" else None)

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), **({"occupancy": self.occ.state_dict()} if self.occ is not None else {})}

    def _load_extra_state(self, d: dict[str, Any]) -> None:
        super()._load_extra_state(d)
        if self.occ is not None:  # a checkpoint from before the option holds no estimate
            self.occ.load_state_dict(d.get("occupancy", {"last": None}))

    def _target_occupancy(self) -> np.ndarray:
        k = self.agent.obs_dim
        if not self.cfg.utility_target:
            return np.full(k, 1.0 / k)
        try:
            d = np.asarray([float(v) for v in self.cfg.utility_target.split(",")])
        except ValueError:
            raise ValueError(f"utility_target must be comma-separated numbers, got {self.cfg.utility_target!r}") from None
        if d.shape != (k,) or (d < 0).any() or d.sum() <= 0:
            raise ValueError(f"utility_target needs {k} non-negative numbers (one per local state), got {len(d)}")
        return d / d.sum()

    # ------------------------------------------------------------------ the shadow reward
    def _occupancy(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(λ̃_i [k_s, k_a] (eq. 20), sample weights w [T, E]) of the rollout in the buffer: γ^k and
        the tracker's estimate (occupancy.py), or 1 and the visit frequencies (``stationary``, and
        the discounted learner's fallback when it holds no estimate yet)."""
        b = self.buffer
        if self.occ is None:
            w, lam, self._episodes = np.ones(states.shape), None, 0
        else:
            w = self.occ.add(states, b.actions, b.dones)
            self._episodes = self.occ.n_ended  # episodes in this estimate (0: an earlier one is kept)
            lam = self.occ.estimate()
        if lam is None:
            lam = np.zeros((self.agent.obs_dim, self.agent.n_actions))
            np.add.at(lam, (states, b.actions), 1.0 / (states.size * (1.0 - self.cfg.gamma)))
        return lam, w

    def utility_and_grad(self, lam: np.ndarray) -> tuple[float, np.ndarray]:
        """f_i(λ̃_i) and ∇f_i [k_s, k_a] for the configured utility (``linear`` is handled by the caller)."""
        if self.cfg.utility == "entropy":
            return entropy_utility(lam, self.cfg.gamma, self.cfg.occupancy_floor)
        return target_utility(lam, self.cfg.gamma, self.target)

    def _prepare(self, last_critic_in: np.ndarray, token: np.ndarray | None) -> Batch:
        """GAE on the shadow reward instead of the task's: ret is then Q̃_i at every sample."""
        b = self.buffer
        states = b.obs.argmax(axis=-1)
        self.lam, self.weights = self._occupancy(states)
        if self.cfg.utility == "linear":
            self._utility, shadow = float(b.rewards.mean()), b.rewards.copy()
        else:
            self._utility, grad = self.utility_and_grad(self.lam)
            shadow = grad[states, b.actions].astype(np.float32)
        task_rewards = b.rewards.copy()
        b.rewards[:] = shadow
        try:
            batch = super()._prepare(last_critic_in, token)
        finally:
            b.rewards[:] = task_rewards  # rollout_return_mean keeps reporting the task's reward
        self._shadow_mean = float(shadow.mean())
        return batch

    # ------------------------------------------------------------------ the two halves of an update
    def shadow_q(self, last_critic_in: np.ndarray) -> np.ndarray:
        """Lines 3–5: this agent's truncated shadow Q̃_i at each of its rollout's samples [T·E]."""
        if not self.ready():
            raise RuntimeError(f"shadow_q() needs {self.cfg.rollout_len} transitions, buffer holds {self.buffer.pos}")
        self._batch = self._prepare(last_critic_in, None)
        return self._batch.ret.numpy().astype(np.float32)

    def update_from_q(self, q_sum: np.ndarray) -> dict[str, float]:
        """Lines 6–7, given Σ_{j ∈ N_i^κ} Q̃_j at this agent's samples (its own Q̃_i included)."""
        batch = self._batch
        q_sum = np.asarray(q_sum, dtype=np.float64)
        if q_sum.shape != (len(batch),) or not np.isfinite(q_sum).all():
            raise ValueError(f"q_sum must be finite of shape ({len(batch)},), got {q_sum.shape}")
        q = q_sum / self.n_agents
        batch.adv = torch.from_numpy((self.weights.reshape(-1) * standardise(q)).astype(np.float32))
        metrics = self._learn(batch)
        del self._batch
        return {**metrics, "utility": self._utility, "shadow_reward_mean": self._shadow_mean, "q_mean": float(q.mean()),
                "occupancy_episodes": float(self._episodes)}

    def update(self, last_critic_in: np.ndarray, token: np.ndarray | None = None) -> dict[str, float]:
        """An update with this agent's own Q̃_i only (κ = 0); agents use :mod:`agentd.qvals` instead."""
        if token is not None:
            raise ValueError("shadow-pg updates simultaneously; it takes no token")
        return self.update_from_q(self.shadow_q(last_critic_in))

    # ------------------------------------------------------------------ the step
    def policy_loss(self, ratio: torch.Tensor, logp_new: torch.Tensor, logp_old: torch.Tensor,
                    adv: torch.Tensor, kl_per_state: torch.Tensor,
                    cost_adv: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """−mean(r·Â): at θ_old (r = 1) its gradient is −ĝ_i of eq. 21."""
        return -(ratio * adv).mean(), {}

    def _optimise(self, batch: Batch) -> dict[str, float]:
        """One policy-gradient step on the whole batch, then ``epochs × minibatches`` critic steps."""
        out = self._actor_step(batch)
        n = len(batch)
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        for _ in range(self.cfg.epochs):
            for idx in np.array_split(self.np_rng.permutation(n), self._n_minibatches(n)):
                for k, v in self._critic_step(batch[torch.from_numpy(idx)]).items():
                    sums[k] += v
                steps += 1
        return {**out, **{k: v / steps for k, v in sums.items()}, "epochs": 1.0}
