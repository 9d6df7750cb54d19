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

from envserver.atomic import write_whole
from envserver.jsonl import JsonlWriter
from envserver.tasks.base import AgentSpec

from .learner import Learner, make_learner
from .learner.checkpoint import state_digest


class AgentCore:
    def __init__(self, agent: int, algo: str, spec: AgentSpec, critic_dim: int, n_agents: int, n_envs: int,
                 task: str, seed: int, overrides: dict[str, Any], agent_dir: Path, checkpoint_every: int,
                 incarnation: int, comm_counters: Callable[[], dict[str, Any]] = dict,
                 describe: dict[str, Any] | None = None, cost_limits: Sequence[float] = (),
                 episode_length: int | None = None,
                 protocol_for: Callable[[Learner], Any] = lambda _learner: None) -> None:
        self.agent, self.E, self.incarnation = agent, n_envs, incarnation
        self.dir = agent_dir
        self.ckpt_dir = agent_dir / "checkpoints"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_every = checkpoint_every
        self.comm_counters = comm_counters
        # cost_limits / episode_length: constrained learners (DEC-MAPPO-L, …) build a cost critic per limit
        self.learner: Learner = make_learner(algo, spec, critic_dim, n_agents, n_envs, seed=seed * 1000 + agent,
                                             overrides=overrides, task=task,
                                             cost_limits=tuple(cost_limits), episode_length=episode_length)
        # the exchange with the neighbours this learner's update needs, if any (agentd/assembly.py)
        self.protocol = protocol_for(self.learner)
        latest = Learner.latest_checkpoint(self.ckpt_dir)
        self.resumed_from = latest
        if latest is not None:
            self.learner.load_checkpoint(latest)
            self._record_resume(latest)
        write_whole(agent_dir / "learner_config.json", json.dumps(  # its appearance ends start-up (compose/run/children.py)
            {"algo": algo, "critic_dim": critic_dim, **(describe or {}),
             **{k: v for k, v in dataclasses.asdict(self.learner.cfg).items() if k in self.learner.used_keys()}},
            indent=1))
        self.metrics = JsonlWriter(agent_dir / "metrics.jsonl")
        self.last_t = -1

    def _record_resume(self, path: Path) -> None:
        """resume.jsonl: which checkpoint this incarnation loaded and a digest of the weights and
        optimiser states it holds right after loading, checkable against the file (checkpoint.state_digest)."""
        with JsonlWriter(self.dir / "resume.jsonl") as out:
            out.write({"time": time.time(), "incarnation": self.incarnation, "checkpoint": path.name,
                       "update": int(self.learner.n_updates),
                       "modules_sha256": state_digest(self.learner.state_dict()["modules"])})

    def step(self, t: int, obs: np.ndarray, critic_in: np.ndarray, reward: np.ndarray, cost: np.ndarray,
             done: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Consume STEP t (already κ-relayed) and return this agent's action rows (``mask``
        [E, n_actions] bool: the available actions, for a task with action masks)."""
        if self.observe(t, reward, cost, done):
            self.update(t, critic_in)
        return self.act(t, obs, critic_in, mask)

    def observe(self, t: int, reward: np.ndarray, cost: np.ndarray, done: np.ndarray) -> bool:
        """Complete the previous transition with STEP t's reward; True when an update is due."""
        if self.last_t < 0:
            return False
        done = np.asarray(done, dtype=bool)
        if t != self.last_t + 1:
            done = np.ones_like(done)  # we missed steps: cut the trajectory rather than splice it
        self.learner.observe(reward, cost, done)
        return self.learner.ready()

    def act(self, t: int, obs: np.ndarray, critic_in: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        self.last_t = t
        return self.learner.act(obs, critic_in, mask)

    def update(self, t: int, critic_in: np.ndarray) -> None:
        """Learn on the full rollout, through the update exchange when the learner has one (a
        sequential learner waits for its turn in the token walk, shadow-PG for its ball's Q-values)."""
        started = time.monotonic()
        if self.protocol is not None:
            stats = self.protocol.run(int(self.learner.n_updates), self.learner, critic_in)
        else:
            stats = self.learner.update(critic_in)
        self.record_update(t, stats, time.monotonic() - started)

    def record_update(self, t: int, stats: dict[str, Any], seconds: float) -> None:
        """One metrics row, and a checkpoint every ``checkpoint_every`` updates."""
        self.metrics.write({"env_step": t * self.E, "update": int(self.learner.n_updates), "time": time.time(),
                            "incarnation": self.incarnation, "update_seconds": seconds,
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
