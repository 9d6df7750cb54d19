"""Per-task-family hyperparameters that differ from :class:`LearnerConfig`'s paper defaults.

Kept apart from the dataclass because they belong to a (task family, paper) pair; the CLI's
``--set key=value`` overrides both. Each value names its source or the measurement behind it.
"""
from __future__ import annotations

from typing import Any

TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    # also coop-game-joint (matched by prefix): the same paper game, read as one draw per joint action,
    # with the same 50-step episodes; appendix B's 0.1 is for "the cooperative stochastic game"
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
    "smax": {
        "d_target": 0.02,  # dpo.md appendix B: 0.02 for SMAC, whose re-implementation the SMAX battles are
    },
    # dpo.md appendix B: d_target 0.001 for multi-agent MuJoCo, every robot family (the
    # Safety-Gymnasium velocity tasks are MaMuJoCo robots too)
    **{family: {"d_target": 0.001} for family in (
        "safe-halfcheetah", "safe-coupled-halfcheetah", "safe-ant", "safe-manyagent-ant", "mamujoco",
        "safe-velocity")},
}

#: every field some task family sets: where a caller merged a family's defaults into the user's overrides
#: (learner_config(task=None)), such a field is dropped for an algorithm that does not read it, not refused
FAMILY_KEYS: frozenset[str] = frozenset(k for values in TASK_DEFAULTS.values() for k in values)


#: ``--set preset=NAME``: values that reproduce a reference implementation's behaviour, applied above
#: the algorithm's defaults and beneath the task family's and the caller's overrides (make_learner)
PRESETS: dict[str, dict[str, Any]] = {
    # SafePO MAPPO-Lag / MACPO-repo MAPPO-L (safe-mamujoco.md §5.3, learner-audit.md Q2): λ starts at 0.78
    # and takes 5 SGD steps per update (one per epoch) of 1e-5 on the (1 − γ)-scaled gap; on the raw gap
    # with γ = 0.99 that is 5 × 1e-5 × 0.01 = 5e-7 per update, i.e. λ is effectively a fixed penalty;
    # advantages combine as Â − λ·Â_c, no d_u, no 1/(1 + λ).
    "safepo": {"lambda_optimizer": "sgd", "lambda_lr": 5e-7, "lambda_init": 0.78, "lagrangian_form": "plain"},
    # mafocops.md eq. 10 with Table 5's α = 5e-5 by plain SGD from ν = 0 (FOCOPS reference code)
    "mafocops-paper": {"lambda_optimizer": "sgd", "nu_lr": 5e-5, "nu_init": 0.0},
}


def defaults_for(task: str) -> dict[str, Any]:
    """The family defaults for a task name (``safe-halfcheetah-2x3`` → ``safe-halfcheetah``)."""
    for family, values in TASK_DEFAULTS.items():
        if task == family or task.startswith(family + "-"):
            return dict(values)
    return {}
