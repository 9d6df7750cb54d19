"""The off-policy half of the learner family: a replay buffer and the acting/learning loop that
IQL and IDDPG share, on the same base as the policy-gradient learners (normalisers, checkpoints,
RNGs, the act → observe → ready → update contract).

Contract, as the agent drives it: ``act(obs_t, critic_in_t)`` → ``observe(r_t, c_t, done_t)`` →
``if ready(): update(critic_in_{t+1})`` → ``act(obs_{t+1}, …)``. A transition t enters the replay
buffer at the next ``act``, which brings its successor inputs (after an auto-reset these are the
next episode's; ``done`` masks the bootstrap, truncation counting as termination as in the base).
``ready()`` = at least ``learning_starts`` (and one batch of) transitions stored and
``rollout_len`` lock steps since the last update; ``update`` takes ``gradient_steps`` gradient
steps on uniform minibatches of ``batch_size``. Inputs are stored raw and normalised when sampled,
with the running statistics (updated only when acting), so old samples follow the current scale.

Checkpoints hold the networks, target networks, optimisers, normalisers, RNGs and counters; the
replay buffer is not saved (up to replay_size × inputs, far larger than the rest) — a resumed agent
refills it and waits for ``learning_starts`` again, like the on-policy base restarts its rollout.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

import numpy as np
import torch

from .base import Learner
from .nets import RunningNorm


class ReplayBuffer:
    """Ring buffer of transitions (obs, critic_in, action, reward, done, next_obs, next_critic_in,
    and with ``n_masked`` actions the successor's action mask next_mask, for a masked bootstrap)."""

    def __init__(self, size: int, obs_dim: int, critic_dim: int, act_shape: tuple[int, ...], act_dtype: type,
                 n_masked: int = 0) -> None:
        self.size, self.pos, self.n = size, 0, 0
        self.data = {
            "obs": np.zeros((size, obs_dim), np.float32), "cin": np.zeros((size, critic_dim), np.float32),
            "act": np.zeros((size,) + act_shape, act_dtype), "rew": np.zeros(size, np.float32),
            "done": np.zeros(size, np.float32), "next_obs": np.zeros((size, obs_dim), np.float32),
            "next_cin": np.zeros((size, critic_dim), np.float32),
        }
        if n_masked:
            self.data["next_mask"] = np.ones((size, n_masked), bool)

    def __len__(self) -> int:
        return self.n

    def add(self, **rows: np.ndarray) -> None:
        """Append E rows of every field at once (wrapping around, oldest overwritten)."""
        e = len(rows["rew"])
        idx = (self.pos + np.arange(e)) % self.size
        for k, v in rows.items():
            self.data[k][idx] = v
        self.pos = int((self.pos + e) % self.size)
        self.n = min(self.size, self.n + e)

    def sample(self, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        idx = rng.integers(0, self.n, size=batch)
        return {k: v[idx] for k, v in self.data.items()}


class OffPolicyLearner(Learner):
    """Replay-based learner; a subclass builds its nets (``_build_nets``), picks actions from
    normalised inputs (``_select``) and takes one gradient step (``_gradient_step``)."""

    config_keys: ClassVar[tuple[str, ...]] = ("replay_size", "batch_size", "learning_starts", "gradient_steps")

    def _build(self) -> None:
        self._check_cfg()
        cfg, a = self.cfg, self.agent
        self.coefs = None
        self.obs_norm = RunningNorm(a.obs_dim)
        self.critic_norm = RunningNorm(self.critic_dim)
        act_shape, act_dtype = ((), np.int64) if self.discrete else ((a.act_dim,), np.float32)
        self.replay = ReplayBuffer(cfg.replay_size, a.obs_dim, self.critic_dim, act_shape, act_dtype,
                                   a.n_actions if a.action_mask else 0)
        self.grad_steps = 0
        self._since_update = 0
        self._clear_pending()
        self._build_nets()

    def _build_nets(self) -> None:
        raise NotImplementedError

    def _select(self, obs: torch.Tensor, cin: torch.Tensor,
                mask: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        """(action returned to the env, action stored in the replay buffer); only actions ``mask``
        [E, n_actions] allows, where the task masks them."""
        raise NotImplementedError

    def _gradient_step(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def _clear_pending(self) -> None:
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._outcome: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ acting
    def _policy_in(self, obs: torch.Tensor, cin: torch.Tensor) -> torch.Tensor:
        """What the policy (IQL's Q, IDDPG's μ) reads: own obs, or the κ-hop input (actor_input=khop)."""
        return cin if self.khop_actor else obs

    def _normalise(self, x: np.ndarray, norm: RunningNorm) -> np.ndarray:
        return norm.normalize(x) if self.cfg.normalize_obs else x

    def act(self, obs: np.ndarray, critic_in: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        obs = self._rows(obs, self.agent.obs_dim, "obs")
        critic_in = self._rows(critic_in, self.critic_dim, "critic_in")
        m = self._mask(mask, self.n_envs)
        if self._pending is not None and self._outcome is None:
            raise RuntimeError("act() called twice without observe() in between")
        if self._pending is not None and self._outcome is not None:
            (o, c, a), (r, d) = self._pending, self._outcome
            self.replay.add(obs=o, cin=c, act=a, rew=r, done=d.astype(np.float32), next_obs=obs, next_cin=critic_in,
                            **({} if m is None else {"next_mask": m.numpy()}))
        if self.cfg.normalize_obs:
            self.obs_norm.update(obs)
            self.critic_norm.update(critic_in)
        with torch.no_grad():
            action, stored = self._select(torch.from_numpy(self._normalise(obs, self.obs_norm)),
                                          torch.from_numpy(self._normalise(critic_in, self.critic_norm)), m)
        self._pending, self._outcome = (obs.copy(), critic_in.copy(), stored), None
        return action

    def observe(self, reward: np.ndarray, cost: np.ndarray, done: np.ndarray) -> None:
        reward, _, done = self._check_transition(reward, cost, done)
        if self._pending is None or self._outcome is not None:
            raise RuntimeError("observe() called without a preceding act()")
        self._outcome = (reward, done)
        self.samples_seen += self.n_envs
        self._since_update += 1

    def ready(self) -> bool:
        enough = len(self.replay) >= max(self.cfg.learning_starts, self.cfg.batch_size)
        return enough and self._since_update >= self.cfg.rollout_len

    # ------------------------------------------------------------------ learning
    def _sample(self) -> dict[str, torch.Tensor]:
        b = self.replay.sample(self.cfg.batch_size, self.np_rng)
        for k, norm in (("obs", self.obs_norm), ("next_obs", self.obs_norm), ("cin", self.critic_norm),
                        ("next_cin", self.critic_norm)):
            b[k] = self._normalise(b[k], norm)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in b.items()}

    def update(self, last_critic_in: np.ndarray, token: np.ndarray | None = None) -> dict[str, float]:
        """``gradient_steps`` steps on replayed minibatches (``last_critic_in`` is not needed:
        bootstraps come from stored successors)."""
        if token is not None:
            raise ValueError(f"algo {self.algo!r} is off-policy and takes no token")
        if not self.ready():
            raise RuntimeError(f"update() needs {max(self.cfg.learning_starts, self.cfg.batch_size)} stored "
                               f"transitions and {self.cfg.rollout_len} steps since the last update")
        sums: dict[str, float] = defaultdict(float)
        for _ in range(self.cfg.gradient_steps):
            for k, v in self._gradient_step(self._sample()).items():
                sums[k] += v
            self.grad_steps += 1
        metrics = {k: v / self.cfg.gradient_steps for k, v in sums.items()}
        metrics["replay_size"] = float(len(self.replay))
        self._since_update = 0
        self.n_updates += 1
        metrics["updates"] = float(self.n_updates)
        return metrics

    def token_out(self, token: np.ndarray | None = None) -> np.ndarray:
        raise RuntimeError(f"algo {self.algo!r} is off-policy: it takes part in no sequential scheme")

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict[str, Any]:
        return {"grad_steps": self.grad_steps}

    def _load_extra_state(self, d: dict[str, Any]) -> None:
        self.grad_steps = int(d["grad_steps"])
        self._since_update = 0


@torch.no_grad()
def polyak(target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
    """θ' ← (1 − τ)·θ' + τ·θ."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.lerp_(s, tau)
