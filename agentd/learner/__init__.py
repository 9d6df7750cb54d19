"""Learners an agent process can run: ``make_learner("ippo" | "dpo", ...)``.

Each algorithm is a small subclass of :class:`~agentd.learner.base.Learner` that overrides the
policy loss and, if it has dual variables, ``_make_coefs`` / ``after_update``; registering it in
:data:`ALGOS` makes it selectable by name.
"""
from __future__ import annotations

from typing import Any

from envserver.tasks.base import AgentSpec

from .base import Learner
from .config import LearnerConfig, apply_overrides
from .dpo import DPO
from .ippo import IPPO

ALGOS: dict[str, type[Learner]] = {"ippo": IPPO, "dpo": DPO}

__all__ = ["ALGOS", "DPO", "IPPO", "Learner", "LearnerConfig", "algo_names", "make_learner"]


def algo_names() -> list[str]:
    return sorted(ALGOS)


def make_learner(algo: str, agent: AgentSpec, critic_dim: int, n_agents: int, n_envs: int,
                 seed: int, overrides: dict[str, Any] | None = None) -> Learner:
    """Build a learner; unknown ``algo`` or override keys raise ValueError naming them."""
    try:
        cls = ALGOS[algo]
    except KeyError:
        raise ValueError(f"unknown algo {algo!r}; choose one of: {', '.join(algo_names())}") from None
    cfg = apply_overrides(LearnerConfig(), overrides)
    return cls(agent, critic_dim, n_agents, n_envs, seed, cfg)
