"""What an agent does with one env step, without any sockets.

Shared by the distributed `agentd` process and the in-process reference (`khop run --inprocess`),
so the two run literally the same learner code in the same order and can be compared step for
step: the reward of action t−1 completes the previous transition → a full rollout triggers an
update bootstrapped on the κ-hop state s_t → act on obs_t.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from envserver.jsonl import JsonlWriter
from envserver.tasks.base import AgentSpec

from .learner import Learner, make_learner
from .learner.defaults import defaults_for


class AgentCore:
    def __init__(self, agent: int, algo: str, spec: AgentSpec, critic_dim: int, n_agents: int, n_envs: int,
                 task: str, seed: int, overrides: dict[str, Any], agent_dir: Path, checkpoint_every: int,
                 incarnation: int, comm_counters: Callable[[], dict[str, Any]] = dict,
                 describe: dict[str, Any] | None = None, cost_limits: Sequence[float] = (),
                 episode_length: int | None = None) -> None:
        self.agent, self.E, self.incarnation = agent, n_envs, incarnation
        self.dir = agent_dir
        self.ckpt_dir = agent_dir / "checkpoints"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_every = checkpoint_every
        self.comm_counters = comm_counters
        # cost_limits / episode_length: constrained learners (DEC-MAPPO-L, …) build a cost critic per limit
        self.learner: Learner = make_learner(algo, spec, critic_dim, n_agents, n_envs, seed=seed * 1000 + agent,
                                             overrides={**defaults_for(task), **overrides},
                                             cost_limits=tuple(cost_limits), episode_length=episode_length)
        latest = Learner.latest_checkpoint(self.ckpt_dir)
        self.resumed_from = latest
        if latest is not None:
            self.learner.load_checkpoint(latest)
        (agent_dir / "learner_config.json").write_text(json.dumps(
            {"algo": algo, "critic_dim": critic_dim, **(describe or {}),
             **dataclasses.asdict(self.learner.cfg)}, indent=1))
        self.metrics = JsonlWriter(agent_dir / "metrics.jsonl")
        self.last_t = -1

    def step(self, t: int, obs: np.ndarray, critic_in: np.ndarray, reward: np.ndarray, cost: np.ndarray,
             done: np.ndarray) -> np.ndarray:
        """Consume STEP t (already κ-relayed) and return this agent's action rows."""
        if self.last_t >= 0:
            done = np.asarray(done, dtype=bool)
            if t != self.last_t + 1:
                done = np.ones_like(done)  # we missed steps: cut the trajectory rather than splice it
            self.learner.observe(reward, cost, done)
            if self.learner.ready():
                self._update(t, critic_in)
        self.last_t = t
        return self.learner.act(obs, critic_in)

    def _update(self, t: int, critic_in: np.ndarray) -> None:
        started = time.monotonic()
        stats = self.learner.update(critic_in)
        self.metrics.write({"env_step": t * self.E, "update": int(self.learner.n_updates), "time": time.time(),
                            "incarnation": self.incarnation, "update_seconds": time.monotonic() - started,
                            **stats, **self.comm_counters()})
        if self.learner.n_updates % self.checkpoint_every == 0:
            self.checkpoint()

    def checkpoint(self) -> Path:
        return self.learner.save_checkpoint(self.ckpt_dir, int(self.learner.n_updates))

    def close(self) -> None:
        self.checkpoint()
        self.metrics.close()


def pin_threads() -> None:
    """One BLAS/torch thread per agent: N agents share 2 cores, so threads only fight."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
