"""Per-task-family hyperparameters that differ from :class:`LearnerConfig`'s paper defaults.

Kept apart from the dataclass because they belong to a (task family, paper) pair; the CLI's
``--set key=value`` overrides both. Each value names its source or the measurement behind it.
"""
from __future__ import annotations

from typing import Any

TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "coop-game": {
        "d_target": 0.1,  # dpo.md appendix B: 0.1 for the cooperative stochastic game
        # 32 steps x E copies per update instead of 128: 50-step episodes and short runs need many
        # small updates; measured (in-process, 3 seeds, 40k steps, E=16): return 25.2 -> 28.2-28.6
        "rollout_len": 32,
        "minibatches": 1,
    },
    "mpe": {
        "d_target": 0.01,  # dpo.md appendix B: 0.01 for MPE (simple spread, line and circle control)
    },
    # dpo.md appendix B: d_target 0.001 for multi-agent MuJoCo, every robot family (the
    # Safety-Gymnasium velocity tasks are MaMuJoCo robots too)
    **{family: {"d_target": 0.001} for family in (
        "safe-halfcheetah", "safe-coupled-halfcheetah", "safe-ant", "safe-manyagent-ant", "mamujoco",
        "safe-velocity")},
}


def defaults_for(task: str) -> dict[str, Any]:
    """The family defaults for a task name (``safe-halfcheetah-2x3`` → ``safe-halfcheetah``)."""
    for family, values in TASK_DEFAULTS.items():
        if task == family or task.startswith(family + "-"):
            return dict(values)
    return {}
