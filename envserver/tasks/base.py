"""The contract every task honours, so the server loop never knows which physics it steps.

A task is *vectorised*: it owns E independent copies of one environment and steps them
together, because one lockstep round trip per E env steps is what makes a process-per-agent
simulator fast enough (see ../shared/PERF.md: the round trip, not the physics, is the ceiling).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

ActKind = Literal["discrete", "continuous"]


@dataclass(frozen=True)
class AgentSpec:
    """What one agent sees and controls; sent to the agent in WELCOME."""

    obs_dim: int
    act_kind: ActKind
    act_dim: int  # continuous: number of actuators; discrete: 1
    n_actions: int = 0  # discrete: number of choices; continuous: 0
    act_low: float = -1.0
    act_high: float = 1.0
    obs_desc: str = ""  # human-readable: which quantities make up the observation


@dataclass(frozen=True)
class TaskSpec:
    """Static facts about a task that agents and reports need."""

    name: str
    agents: tuple[AgentSpec, ...]
    episode_length: int
    cost_names: tuple[str, ...] = ()
    cost_limits: tuple[float, ...] = ()  # per-episode limits, one per cost
    topology: str = "complete"  # default agent graph: a file in topologies/ or a generator name
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def n_agents(self) -> int:
        return len(self.agents)

    @property
    def n_costs(self) -> int:
        return len(self.cost_names)


@dataclass
class StepResult:
    """One lockstep over all E copies.

    ``obs[i]`` is agent i's observation [E, obs_dim] *after* auto-reset: for a copy whose episode
    ended this step it is the first observation of the next episode. ``reward`` [E] is the team
    reward of the action just taken, ``cost[i]`` [E, n_costs] agent i's cost(s) (the same array
    for every agent when costs are team-shared), ``terminated`` / ``truncated`` [E] bool.
    """

    obs: list[np.ndarray]
    reward: np.ndarray
    cost: list[np.ndarray]
    terminated: np.ndarray
    truncated: np.ndarray


class VecTask(ABC):
    """E lockstepped copies of one task. Subclasses register themselves in ``tasks.REGISTRY``."""

    spec: TaskSpec

    def __init__(self, n_envs: int, seed: int) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        self.n_envs = n_envs
        self.seed = seed

    @abstractmethod
    def reset(self) -> list[np.ndarray]:
        """Reset every copy; return each agent's observation rows [E, obs_dim] float32."""

    @abstractmethod
    def step(self, actions: list[np.ndarray]) -> StepResult:
        """Apply every agent's action rows (continuous [E, act_dim] float32, discrete [E] int64)
        to all copies, auto-resetting copies whose episode ended."""

    def fallback_action(self, agent: int) -> np.ndarray:
        """The action used for an agent that missed the step deadline: do nothing."""
        a = self.spec.agents[agent]
        if a.act_kind == "discrete":
            return np.zeros(self.n_envs, dtype=np.int64)
        return np.zeros((self.n_envs, a.act_dim), dtype=np.float32)

    def close(self) -> None:
        """Release native resources (MuJoCo models are freed by the GC; nothing by default)."""
