"""The one policy-gradient base every learner is a small difference on (STYLE.md: omnisafe).

The base owns everything but the policy objective: running normalisers, actor and critic, the
rollout buffer, GAE, the epoch × minibatch loop, metrics, and save/restore of the whole state.
A subclass supplies :meth:`Learner.policy_loss` (the surrogate to *minimise*) and optionally
:meth:`Learner.after_update` (dual variables / adaptive coefficients).

Per-update loss, for a minibatch B of the T·E samples::

    actor:  L_π = policy_loss(r, log π_new, log π_old, Â, KL_s) − c_ent · mean_B H[π_new(·|s)]
    critic: L_V = ½ · mean_B (V(s) − (Â_GAE + V_old(s)))²

with r = π_new(a|s)/π_old(a|s), KL_s = KL(π_old(·|s) ‖ π_new(·|s)) exact per state, and Â
normalised over the whole batch. Logged keys: policy_loss (L_π without the entropy term),
value_loss, entropy, clip_frac (|r−1| > clip), grad_norm (actor, before clipping), kl (batch-mean
KL_s after the last epoch), rollout_return_mean (mean reward per step), rollout_cost{k}_mean,
updates, plus whatever policy_loss / after_update add.
"""
from __future__ import annotations

import dataclasses
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from envserver.tasks.base import AgentSpec

from . import checkpoint
from .adam import Adam
from .buffer import RolloutBuffer, gae
from .coef import AdaptiveCoef
from .config import LearnerConfig
from .dists import Categorical, DiagGaussian
from .nets import Actor, Critic, RunningNorm

CKPT_KEYS = frozenset({"format", "algo", "spec", "cfg", "actor", "critic", "actor_opt", "critic_opt",
                       "obs_norm", "critic_norm", "coefs", "torch_rng", "numpy_rng", "counters"})


class Learner:
    """Decentralised actor-critic for one agent: local obs → actor, κ-hop input → critic."""

    algo: ClassVar[str] = "base"

    def __init__(self, agent: AgentSpec, critic_dim: int, n_agents: int, n_envs: int, seed: int,
                 cfg: LearnerConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else LearnerConfig()
        if agent.act_kind not in ("discrete", "continuous"):
            raise ValueError(f"unknown act_kind {agent.act_kind!r}")
        if min(agent.obs_dim, critic_dim, n_agents, n_envs) < 1:
            raise ValueError("obs_dim, critic_dim, n_agents and n_envs must all be >= 1")
        self.agent, self.critic_dim, self.n_agents, self.n_envs = agent, critic_dim, n_agents, n_envs
        self.seed = seed
        self.discrete = agent.act_kind == "discrete"
        if (agent.n_actions if self.discrete else agent.act_dim) < 1:
            raise ValueError("a discrete agent needs n_actions >= 1, a continuous one act_dim >= 1")
        self.dist = Categorical if self.discrete else DiagGaussian
        # Own RNGs, never the global ones: same seed -> same init and same action sequence.
        self.gen = torch.Generator().manual_seed(seed)
        self.np_rng = np.random.default_rng(seed)  # minibatch shuffling
        self.n_updates = 0
        self.samples_seen = 0
        self._build()

    def _build(self) -> None:
        """(Re)create networks, optimisers, normalisers and buffer from ``self.cfg``."""
        cfg, a = self.cfg, self.agent
        if cfg.minibatches > cfg.rollout_len * self.n_envs:
            raise ValueError(f"minibatches={cfg.minibatches} exceeds the batch of "
                             f"{cfg.rollout_len * self.n_envs} samples")
        out = a.n_actions if self.discrete else a.act_dim
        self.actor = Actor(a.obs_dim, out, self.discrete, cfg.hidden, cfg.hidden_layers,
                           cfg.init_log_std, self.gen)
        self.critic = Critic(self.critic_dim, cfg.hidden, cfg.hidden_layers, self.gen)
        # Own Adam (adam.py: torch.optim costs ~1.2 s and ~70 MiB per process); eps 1e-5 as in
        # CleanRL and MAPPO's opti_eps.
        self.actor_opt = Adam(self.actor.parameters(), lr=cfg.lr_actor, eps=1e-5)
        self.critic_opt = Adam(self.critic.parameters(), lr=cfg.lr_critic, eps=1e-5)
        self.coefs: AdaptiveCoef | None = self._make_coefs()
        self.obs_norm = RunningNorm(a.obs_dim)
        self.critic_norm = RunningNorm(self.critic_dim)
        act_shape, act_dtype = ((), np.int64) if self.discrete else ((a.act_dim,), np.float32)
        self.buffer = RolloutBuffer(cfg.rollout_len, self.n_envs, a.obs_dim, self.critic_dim,
                                    act_shape, act_dtype, out if self.discrete else 2 * out)

    # ------------------------------------------------------------------ algorithm hooks
    def _make_coefs(self) -> AdaptiveCoef | None:
        """Adaptive coefficients (dual variables) of the algorithm, built from ``self.cfg``."""
        return None

    def policy_loss(self, ratio: torch.Tensor, logp_new: torch.Tensor, logp_old: torch.Tensor,
                    adv: torch.Tensor, kl_per_state: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Surrogate to minimise for one minibatch (all args ``[B]``); extra floats are logged."""
        raise NotImplementedError

    def after_update(self, mean_kl: float) -> dict[str, float]:
        """Called once per update with the batch-mean KL(old‖new) after the last epoch."""
        return {}

    # ------------------------------------------------------------------ acting
    def _rows(self, x: np.ndarray, dim: int, what: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.shape != (self.n_envs, dim):
            raise ValueError(f"{what} must have shape ({self.n_envs}, {dim}), got {x.shape}")
        return x

    def act(self, obs: np.ndarray, critic_in: np.ndarray) -> np.ndarray:
        """Sample one action per env copy and record the half-transition (see module docstring).

        The running normalisers are updated here and only here, so an update sees exactly the
        inputs the networks saw while acting. Continuous actions are returned clipped to
        [act_low, act_high]; the buffer keeps the unclipped sample its log-prob belongs to.
        """
        obs = self._rows(obs, self.agent.obs_dim, "obs")
        critic_in = self._rows(critic_in, self.critic_dim, "critic_in")
        self.buffer.ensure_can_add()
        if self.cfg.normalize_obs:
            self.obs_norm.update(obs)
            self.critic_norm.update(critic_in)
            obs, critic_in = self.obs_norm.normalize(obs), self.critic_norm.normalize(critic_in)
        with torch.no_grad():
            params = self.actor(torch.from_numpy(obs))
            action, logp = self.dist.sample(params, self.gen)
            value = self.critic(torch.from_numpy(critic_in))
        a = action.numpy()
        self.buffer.add(obs, critic_in, a, logp.numpy(), value.numpy(), params.numpy())
        if self.discrete:
            return a.copy()
        return np.clip(a, self.agent.act_low, self.agent.act_high).astype(np.float32)

    def observe(self, reward: np.ndarray, cost: np.ndarray, done: np.ndarray) -> None:
        """Complete the last act()'s transition. ``done`` = terminated OR truncated: truncation is
        treated as terminal (CleanRL's choice; see buffer.gae for the bias this accepts)."""
        e = self.n_envs
        reward = np.asarray(reward, dtype=np.float32)
        cost = np.asarray(cost, dtype=np.float32)
        done = np.asarray(done, dtype=bool)
        if cost.ndim == 1:
            cost = cost[:, None]
        if reward.shape != (e,) or done.shape != (e,) or cost.ndim != 2 or cost.shape[0] != e:
            raise ValueError(f"expected reward [{e}], cost [{e}, n_costs], done [{e}]; got "
                             f"{reward.shape}, {cost.shape}, {done.shape}")
        self.buffer.complete(reward, cost, done)
        self.samples_seen += e

    def ready(self) -> bool:
        return self.buffer.full()

    # ------------------------------------------------------------------ learning
    def _norm_only(self, x: np.ndarray, norm: RunningNorm, dim: int, what: str) -> np.ndarray:
        x = self._rows(x, dim, what)
        return norm.normalize(x) if self.cfg.normalize_obs else x

    def update(self, last_critic_in: np.ndarray) -> dict[str, float]:
        """GAE with bootstrap V(last_critic_in), then epochs × minibatches; clears the buffer."""
        if not self.ready():
            raise RuntimeError(f"update() needs {self.cfg.rollout_len} transitions, "
                               f"buffer holds {self.buffer.pos}")
        cfg, b = self.cfg, self.buffer
        last_in = self._norm_only(last_critic_in, self.critic_norm, self.critic_dim, "last_critic_in")
        with torch.no_grad():
            last_v = self.critic(torch.from_numpy(last_in)).numpy()
        adv, ret = gae(b.rewards, b.values, b.dones, last_v, cfg.gamma, cfg.gae_lambda)
        n = b.t_len * b.n_envs
        adv = adv.reshape(n)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)

        def flat(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x.reshape((n,) + x.shape[2:])))

        obs, cin, act, logp_old, params_old = map(flat, (b.obs, b.critic_in, b.actions, b.logp, b.params))
        ret_t, adv_t = flat(ret), torch.from_numpy(adv)
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        for _ in range(cfg.epochs):
            for idx in np.array_split(self.np_rng.permutation(n), cfg.minibatches):
                i = torch.from_numpy(idx)
                m = self._step(obs[i], cin[i], act[i], logp_old[i], params_old[i], adv_t[i], ret_t[i])
                for k, v in m.items():
                    sums[k] += v
                steps += 1
        metrics = {k: v / steps for k, v in sums.items()}
        with torch.no_grad():
            metrics["kl"] = float(self.dist.kl(params_old, self.actor(obs)).mean())
        metrics.update(self.after_update(metrics["kl"]))
        metrics["rollout_return_mean"] = float(b.rewards.mean())
        if b.costs is not None:
            for k in range(b.costs.shape[2]):
                metrics[f"rollout_cost{k}_mean"] = float(b.costs[:, :, k].mean())
        self.n_updates += 1
        metrics["updates"] = float(self.n_updates)
        b.clear()
        return metrics

    def _step(self, obs: torch.Tensor, cin: torch.Tensor, act: torch.Tensor, logp_old: torch.Tensor,
              params_old: torch.Tensor, adv: torch.Tensor, ret: torch.Tensor) -> dict[str, float]:
        """One minibatch: actor step on the hook's loss, critic step on ½·MSE to the GAE returns."""
        cfg = self.cfg
        params = self.actor(obs)
        logp = self.dist.log_prob(params, act)
        entropy = self.dist.entropy(params).mean()
        kl_s = self.dist.kl(params_old, params)
        ratio = torch.exp(logp - logp_old)
        pl, extra = self.policy_loss(ratio, logp, logp_old, adv, kl_s)
        self.actor_opt.zero_grad()
        (pl - cfg.ent_coef * entropy).backward()
        grad_norm = nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.max_grad_norm)
        self.actor_opt.step()

        value_loss = 0.5 * (self.critic(cin) - ret).square().mean()
        self.critic_opt.zero_grad()
        value_loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
        self.critic_opt.step()
        with torch.no_grad():
            clip_frac = float(((ratio - 1.0).abs() > cfg.clip).float().mean())
        return {"policy_loss": pl.item(), "value_loss": value_loss.item(), "entropy": entropy.item(),
                "clip_frac": clip_frac, "grad_norm": float(grad_norm), **extra}

    # ------------------------------------------------------------------ state
    def _spec(self) -> dict[str, Any]:
        """What a checkpoint must match to be loadable (obs_desc, being prose, is left out)."""
        agent = {k: v for k, v in dataclasses.asdict(self.agent).items() if k != "obs_desc"}
        return {"agent": agent, "critic_dim": self.critic_dim, "n_agents": self.n_agents}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, except a partial rollout: the env server cannot
        resume mid-episode, so transitions from before a restart would be spliced onto new
        episodes without a done flag between them. Resume therefore starts a fresh rollout."""
        return {
            "format": 1, "algo": self.algo, "spec": self._spec(), "cfg": dataclasses.asdict(self.cfg),
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "obs_norm": self.obs_norm.state_dict(), "critic_norm": self.critic_norm.state_dict(),
            "coefs": self.coefs.state_dict() if self.coefs is not None else {},
            "torch_rng": self.gen.get_state(), "numpy_rng": self.np_rng.bit_generator.state,
            "counters": {"n_updates": self.n_updates, "samples_seen": self.samples_seen},
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore a state_dict of the same algorithm and agent; the saved cfg wins (exact resume)."""
        if d.get("algo") != self.algo:
            raise ValueError(f"checkpoint is for algo {d.get('algo')!r}, this learner is {self.algo!r}")
        if d["spec"] != self._spec():
            raise ValueError(f"checkpoint spec {d['spec']} != this learner's {self._spec()}")
        saved = LearnerConfig(**d["cfg"])
        if saved != self.cfg:
            changed = [f.name for f in dataclasses.fields(saved)
                       if getattr(saved, f.name) != getattr(self.cfg, f.name)]
            warnings.warn(f"resuming with the checkpoint's config; it differs in {changed}", stacklevel=2)
            self.cfg = saved
            self._build()
        self.actor.load_state_dict(d["actor"])
        self.critic.load_state_dict(d["critic"])
        self.actor_opt.load_state_dict(d["actor_opt"])
        self.critic_opt.load_state_dict(d["critic_opt"])
        self.obs_norm.load_state_dict(d["obs_norm"])
        self.critic_norm.load_state_dict(d["critic_norm"])
        if self.coefs is not None:
            self.coefs.load_state_dict(d["coefs"])
        self.gen.set_state(d["torch_rng"])
        self.np_rng.bit_generator.state = d["numpy_rng"]
        self.n_updates = int(d["counters"]["n_updates"])
        self.samples_seen = int(d["counters"]["samples_seen"])
        self.buffer.clear()

    def save_checkpoint(self, directory: Path, step: int) -> Path:
        """Atomically write ``ckpt-{step:012d}.pt``; keep the newest cfg.keep_checkpoints."""
        return checkpoint.save(self.state_dict(), Path(directory), step, self.cfg.keep_checkpoints)

    @staticmethod
    def latest_checkpoint(directory: Path) -> Path | None:
        """Newest checkpoint in ``directory`` that loads and has every expected key, else None."""
        return checkpoint.latest(Path(directory), CKPT_KEYS)

    def load_checkpoint(self, path: Path) -> None:
        self.load_state_dict(checkpoint.load(Path(path), CKPT_KEYS))
