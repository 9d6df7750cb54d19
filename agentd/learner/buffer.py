"""On-policy rollout storage ``[T, E, ...]``, GAE and the advantage normalisations.

Rows are stored exactly as the networks saw them at acting time (normalised obs and critic input),
together with the old distribution's parameters, so that the first minibatch of an update
reproduces ratio = 1 and KL = 0 even though the normalisers kept moving during the rollout.
Costs are stored too (``[T, E, n_costs]``, width fixed by the first ``observe``) so constrained
learners can add cost critics on the same base with :func:`gae`. Value estimates are not stored:
the critics do not change during a rollout, so the learner evaluates them once over the whole
``[T·E]`` batch at update time instead of at batch E on every step (base.Learner.rollout_values).

Flattening order: an update sees the ``T·E`` samples as ``x.reshape(T·E, ...)`` of the ``[T, E]``
arrays, i.e. sample ``n = t·E + e`` (rollout step t, env copy e). Every agent of a run acts on
the same lockstep, so this index names the same joint transition for all of them; the sequential
token of HAPPO-style updates (base.Learner.token_out) is laid out in this order.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch


@dataclasses.dataclass
class Batch:
    """One update's samples, flattened in buffer order n = t·E + e (see the module docstring)."""

    obs: torch.Tensor  # [N, actor_dim]: the actor's input (own obs or, actor_input=khop, the critic's), normalised
    cin: torch.Tensor  # [N, critic_dim]
    act: torch.Tensor  # [N] int64 or [N, act_dim] (unclipped samples)
    logp_old: torch.Tensor  # [N]
    params_old: torch.Tensor  # [N, P] distribution parameters when acting
    adv: torch.Tensor  # [N] standardised reward advantage × sequential token
    ret: torch.Tensor  # [N] reward-critic targets
    cost_adv: torch.Tensor  # [N, m] cost advantages, normalised per cost_adv_norm (not token-weighted)
    cost_ret: torch.Tensor  # [N, m] cost-critic targets

    def __len__(self) -> int:
        return int(self.adv.shape[0])

    def __getitem__(self, idx: torch.Tensor) -> "Batch":
        return Batch(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))


def gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_value: np.ndarray,
        gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over ``[T, E]`` arrays; returns (advantages, returns).

    ``dones[t]`` means the episode ended with transition t, so neither the value nor the
    advantage of step t+1 leaks back across it. Truncation is treated as termination (as
    CleanRL does): the bootstrap V(s_T) of a time-limited episode is dropped, a small bias
    accepted because the auto-reset server does not send the final observation of an episode.

    ``rewards``/``values`` may carry trailing columns (``[T, E, K]``, ``last_value [E, K]``: the
    reward and every cost in one pass, base.Learner._prepare); ``dones [T, E]`` applies to all of
    them. Each column gets exactly the element-wise arithmetic it would get alone.
    """
    t_len = rewards.shape[0]
    dones = dones.reshape(dones.shape + (1,) * (values.ndim - dones.ndim))
    adv = np.zeros_like(values, dtype=np.float32)
    next_adv = np.zeros(values.shape[1:], dtype=np.float32)
    next_value = last_value.astype(np.float32)
    for t in range(t_len - 1, -1, -1):
        live = 1.0 - dones[t].astype(np.float32)
        delta = rewards[t] + gamma * next_value * live - values[t]
        next_adv = delta + gamma * lam * live * next_adv
        adv[t] = next_adv
        next_value = values[t]
    return adv, adv + values


def standardise(x: np.ndarray) -> np.ndarray:
    """Mean 0, std 1 over the batch: the advantage normalisation of PPO-family code."""
    return (x - x.mean()) / (x.std() + 1e-8)


def centre(x: np.ndarray) -> np.ndarray:
    """Mean 0, units kept: for an advantage that is compared with a raw value (CPO's constraint)."""
    return x - x.mean()


# The cost-advantage normalisations a learner can name (base.Learner.cost_adv_norm).
ADV_NORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"standardise": standardise, "centre": centre}


def checked_transition(reward: np.ndarray, cost: np.ndarray, done: np.ndarray, n_envs: int, n_costs: int,
                       algo: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step's (reward [E], cost [E, n_costs], done [E]) as the buffers store them, or a one-line
    ValueError naming the shapes: what an agent hands its learner is checked before it is kept."""
    e = n_envs
    reward = np.asarray(reward, dtype=np.float32)
    cost = np.asarray(cost, dtype=np.float32)
    done = np.asarray(done, dtype=bool)
    if cost.ndim == 1:
        cost = cost[:, None]
    if reward.shape != (e,) or done.shape != (e,) or cost.ndim != 2 or cost.shape[0] != e:
        raise ValueError(f"expected reward [{e}], cost [{e}, n_costs], done [{e}]; got "
                         f"{reward.shape}, {cost.shape}, {done.shape}")
    if n_costs and cost.shape[1] != n_costs:
        raise ValueError(f"algo {algo!r} has {n_costs} cost limit(s) but observes {cost.shape[1]} cost column(s)")
    return reward, cost, done


class RolloutBuffer:
    """Fixed-size buffer filled one ``act`` (``add``) + ``observe`` (``complete``) pair at a time."""

    def __init__(self, t_len: int, n_envs: int, obs_dim: int, critic_dim: int,
                 act_shape: tuple[int, ...], act_dtype: type, n_params: int) -> None:
        self.t_len, self.n_envs = t_len, n_envs
        shape = (t_len, n_envs)
        self.obs = np.zeros(shape + (obs_dim,), dtype=np.float32)
        self.critic_in = np.zeros(shape + (critic_dim,), dtype=np.float32)
        self.actions = np.zeros(shape + act_shape, dtype=act_dtype)
        self.logp = np.zeros(shape, dtype=np.float32)
        self.params = np.zeros(shape + (n_params,), dtype=np.float32)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.dones = np.zeros(shape, dtype=bool)
        self.costs: np.ndarray | None = None
        self.pos = 0  # completed transitions
        self.pending = False  # an act() is waiting for its observe()

    def full(self) -> bool:
        return self.pos == self.t_len

    def ensure_can_add(self) -> None:
        """Raise before the caller changes any state (normalisers, RNG) for an act() that cannot be stored."""
        if self.pending:
            raise RuntimeError("act() called twice without observe() in between")
        if self.full():
            raise RuntimeError("rollout buffer is full: call update() before acting again")

    def add(self, obs: np.ndarray, critic_in: np.ndarray, action: np.ndarray, logp: np.ndarray,
            params: np.ndarray) -> None:
        self.ensure_can_add()
        t = self.pos
        self.obs[t], self.critic_in[t], self.actions[t] = obs, critic_in, action
        self.logp[t], self.params[t] = logp, params
        self.pending = True

    def complete(self, reward: np.ndarray, cost: np.ndarray, done: np.ndarray) -> None:
        if not self.pending:
            raise RuntimeError("observe() called without a preceding act()")
        if self.costs is None:
            self.costs = np.zeros((self.t_len, self.n_envs, cost.shape[1]), dtype=np.float32)
        elif self.costs.shape[2] != cost.shape[1]:
            raise ValueError(f"cost has {cost.shape[1]} columns, earlier steps had {self.costs.shape[2]}")
        t = self.pos
        self.rewards[t], self.dones[t], self.costs[t] = reward, done, cost
        self.pos += 1
        self.pending = False

    def clear(self) -> None:
        """Forget the rollout (arrays are overwritten in place, nothing reallocated)."""
        self.pos = 0
        self.pending = False


class EpisodeCosts:
    """Per-episode cost sums J_u of this agent's own trajectories, for the constraint gap J_u − c_u.

    Costs are summed per env copy until ``done``; :meth:`estimate` (called once per update) returns
    the mean over the episodes finished since the previous call — the Monte-Carlo estimate of
    mafocops.md Alg. 1 line 4, the MACPO/MAPPO-L code's mean episode cost of the rollout and
    omnisafe's ``Metrics/EpCost``. When none finished since (1000-step episodes, 128-step
    rollouts), the latest finished episodes' mean is kept, as omnisafe's logger keeps it: the
    alternative, the unfinished episodes' per-step cost × the episode length, is biased wherever
    cost is not spread evenly over an episode — measured on safe-halfcheetah-6x1 (obstacle), it
    swung 33 → 260 within every episode against a true episode cost of 35–47, because the cost
    comes in the first ~128 steps. That extrapolation is used only before any episode finished
    (the episode length being known), else the mean partial sum so far (a lower bound).
    """

    def __init__(self, n_envs: int, n_costs: int) -> None:
        self.running = np.zeros((n_envs, n_costs), dtype=np.float64)
        self.steps = np.zeros(n_envs, dtype=np.int64)  # steps in each copy's unfinished episode
        self.done_sum = np.zeros(n_costs, dtype=np.float64)
        self.done_n = 0
        self.last: np.ndarray | None = None  # the latest finished episodes' mean
        self.source = "none"  # how the latest estimate was made

    def add(self, cost: np.ndarray, done: np.ndarray) -> None:
        self.running += cost
        self.steps += 1
        if done.any():
            self.done_sum += self.running[done].sum(axis=0)
            self.done_n += int(done.sum())
            self.running[done] = 0.0
            self.steps[done] = 0

    def estimate(self, episode_length: int | None) -> np.ndarray:
        if self.done_n:
            self.last, self.source = self.done_sum / self.done_n, "episodes"
            self.done_sum[:] = 0.0
            self.done_n = 0
        elif self.last is not None:
            self.source = "previous"
        elif episode_length and self.steps.any():
            self.source = "per_step"
            return self.running.sum(axis=0) / self.steps.sum() * episode_length
        else:
            self.source = "partial"
            return self.running.mean(axis=0)
        return self.last.copy()

    def state_dict(self) -> dict:
        """Only the latest estimate survives a restart: a resumed agent starts new episodes."""
        return {"last": None if self.last is None else [float(x) for x in self.last]}

    def load_state_dict(self, d: dict) -> None:
        last = d.get("last")
        self.last = None if last is None else np.asarray(last, dtype=np.float64)
        self.running[:] = 0.0
        self.steps[:] = 0
        self.done_sum[:] = 0.0
        self.done_n = 0
