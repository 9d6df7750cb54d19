"""``mpe-simple-spread``: the maintained MPE's simple spread (``mpe2.simple_spread_v3``, N = 5),
served through the PettingZoo adapter.

Why through the adapter rather than re-implemented like line and circle control: mpe2 is the
maintained implementation of exactly this task, so using it keeps our numbers comparable with
everyone else's. Why a registered class with a static spec rather than a ``pettingzoo:`` name:
``khop tasks`` reads every task's spec, and mpe2 is an optional extra (``khop[mpe]``) — the spec
must not need it; building the task does, and checks that the live env agrees with the spec.

The task is mpe2's defaults with N = 5: 5 agents, 5 landmarks, 25-step episodes, 5 discrete
actions, ``local_ratio`` 0.5. Each agent's reward is ½·(−Σ_landmarks min_agent distance) plus
½·(−1 per agent it collides with); khop's team reward is their mean. Unlike our line and circle
control, the observation is MPE's own and includes the other agents: own velocity (2), own
position (2), the 5 landmarks relative to it (10), the 4 other agents relative to it (8) and their
communication channels (8, always zero: the agents are silent).
"""
from __future__ import annotations

import os
from typing import Any

from .base import AgentSpec, TaskSpec
from .particle_world import N_MOVES
from .particles import TOPOLOGY
from .pettingzoo_task import PettingZooTask

N_AGENTS, EPISODE_LENGTH = 5, 25
OBS_DESC = ("own velocity (2), own position (2), 5 landmarks − own position (10), 4 other agents − own position (8), "
            "4 other agents' communication (8, always 0)")


def simple_spread() -> Any:
    """mpe2's simple_spread_v3 parallel env with 5 agents (MPE defaults otherwise)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # mpe2 imports pygame, which greets on stdout
    from mpe2 import simple_spread_v3

    return simple_spread_v3.parallel_env(N=N_AGENTS, max_cycles=EPISODE_LENGTH, continuous_actions=False)


class SimpleSpread(PettingZooTask):
    spec = TaskSpec(
        name="mpe-simple-spread",
        agents=(AgentSpec(obs_dim=30, act_kind="discrete", act_dim=1, n_actions=N_MOVES, obs_desc=OBS_DESC),)
        * N_AGENTS,
        episode_length=EPISODE_LENGTH,
        topology=TOPOLOGY,
        description="mpe2 simple spread, 5 agents cover 5 landmarks (DPO A.1); team reward = mean of MPE's",
    )
    factory = staticmethod(simple_spread)

    def __init__(self, n_envs: int, seed: int) -> None:
        try:
            import mpe2  # noqa: F401
        except ImportError:
            raise ValueError("task 'mpe-simple-spread' needs mpe2: pip install 'khop[mpe]'") from None
        super().__init__(n_envs, seed)
