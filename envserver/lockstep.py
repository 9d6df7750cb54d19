"""The envserver's clockwork without sockets: E env copies reset and stepped together, the step
counters, the finished episodes (episodes.jsonl) and status.json.

Why a module of its own: the socket server (server.py) and the in-process runner
(compose/run/inprocess.py) must count steps, close episodes and report status identically, or the
two modes drift; each owns a Lockstep and differs only in how the actions arrive.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_whole
from .episodes import EpisodeLog
from .tasks import VecTask
from .tasks.base import StepResult


class Lockstep:
    def __init__(self, task: VecTask, run_dir: Path, max_env_steps: int, t: int = 0, env_step: int = 0) -> None:
        """``t`` / ``env_step``: where a restarted server continues (0 for a new run)."""
        self.task, self.run_dir, self.max_env_steps = task, Path(run_dir), max_env_steps
        self.E, self.n, self.n_costs = task.n_envs, task.spec.n_agents, task.spec.n_costs
        self.t, self.env_step = t, env_step
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.episodes = EpisodeLog(self.run_dir / "episodes.jsonl", self.E, self.n_costs)
        self.started_at: float | None = None  # wall time of the first step: excludes agent start-up
        self.masks: list[np.ndarray] | None = None  # the action masks of the state the agents act on now
        self._masked = any(a.action_mask for a in task.spec.agents)  # asked on every step

    @property
    def finished(self) -> bool:
        return self.env_step >= self.max_env_steps

    def reset(self, truncated: bool = False) -> StepResult:
        """Every copy's first observation, with a zero reward and cost; ``truncated``: the episodes
        the agents were in ended with a previous server (a restart), so they are told so."""
        self.started_at = time.time()
        return self._with_masks(StepResult(self.task.reset(), np.zeros(self.E, dtype=np.float32),
                                           [np.zeros((self.E, self.n_costs), dtype=np.float32)] * self.n,
                                           np.zeros(self.E, dtype=bool), np.full(self.E, truncated, dtype=bool)))

    def step(self, actions: list[np.ndarray]) -> StepResult:
        """Step every copy with every agent's actions; count the step and close finished episodes."""
        res = self.task.step(actions)
        self.t += 1
        self.env_step += self.E
        self.episodes.account(self.env_step, res.reward, res.cost, res.terminated | res.truncated, res.outcome)
        return self._with_masks(res)

    def _with_masks(self, res: StepResult) -> StepResult:
        """Attach the task's action masks for the state the agents act on next; a copy where an
        agent has no action at all is the task's bug, refused here rather than sent."""
        self.masks = self.task.action_masks()
        if self.masks is None and self._masked:
            raise ValueError(f"task {self.task.spec.name} declares action masks but gives none")
        if self.masks is not None:
            for i, m in enumerate(self.masks):
                if not m.any(axis=1).all():
                    raise ValueError(f"task {self.task.spec.name}: agent {i} has no available action in copy "
                                     f"{int(np.flatnonzero(~m.any(axis=1))[0])}")
        res.mask = self.masks
        return res

    def unavailable(self, agent: int, action: np.ndarray) -> np.ndarray:
        """The copies in which ``action`` [E] int64 (in range) is masked out for ``agent`` now."""
        if self.masks is None or not self.task.spec.agents[agent].action_mask:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(~self.masks[agent][np.arange(self.E), action])

    def write_status(self, live: list[int], done: bool, **extra: Any) -> None:
        """status.json (what `khop run`'s progress bar, its start-up watch and a watcher read)."""
        status = {"env_step": self.env_step, "t": self.t, "live": live, "max_env_steps": self.max_env_steps,
                  "done": done, "time": time.time(), "started_at": self.started_at, **extra}
        write_whole(self.run_dir / "status.json", json.dumps(status))  # whole or not at all, even on a full disk

    def close(self) -> None:
        self.episodes.close()
        self.task.close()
