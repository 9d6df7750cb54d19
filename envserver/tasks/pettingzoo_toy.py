"""A tiny PettingZoo ParallelEnv, so that ``--task pettingzoo:...`` can be tried and tested without
any third-party environment package:

    khop run --task pettingzoo:envserver.tasks.pettingzoo_toy:parallel_env

"Meet in the middle": two agents on a line of 7 cells (0..6) start at the two ends; each step each
moves −1, 0 or +1 (Discrete(3)). The shared reward is −|x₀ − x₁|/6 per step; an agent observes its
own position and the step count as a Box(2). An episode terminates when they share a cell and is
truncated after 12 steps. ``info["cost"]`` is 1 when an agent tried to walk off the line, so the
adapter's cost path is exercised too; ``masked_parallel_env`` is the same game whose infos mask the
moves off the line, for the action-mask path. Needs pettingzoo and gymnasium (``khop[pettingzoo]``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

CELLS, HORIZON = 7, 12


class MeetInTheMiddle(ParallelEnv):
    metadata = {"name": "meet_in_the_middle_v0", "render_modes": []}

    def __init__(self) -> None:
        self.possible_agents = ["left", "right"]
        self.agents: list[str] = []
        self.max_cycles = HORIZON
        self._obs_space = spaces.Box(0.0, float(max(CELLS, HORIZON)), (2,), np.float32)
        self._act_space = spaces.Discrete(3, start=-1)
        self.pos = {"left": 0, "right": CELLS - 1}
        self.t = 0

    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_space

    def _obs(self) -> dict[str, np.ndarray]:
        return {a: np.array([self.pos[a], self.t], dtype=np.float32) for a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        # deterministic: both agents always start at the two ends, so the seed changes nothing
        self.agents = list(self.possible_agents)
        self.pos = {"left": 0, "right": CELLS - 1}
        self.t = 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        infos = {}
        for a in self.agents:
            want = self.pos[a] + int(actions.get(a, 0))
            self.pos[a] = int(np.clip(want, 0, CELLS - 1))
            infos[a] = {"cost": float(want != self.pos[a])}
        self.t += 1
        gap = abs(self.pos["left"] - self.pos["right"])
        rewards = {a: -gap / (CELLS - 1) for a in self.agents}
        terminations = {a: gap == 0 for a in self.agents}
        truncations = {a: self.t >= HORIZON and gap != 0 for a in self.agents}
        obs = self._obs()
        if gap == 0 or self.t >= HORIZON:
            self.agents = []
        return obs, rewards, terminations, truncations, infos


class MaskedMeetInTheMiddle(MeetInTheMiddle):
    """The same game with PettingZoo's action masks: ``info["action_mask"]`` forbids walking off the
    line (move −1 in cell 0, +1 in the last cell), so a khop actor never tries and its cost stays 0."""

    metadata = {"name": "masked_meet_in_the_middle_v0", "render_modes": []}

    def _masks(self, infos: dict) -> dict:
        for a in self.agents:
            infos.setdefault(a, {})["action_mask"] = np.array([self.pos[a] > 0, True, self.pos[a] < CELLS - 1],
                                                               dtype=np.int8)
        return infos

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs, infos = super().reset(seed, options)
        return obs, self._masks(infos)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        obs, rewards, terminations, truncations, infos = super().step(actions)
        return obs, rewards, terminations, truncations, self._masks(infos)


def parallel_env() -> MeetInTheMiddle:
    """The factory ``pettingzoo:envserver.tasks.pettingzoo_toy:parallel_env`` names."""
    return MeetInTheMiddle()


def masked_parallel_env() -> MaskedMeetInTheMiddle:
    """``pettingzoo:envserver.tasks.pettingzoo_toy:masked_parallel_env``: the game with action masks."""
    return MaskedMeetInTheMiddle()
