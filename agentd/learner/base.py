"""The one policy-gradient base every learner is a small difference on (STYLE.md: omnisafe).

The base owns everything but the policy objective: running normalisers, actor, reward critic and
(for constrained algorithms) one cost critic per cost, the rollout buffer, GAE, the epoch ×
minibatch loop, the sequential token, metrics, and save/restore of the whole state. A subclass
supplies :meth:`Learner.policy_loss` (the surrogate to *minimise*) and optionally the hooks
``_make_coefs`` / ``before_update`` / ``after_update`` (dual variables, adaptive coefficients),
``kl_per_state`` (KL direction), ``stop_epochs`` (early stop) or ``_optimise`` (MACPO's step).

Per-update loss, for a minibatch B of the N = T·E samples::

    actor:  L_π = policy_loss(r, log π_new, log π_old, M·Â, KL_s, Â_c) − c_ent · mean_B H[π_new(·|s)]
    critic: L_V = ½ · mean_B (V(s) − (Â_GAE + V_old(s)))²
    costs:  L_C = ½ · mean_B Σ_u (V_u(s) − (Â_u,GAE + V_u,old(s)))²       (one critic per cost u)

with r = π_new(a|s)/π_old(a|s), KL_s = KL(π_old(·|s) ‖ π_new(·|s)) exact per state (the
``kl_per_state`` hook), Â standardised and each Â_u per ``cost_adv_norm`` over the batch, M the
sequential token (1 for simultaneous updates; see :meth:`Learner.update`), c_ent the
``entropy_weight``. Every critic sees the κ-hop input; the actor sees the agent's own
observation, or the same κ-hop input (``actor_input=khop``).
Logged keys: policy_loss (L_π without the entropy term), value_loss, cost_value_loss,
entropy, clip_frac (|r−1| > clip), grad_norm (actor, before clipping), kl (batch-mean KL_s after
the last epoch), epochs (run, < cfg.epochs after an early stop), rollout_return_mean (mean reward
per step), rollout_cost{k}_mean, episode_cost{u}_est (the per-episode cost estimate J_u of the
constraint gap), updates, plus whatever the hooks add.
"""
from __future__ import annotations

import dataclasses
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from envserver.tasks.base import AgentSpec

from . import checkpoint
from .adam import Adam
from .buffer import ADV_NORMS, Batch, EpisodeCosts, RolloutBuffer, checked_transition, gae, standardise
from .coef import Coefs
from .config import COMMON_KEYS, LearnerConfig, apply_overrides
from .dists import Categorical, DiagGaussian
from .nets import Actor, Critic, RunningNorm, update_and_normalize
from .play import Playing

CKPT_KEYS = frozenset({"format", "algo", "spec", "cfg", "modules", "obs_norm", "critic_norm", "coefs",
                       "extra", "torch_rng", "numpy_rng", "counters"})
TOKEN_MAX = 1e3  # token_out clips M to [0, TOKEN_MAX]: a product of ratios over many agents can explode
# the fields the policy-gradient base reads beyond config.COMMON_KEYS (MACPO's trust region skips the actor step's)
BATCH_KEYS = ("init_log_std", "clip_actions", "gae_lambda", "epochs", "minibatches",
              "minibatch_size")  # actor σ and what is sent, GAE, epoch loop
ACTOR_STEP_KEYS = ("lr_actor", "ent_coef", "clip")  # _actor_step: Adam, entropy bonus, clip_frac


class Learner(Playing):
    """Decentralised actor-critic for one agent: κ-hop input → critic(s); local obs (or, with
    actor_input=khop, the same κ-hop input) → actor."""

    algo: ClassVar[str] = "base"
    defaults: ClassVar[dict[str, Any]] = {}  # per-algorithm LearnerConfig values, each cited
    config_keys: ClassVar[tuple[str, ...]] = BATCH_KEYS + ACTOR_STEP_KEYS  # read beyond COMMON_KEYS (used_keys)
    uses_costs: ClassVar[bool] = False  # builds cost critics and reads cost_limits
    supports_sequential: ClassVar[bool] = False  # may run with update_order="sequential"
    # a centralised reference (MAPPO-L, HAPPO, MACPO): its critics should see everyone, so `khop run`
    # defaults κ to the graph's diameter for it
    centralised: ClassVar[bool] = False
    shares_q: ClassVar[bool] = False  # exchanges Q-values with its κ-ball at update time (shadow-PG)
    act_kinds: ClassVar[tuple[str, ...]] = ("discrete", "continuous")
    # How _prepare normalises each cost advantage Â_u: standardised, as SafePO's Lagrangian learners
    # (λ·Â_u is a penalty, no units to keep), or only centred where Â_u is compared with a raw cost
    # value (MACPO: CPO's constraint c + bᵀx ≤ 0, c in cost units; see macpo.py).
    cost_adv_norm: ClassVar[Literal["standardise", "centre"]] = "standardise"

    def __init__(self, agent: AgentSpec, critic_dim: int, n_agents: int, n_envs: int, seed: int,
                 cfg: LearnerConfig | None = None, *, cost_limits: Sequence[float] = (),
                 episode_length: int | None = None) -> None:
        self.cfg = cfg if cfg is not None else apply_overrides(LearnerConfig(), self.defaults)
        if agent.act_kind not in ("discrete", "continuous"):
            raise ValueError(f"unknown act_kind {agent.act_kind!r}")
        if agent.act_kind not in self.act_kinds:
            raise ValueError(f"algo {self.algo!r} cannot act on {agent.act_kind} actions "
                             f"(it supports {', '.join(self.act_kinds)})")
        if min(agent.obs_dim, critic_dim, n_agents, n_envs) < 1:
            raise ValueError("obs_dim, critic_dim, n_agents and n_envs must all be >= 1")
        if episode_length is not None and episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        self.agent, self.critic_dim, self.n_agents, self.n_envs = agent, critic_dim, n_agents, n_envs
        self.seed = seed
        self.discrete = agent.act_kind == "discrete"
        if (agent.n_actions if self.discrete else agent.act_dim) < 1:
            raise ValueError("a discrete agent needs n_actions >= 1, a continuous one act_dim >= 1")
        # Per-episode limits d_u of the task; only constrained algorithms build cost critics for them.
        self.cost_limits = np.asarray(cost_limits if self.uses_costs else (), dtype=np.float64).reshape(-1)
        self.n_costs = len(self.cost_limits)
        self.episode_length = episode_length
        self.dist = Categorical if self.discrete else DiagGaussian
        # Own RNGs, never the global ones: same seed -> same init and same action sequence.
        self.gen = torch.Generator().manual_seed(seed)
        self.np_rng = np.random.default_rng(seed)  # minibatch shuffling
        self.n_updates = 0
        self.samples_seen = 0
        self._last_ratio: np.ndarray | None = None
        self._build()

    @classmethod
    def used_keys(cls) -> frozenset[str]:
        """Every LearnerConfig field this algorithm reads (learner_config refuses an override of any other)."""
        return frozenset(COMMON_KEYS + cls.config_keys)

    @property
    def khop_actor(self) -> bool:
        """True when the policy conditions on the κ-hop input the critic sees (cfg.actor_input)."""
        return self.cfg.actor_input == "khop"

    @property
    def entropy_weight(self) -> float:
        """Weight of the entropy bonus in the actor loss (DPO scales it with its surrogate)."""
        return self.cfg.ent_coef

    @property
    def sequential(self) -> bool:
        """True when this learner must update after its predecessors and take their token."""
        return self.cfg.update_order == "sequential"

    def _check_cfg(self) -> None:
        if self.sequential and not self.supports_sequential:
            raise ValueError(f"algo {self.algo!r} does not support update_order='sequential'")

    def _build(self) -> None:
        """(Re)create networks, optimisers, normalisers and buffer from ``self.cfg``."""
        self._check_cfg()
        cfg, a = self.cfg, self.agent
        n = cfg.rollout_len * self.n_envs
        if cfg.minibatch_size == 0 and cfg.minibatches > n:
            raise ValueError(f"minibatches={cfg.minibatches} exceeds the batch of {n} samples")
        out = a.n_actions if self.discrete else a.act_dim
        actor_dim = self.critic_dim if self.khop_actor else a.obs_dim
        self.actor = Actor(actor_dim, out, self.discrete, cfg.hidden, cfg.hidden_layers, cfg.init_log_std, self.gen)
        self.critic = Critic(self.critic_dim, cfg.hidden, cfg.hidden_layers, self.gen)
        # Cost critics are drawn after actor and critic, so unconstrained learners keep their init.
        self.cost_critics = nn.ModuleList(Critic(self.critic_dim, cfg.hidden, cfg.hidden_layers, self.gen)
                                          for _ in range(self.n_costs))
        # Own Adam (adam.py: torch.optim costs ~1.2 s and ~70 MiB per process); eps 1e-5 as in
        # CleanRL and MAPPO's opti_eps.
        self.actor_opt = Adam(self.actor.parameters(), lr=cfg.lr_actor, eps=1e-5)
        self.critic_opt = Adam(self.critic.parameters(), lr=cfg.lr_critic, eps=1e-5)
        self.cost_opt = Adam(self.cost_critics.parameters(), lr=cfg.lr_critic, eps=1e-5) if self.n_costs else None
        self.coefs: Coefs | None = self._make_coefs()
        self.obs_norm = RunningNorm(a.obs_dim)
        self.critic_norm = RunningNorm(self.critic_dim)
        act_shape, act_dtype = ((), np.int64) if self.discrete else ((a.act_dim,), np.float32)
        self.buffer = RolloutBuffer(cfg.rollout_len, self.n_envs, a.obs_dim, self.critic_dim,
                                    act_shape, act_dtype, out if self.discrete else 2 * out)
        self.episode_costs = EpisodeCosts(self.n_envs, self.n_costs)
        self.ep_cost_est = np.zeros(self.n_costs)  # J_u of the latest update's rollout

    def _modules(self) -> dict[str, Any]:
        """Every network and optimiser, by checkpoint name (each has state_dict/load_state_dict)."""
        mods: dict[str, Any] = {"actor": self.actor, "critic": self.critic,
                                "actor_opt": self.actor_opt, "critic_opt": self.critic_opt}
        if self.n_costs:
            mods.update(cost_critics=self.cost_critics, cost_opt=self.cost_opt)
        return mods

    # ------------------------------------------------------------------ algorithm hooks
    def _make_coefs(self) -> Coefs | None:
        """Adaptive coefficients / dual variables of the algorithm, built from ``self.cfg``."""
        return None

    def policy_loss(self, ratio: torch.Tensor, logp_new: torch.Tensor, logp_old: torch.Tensor,
                    adv: torch.Tensor, kl_per_state: torch.Tensor,
                    cost_adv: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Surrogate to minimise for one minibatch (``[B]`` tensors; ``cost_adv [B, m]``, None
        when called without costs); extra floats are logged."""
        raise NotImplementedError

    def kl_per_state(self, params_old: torch.Tensor, params_new: torch.Tensor) -> torch.Tensor:
        """The per-state KL the loss, the ``kl`` metric and ``after_update`` see: KL(old ‖ new)."""
        return self.dist.kl(params_old, params_new)

    def before_update(self, batch: Batch) -> dict[str, float]:
        """Called once per update after GAE, before the epochs (``self.ep_cost_est`` is fresh)."""
        return {}

    def stop_epochs(self, batch: Batch) -> bool:
        """Called after each epoch; True ends the update early."""
        return False

    def after_update(self, mean_kl: float) -> dict[str, float]:
        """Called once per update with the batch-mean ``kl_per_state`` after the last epoch."""
        return {}

    # ------------------------------------------------------------------ acting
    def act(self, obs: np.ndarray, critic_in: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Sample one action per env copy and record the half-transition (see module docstring).

        The running normalisers are updated here and only here, so an update sees exactly the
        inputs the networks saw while acting. Continuous actions are returned clipped to
        [act_low, act_high] (unless ``clip_actions`` is off); the buffer keeps the unclipped
        sample its log-prob belongs to.
        ``mask`` [E, n_actions] bool: the available actions, for a task with action masks (the
        stored distribution is the masked one, see dists.py).
        """
        obs = self._rows(obs, self.agent.obs_dim, "obs")
        critic_in = self._rows(critic_in, self.critic_dim, "critic_in")
        self.buffer.ensure_can_add()
        if self.cfg.normalize_obs:
            obs, critic_in = update_and_normalize((self.obs_norm, self.critic_norm), (obs, critic_in))
        params, a, logp = self._draw(critic_in if self.khop_actor else obs, mask)
        self.buffer.add(obs, critic_in, a, logp, params)
        return a.copy() if self.discrete else self._as_sent(a)

    def _check_transition(self, reward: np.ndarray, cost: np.ndarray,
                          done: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return checked_transition(reward, cost, done, self.n_envs, self.n_costs, self.algo)

    def observe(self, reward: np.ndarray, cost: np.ndarray, done: np.ndarray) -> None:
        """Complete the last act()'s transition. ``done`` = terminated OR truncated: truncation is
        treated as terminal (CleanRL's choice; see buffer.gae for the bias this accepts)."""
        reward, cost, done = self._check_transition(reward, cost, done)
        self.buffer.complete(reward, cost, done)
        if self.n_costs:
            self.episode_costs.add(cost, done)
        self.samples_seen += self.n_envs

    def ready(self) -> bool:
        return self.buffer.full()

    # ------------------------------------------------------------------ learning
    def _norm_only(self, x: np.ndarray, norm: RunningNorm, dim: int, what: str) -> np.ndarray:
        x = self._rows(x, dim, what)
        return norm.normalize(x) if self.cfg.normalize_obs else x

    def _check_token(self, token: np.ndarray | None) -> np.ndarray | None:
        n = self.cfg.rollout_len * self.n_envs
        if token is None:
            return np.ones(n, dtype=np.float32) if self.sequential else None
        if not self.sequential:
            raise ValueError(f"algo {self.algo!r} updates simultaneously (update_order="
                             f"{self.cfg.update_order!r}); it takes no token")
        token = np.asarray(token, dtype=np.float32)
        if token.shape != (n,) or not np.isfinite(token).all() or (token < 0).any():
            raise ValueError(f"token must be finite, >= 0, of shape ({n},); got shape {token.shape}")
        return token

    def update(self, last_critic_in: np.ndarray, token: np.ndarray | None = None) -> dict[str, float]:
        """GAE with bootstrap V(last_critic_in), then the policy and critic updates; clears the buffer.

        ``token``: only for sequential learners (``self.sequential``): float32 ``[T·E]`` in buffer
        order (sample n = t·E + e), the product M = Π_{j before me} π_j^new(a_j|s)/π_j^old(a_j|s)
        of the agents that already updated on this lockstep's rollout; None means M = 1 (the first
        agent). It multiplies the standardised *reward* advantage only (HAPPO, Kuba et al. 2022;
        MACPO/MAFOCOPS: the cost surrogates are the agent's own). Pass this agent's M on with
        :meth:`token_out`.
        """
        if not self.ready():
            raise RuntimeError(f"update() needs {self.cfg.rollout_len} transitions, "
                               f"buffer holds {self.buffer.pos}")
        return self._learn(self._prepare(last_critic_in, self._check_token(token)))

    def _learn(self, batch: Batch) -> dict[str, float]:
        """The policy and critic updates on a prepared batch; clears the buffer (see :meth:`update`)."""
        metrics = {f"episode_cost{u}_est": float(j) for u, j in enumerate(self.ep_cost_est)}
        metrics.update(self.before_update(batch))
        metrics.update(self._optimise(batch))
        with torch.no_grad():
            params = self._policy(batch.obs, batch.params_old)
            logp = self.dist.log_prob(params, batch.act)
            metrics["kl"] = float(self.kl_per_state(batch.params_old, params).mean())
            self._last_ratio = torch.exp(logp.double() - batch.logp_old.double()).numpy()
        metrics.update(self.after_update(metrics["kl"]))
        b = self.buffer
        metrics["rollout_return_mean"] = float(b.rewards.mean())
        if b.costs is not None:
            for k in range(b.costs.shape[2]):
                metrics[f"rollout_cost{k}_mean"] = float(b.costs[:, :, k].mean())
        self.n_updates += 1
        metrics["updates"] = float(self.n_updates)
        b.clear()
        return metrics

    def token_out(self, token: np.ndarray | None = None) -> np.ndarray:
        """The token for the next agent: ``token · π_new(a|s)/π_old(a|s)`` per sample of the last
        update (same order as :meth:`update`'s token; None = ones), clipped to [0, TOKEN_MAX] and
        returned as float32. π_new is this agent's policy right after that update."""
        if self._last_ratio is None:
            raise RuntimeError("token_out() needs a preceding update()")
        n = self._last_ratio.shape[0]
        t = np.ones(n) if token is None else np.asarray(token, dtype=np.float64)
        if t.shape != (n,):
            raise ValueError(f"token must have shape ({n},), got {t.shape}")
        return np.clip(t * self._last_ratio, 0.0, TOKEN_MAX).astype(np.float32)

    def rollout_values(self) -> tuple[np.ndarray, np.ndarray]:
        """V and every cost critic's V_u of the rollout's critic inputs, ``[T, E]`` and
        ``[T, E, m]``: one forward over the whole batch, the critics being the ones that were
        current while acting (they change only in an update)."""
        b = self.buffer
        cin = torch.from_numpy(b.critic_in.reshape(b.t_len * b.n_envs, self.critic_dim))
        with torch.no_grad():
            values = self.critic(cin).numpy().reshape(b.t_len, b.n_envs)
            costs = [c(cin).numpy().reshape(b.t_len, b.n_envs) for c in self.cost_critics]
        return values, np.stack(costs, -1) if costs else np.zeros((b.t_len, b.n_envs, 0), np.float32)

    def _prepare(self, last_critic_in: np.ndarray, token: np.ndarray | None) -> Batch:
        """Advantages and returns for reward and every cost, flattened to one :class:`Batch`."""
        cfg, b = self.cfg, self.buffer
        n = b.t_len * b.n_envs
        last_in = torch.from_numpy(self._norm_only(last_critic_in, self.critic_norm, self.critic_dim,
                                                   "last_critic_in"))
        with torch.no_grad():
            last_v = self.critic(last_in).numpy()
            last_cv = [c(last_in).numpy() for c in self.cost_critics]
        values, cost_values = self.rollout_values()
        m = self.n_costs
        # reward (column 0) and every cost in one GAE pass over T (one Python loop, not 1 + m)
        if m:
            assert b.costs is not None
            rewards = np.concatenate([b.rewards[..., None], b.costs[:, :, :m]], -1)
            values = np.concatenate([values[..., None], cost_values], -1)
            last_v = np.stack([last_v, *last_cv], -1)
        all_adv, all_ret = gae(rewards if m else b.rewards, values, b.dones, last_v, cfg.gamma, cfg.gae_lambda)
        adv_cols = np.ascontiguousarray(all_adv.reshape(n, -1).T)  # [1 + m, n]: each column contiguous
        all_ret = all_ret.reshape(n, -1)
        adv, ret = standardise(adv_cols[0]), np.ascontiguousarray(all_ret[:, 0])
        if token is not None:
            adv = adv * token
        cost_adv = np.zeros((n, m), dtype=np.float32)
        for u in range(m):
            cost_adv[:, u] = ADV_NORMS[self.cost_adv_norm](adv_cols[1 + u])
        cost_ret = np.ascontiguousarray(all_ret[:, 1:])
        if self.n_costs:
            self.ep_cost_est = self.episode_costs.estimate(self.episode_length)

        def flat(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x.reshape((n,) + x.shape[2:])))

        return Batch(flat(b.critic_in if self.khop_actor else b.obs), flat(b.critic_in), flat(b.actions),
                     flat(b.logp), flat(b.params), torch.from_numpy(adv.astype(np.float32)), torch.from_numpy(ret),
                     torch.from_numpy(cost_adv), torch.from_numpy(cost_ret))

    def _policy(self, obs: torch.Tensor, params_old: torch.Tensor) -> torch.Tensor:
        """The actor's distribution, on the support of the stored one where actions are masked."""
        return self.dist.restrict(self.actor(obs), params_old) if self.agent.action_mask else self.actor(obs)

    def _n_minibatches(self, n: int) -> int:
        return max(1, n // self.cfg.minibatch_size) if self.cfg.minibatch_size > 0 else self.cfg.minibatches

    def _optimise(self, batch: Batch) -> dict[str, float]:
        """Epochs × minibatches of :meth:`_step`, each epoch over a fresh permutation."""
        n = len(batch)
        sums: dict[str, float] = defaultdict(float)
        steps = epochs = 0
        for _ in range(self.cfg.epochs):
            for idx in np.array_split(self.np_rng.permutation(n), self._n_minibatches(n)):
                for k, v in self._step(batch[torch.from_numpy(idx)]).items():
                    sums[k] += v
                steps += 1
            epochs += 1
            if self.stop_epochs(batch):
                break
        return {**{k: v / steps for k, v in sums.items()}, "epochs": float(epochs)}

    def _step(self, mb: Batch) -> dict[str, float]:
        """One minibatch: actor step on the hook's loss, then the critics."""
        return {**self._actor_step(mb), **self._critic_step(mb)}

    def _actor_step(self, mb: Batch) -> dict[str, float]:
        cfg = self.cfg
        params = self._policy(mb.obs, mb.params_old)
        logp = self.dist.log_prob(params, mb.act)
        entropy = self.dist.entropy(params).mean()
        kl_s = self.kl_per_state(mb.params_old, params)
        ratio = torch.exp(logp - mb.logp_old)
        pl, extra = self.policy_loss(ratio, logp, mb.logp_old, mb.adv, kl_s, mb.cost_adv)
        self.actor_opt.zero_grad()
        (pl - self.entropy_weight * entropy).backward()
        grad_norm = self.actor_opt.clip_grad_norm_(cfg.max_grad_norm)
        self.actor_opt.step()
        with torch.no_grad():
            clip_frac = float(((ratio - 1.0).abs() > cfg.clip).float().mean())
        return {"policy_loss": pl.item(), "entropy": entropy.item(), "clip_frac": clip_frac,
                "grad_norm": float(grad_norm), **extra}

    def _critic_step(self, mb: Batch) -> dict[str, float]:
        """½·MSE to the GAE returns for the reward critic and (summed over u) the cost critics."""
        cfg = self.cfg
        value_loss = 0.5 * (self.critic(mb.cin) - mb.ret).square().mean()
        self.critic_opt.zero_grad()
        value_loss.backward()
        self.critic_opt.clip_grad_norm_(cfg.max_grad_norm)
        self.critic_opt.step()
        out = {"value_loss": value_loss.item()}
        if self.n_costs:
            assert self.cost_opt is not None
            pred = torch.stack([c(mb.cin) for c in self.cost_critics], -1)
            cost_loss = 0.5 * (pred - mb.cost_ret).square().mean(0).sum()
            self.cost_opt.zero_grad()
            cost_loss.backward()
            self.cost_opt.clip_grad_norm_(cfg.max_grad_norm)
            self.cost_opt.step()
            out["cost_value_loss"] = cost_loss.item()
        return out

    # ------------------------------------------------------------------ state
    def _spec(self) -> dict[str, Any]:
        """What a checkpoint must match to be loadable (obs_desc, being prose, is left out)."""
        agent = {k: v for k, v in dataclasses.asdict(self.agent).items() if k != "obs_desc"}
        return {"agent": agent, "critic_dim": self.critic_dim, "n_agents": self.n_agents, "n_costs": self.n_costs}

    def _extra_state(self) -> dict[str, Any]:
        """Algorithm state beyond networks, optimisers, normalisers and coefficients."""
        return {"episode_costs": self.episode_costs.state_dict()} if self.n_costs else {}

    def _load_extra_state(self, d: dict[str, Any]) -> None:
        if self.n_costs:
            self.episode_costs.load_state_dict(d["episode_costs"])

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, except a partial rollout: the env server cannot
        resume mid-episode, so transitions from before a restart would be spliced onto new
        episodes without a done flag between them. Resume therefore starts a fresh rollout."""
        return {
            "format": 2, "algo": self.algo, "spec": self._spec(), "cfg": dataclasses.asdict(self.cfg),
            "modules": {k: m.state_dict() for k, m in self._modules().items()},
            "obs_norm": self.obs_norm.state_dict(), "critic_norm": self.critic_norm.state_dict(),
            "coefs": self.coefs.state_dict() if self.coefs is not None else {}, "extra": self._extra_state(),
            "torch_rng": self.gen.get_state(), "numpy_rng": self.np_rng.bit_generator.state,
            "counters": {"n_updates": self.n_updates, "samples_seen": self.samples_seen},
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore a state_dict of the same algorithm and agent; the saved cfg wins (exact resume)."""
        if d.get("algo") != self.algo:
            raise ValueError(f"checkpoint is for algo {d.get('algo')!r}, this learner is {self.algo!r}")
        if d["spec"] != self._spec():
            raise ValueError(f"checkpoint spec {d['spec']} != this learner's {self._spec()}")
        # only the fields it reads: the stored flat config's others (another algorithm's) may differ harmlessly
        saved = dataclasses.replace(self.cfg, **{k: v for k, v in d["cfg"].items() if k in self.used_keys()})
        if saved != self.cfg:
            changed = sorted(k for k in self.used_keys() if getattr(saved, k) != getattr(self.cfg, k))
            warnings.warn(f"resuming with the checkpoint's config; it differs in {changed}", stacklevel=2)
            self.cfg = saved
            self._build()
        mods = self._modules()
        if set(d["modules"]) != set(mods):
            raise ValueError(f"checkpoint modules {sorted(d['modules'])} != expected {sorted(mods)}")
        for k, m in mods.items():
            m.load_state_dict(d["modules"][k])
        self.obs_norm.load_state_dict(d["obs_norm"])
        self.critic_norm.load_state_dict(d["critic_norm"])
        if self.coefs is not None:
            self.coefs.load_state_dict(d["coefs"])
        self._load_extra_state(d["extra"])
        self.gen.set_state(d["torch_rng"])
        self.np_rng.bit_generator.state = d["numpy_rng"]
        self.n_updates = int(d["counters"]["n_updates"])
        self.samples_seen = int(d["counters"]["samples_seen"])
        self._last_ratio = None
        self._clear_pending()

    def _clear_pending(self) -> None:
        """Forget transitions collected before a restore (see state_dict)."""
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
