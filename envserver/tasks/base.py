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
    # discrete only: every STEP carries a mask [E, n_actions] of the actions available now (SMAX:
    # attack an enemy in range, move while alive); the actor samples only those, and the envserver
    # refuses any other with an ERROR and steps that copy with the fallback action
    action_mask: bool = False


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
    ``mask[i]`` [E, n_actions] bool: the actions agent i may take next (tasks with ``action_mask``
    agents, filled in by the lockstep from :meth:`VecTask.action_masks`). ``outcome``: per-copy
    facts about the episode that ended this step (SMAX: ``won`` [E] bool), read where
    terminated | truncated and written into that episode's episodes.jsonl row.
    """

    obs: list[np.ndarray]
    reward: np.ndarray
    cost: list[np.ndarray]
    terminated: np.ndarray
    truncated: np.ndarray
    mask: list[np.ndarray] | None = None
    outcome: dict[str, np.ndarray] = field(default_factory=dict)


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

    @classmethod
    def check_installed(cls) -> None:
        """Raise ValueError with a one-line install hint when the task's optional packages are
        missing; called before any process starts (``khop run``), so it must not import them."""

    def action_masks(self) -> list[np.ndarray] | None:
        """Each agent's available actions in the current state, [E, n_actions] bool (after reset,
        after each step and its auto-resets), or None for a task without masks."""
        return None

    def fallback_action(self, agent: int) -> np.ndarray:
        """The action used for an agent that missed the step deadline or sent an unavailable one:
        do nothing (action 0, or zeros). Where action 0 is masked out, the lowest available one:
        a task whose no-op sits elsewhere overrides this (SMAX: stop)."""
        a = self.spec.agents[agent]
        if a.act_kind != "discrete":
            return np.zeros((self.n_envs, a.act_dim), dtype=np.float32)
        action = np.zeros(self.n_envs, dtype=np.int64)
        masks = self.action_masks() if a.action_mask else None
        if masks is not None:
            action = np.where(masks[agent][:, 0], 0, np.argmax(masks[agent], axis=1)).astype(np.int64)
        return action

    def use_threads(self, threads: int) -> None:
        """Step the copies on ``threads`` threads from now on (physics_pool.py). A task whose step
        holds the GIL throughout has nothing to gain and keeps one (the default)."""

    def close(self) -> None:
        """Release native resources (MuJoCo models are freed by the GC; nothing by default)."""
