"""Episode bookkeeping over E env copies: sums reward and costs per copy and writes one row per
finished episode to episodes.jsonl. Used by the envserver and by the in-process reference, so both
report episodes identically."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .jsonl import JsonlWriter


class EpisodeLog:
    def __init__(self, path: Path, n_envs: int, n_costs: int) -> None:
        self.writer = JsonlWriter(path)
        self.n_costs = n_costs
        self._return = np.zeros(n_envs)
        self._cost = np.zeros((n_envs, n_costs))
        self._length = np.zeros(n_envs, dtype=np.int64)

    def account(self, env_step: int, reward: np.ndarray, cost: list[np.ndarray], done: np.ndarray,
                outcome: dict[str, np.ndarray] | None = None) -> None:
        """Add one lockstep; ``cost`` holds each agent's [E, n_costs] rows (their mean is the team's cost);
        ``outcome``: per-copy facts about the episodes that ended (StepResult.outcome, e.g. SMAX's won)."""
        self._return += reward
        if self.n_costs:
            self._cost += np.add.reduce(cost, axis=0) / len(cost)  # np.mean's arithmetic, without its wrapper: every step
        self._length += 1
        for e in np.flatnonzero(done):
            self.writer.write({
                "env_step": env_step, "env": int(e), "episode_return": float(self._return[e]),
                "episode_cost": float(self._cost[e].sum()), "episode_costs": self._cost[e].tolist(),
                "episode_length": int(self._length[e]), "time": time.time(),
                **{k: v[e].item() for k, v in (outcome or {}).items()}})
            self._return[e], self._cost[e], self._length[e] = 0.0, 0.0, 0

    def close(self) -> None:
        self.writer.close()
