"""Learners an agent process can run: ``make_learner(name, ...)`` for every name in :data:`ALGOS`.

Each algorithm is a small subclass of :class:`~agentd.learner.base.Learner` that overrides the
policy loss and, if it has dual variables, ``_make_coefs`` / ``before_update`` / ``after_update``;
its class attribute ``defaults`` holds the hyperparameters its paper changes (each cited) and
``config_keys`` the LearnerConfig fields it reads beyond config.COMMON_KEYS. The off-policy
baselines share :class:`~agentd.learner.offpolicy.OffPolicyLearner`, the Lagrangian ones
:class:`~agentd.learner.lagrangian.CostLagrangian`. Registering a class in :data:`ALGOS` makes it
selectable by name.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envserver.tasks.base import AgentSpec

from .base import Learner
from .config import LearnerConfig, apply_overrides, check_known
from .defaults import FAMILY_KEYS, PRESETS, defaults_for
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


def _users(key: str, algo: str) -> str:
    """Which algorithms read ``key``, briefly: the shorter of the list and its complement."""
    users = [a for a in algo_names() if key in ALGOS[a].used_keys()]
    others = [a for a in algo_names() if a not in users]
    return f"used by {', '.join(users)}" if len(users) <= len(others) else f"used by all but {', '.join(others)}"


def _refuse_unused(algo: str, keys: list[str]) -> None:
    """One line naming every key ``algo`` would not read: a flat config would take it and ignore it."""
    unused = sorted(k for k in keys if k not in ALGOS[algo].used_keys())
    if unused:
        raise ValueError("; ".join(f"--set {k}: {algo} does not use this key ({_users(k, algo)})" for k in unused))


def learner_config(algo: str, overrides: dict[str, Any] | None = None, *, task: str | None = None) -> LearnerConfig:
    """The effective config of ``algo``: LearnerConfig's defaults, then the algorithm's ``defaults``,
    then the named ``preset`` (defaults.PRESETS) if any, then the task family's defaults
    (defaults.defaults_for), then ``overrides`` (the caller's --set values). Unknown algo, keys or
    values raise a one-line ValueError; the launcher calls this before any process starts, the
    agent to build its learner.

    Each algorithm reads only its ``used_keys()``. The preset's and the task family's values of other
    fields are dropped silently (they are written for every algorithm), but an override of such a
    field is refused, naming the algorithms that read it, and so is a preset of which ``algo`` reads
    nothing. ``task=None``: the caller has merged the family's defaults into ``overrides`` itself, so
    a field some family sets (defaults.FAMILY_KEYS) cannot be told from the user's and is dropped
    too; every other field ``algo`` does not read is still refused.
    """
    try:
        cls = ALGOS[algo]
    except KeyError:
        raise ValueError(f"unknown algo {algo!r}; choose one of: {', '.join(algo_names())}") from None
    overrides = dict(overrides or {})
    check_known(overrides)
    preset = str(overrides.get("preset", ""))
    if preset and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    if preset and not set(PRESETS[preset]) & cls.used_keys():
        raise ValueError(f"--set preset={preset}: {algo} uses none of its keys ({', '.join(sorted(PRESETS[preset]))})")
    _refuse_unused(algo, [k for k in overrides if task is not None or k not in FAMILY_KEYS])
    family = defaults_for(task) if task else {}
    layers = {**cls.defaults, **PRESETS.get(preset, {}), **family, **overrides}
    return apply_overrides(LearnerConfig(), {k: v for k, v in layers.items() if k in cls.used_keys()})


def make_learner(algo: str, agent: AgentSpec, critic_dim: int, n_agents: int, n_envs: int,
                 seed: int, overrides: dict[str, Any] | None = None, *, task: str | None = None,
                 cost_limits: Sequence[float] = (), episode_length: int | None = None) -> Learner:
    """Build a learner with :func:`learner_config` (``overrides`` and ``task`` as there); unknown
    ``algo`` or override keys, and keys ``algo`` does not read, raise ValueError.

    ``cost_limits``: the task's per-episode limits d_u, one per cost (constrained algorithms build
    one cost critic per limit; the others ignore them). ``episode_length``: the task's episode
    length, used to estimate the episode cost while no episode has finished.
    """
    cfg = learner_config(algo, overrides, task=task)
    return ALGOS[algo](agent, critic_dim, n_agents, n_envs, seed, cfg, cost_limits=cost_limits,
                       episode_length=episode_length)
