"""Learners an agent process can run: ``make_learner(name, ...)`` for every name in :data:`ALGOS`.

Each algorithm is a small subclass of :class:`~agentd.learner.base.Learner` that overrides the
policy loss and, if it has dual variables, ``_make_coefs`` / ``before_update`` / ``after_update``;
its class attribute ``defaults`` holds the hyperparameters its paper changes (each cited). The
off-policy baselines share :class:`~agentd.learner.offpolicy.OffPolicyLearner`. Registering a class
in :data:`ALGOS` makes it selectable by name.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envserver.tasks.base import AgentSpec

from .base import Learner
from .config import LearnerConfig, apply_overrides
from .defaults import PRESETS
from .dec_mappo_l import DecMAPPOL
from .dpo import DPO, IPPOKL, DPONoKL, DPONoSqrt
from .iddpg import IDDPG
from .ippo import HAPPO, IPPO
from .iql import IQL
from .macpo import MACPO
from .mafocops import MAFOCOPS
from .mappo_l import MAPPOL
from .shadow_pg import ShadowPG

ALGOS: dict[str, type[Learner]] = {
    cls.algo: cls
    for cls in (IPPO, DPO, DPONoSqrt, DPONoKL, IPPOKL, DecMAPPOL, MAFOCOPS, HAPPO, MAPPOL, MACPO, IQL, IDDPG,
                ShadowPG)
}

__all__ = ["ALGOS", "DPO", "DPONoKL", "DPONoSqrt", "DecMAPPOL", "HAPPO", "IDDPG", "IPPO", "IPPOKL", "IQL",
           "Learner", "LearnerConfig", "MACPO", "MAFOCOPS", "MAPPOL", "ShadowPG", "algo_names",
           "learner_config", "make_learner"]


def algo_names() -> list[str]:
    return sorted(ALGOS)


def learner_config(algo: str, overrides: dict[str, Any] | None = None) -> LearnerConfig:
    """The effective config of ``algo``: LearnerConfig's defaults, then the algorithm's ``defaults``,
    then the named ``preset`` (defaults.PRESETS) if any, then ``overrides`` (the caller's task-family
    defaults and --set values). Unknown algo, keys or values raise a one-line ValueError; the
    launcher calls this before any process starts, the agent to build its learner."""
    try:
        cls = ALGOS[algo]
    except KeyError:
        raise ValueError(f"unknown algo {algo!r}; choose one of: {', '.join(algo_names())}") from None
    overrides = dict(overrides or {})
    preset = str(overrides.get("preset", ""))
    if preset and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    return apply_overrides(LearnerConfig(), {**cls.defaults, **PRESETS.get(preset, {}), **overrides})


def make_learner(algo: str, agent: AgentSpec, critic_dim: int, n_agents: int, n_envs: int,
                 seed: int, overrides: dict[str, Any] | None = None, *,
                 cost_limits: Sequence[float] = (), episode_length: int | None = None) -> Learner:
    """Build a learner with :func:`learner_config`; unknown ``algo`` or override keys raise ValueError.

    ``cost_limits``: the task's per-episode limits d_u, one per cost (constrained algorithms build
    one cost critic per limit; the others ignore them). ``episode_length``: the task's episode
    length, used to estimate the episode cost while no episode has finished.
    """
    cfg = learner_config(algo, overrides)
    return ALGOS[algo](agent, critic_dim, n_agents, n_envs, seed, cfg, cost_limits=cost_limits,
                       episode_length=episode_length)
