"""What a reader compares a run's curves with: a tabular game's exact optimum and uniform-policy
score, and the published readings of the Safe MAMuJoCo tasks.

Published readings: MACPO's README figures (`figures/wall1_manyagent_ant.png`,
`New_Ant_results.png`, `New_HalfCheetah_results.png`), read by eye at 1e7 environment steps to
±5–10 % and transcribed in ../shared/research/safe-mamujoco.md §6 — the only numbers published for
these tasks (SafePO publishes W&B links only). They are mean episode cost and reward over seeds
per 1000-step episode with the robot-level (shared) cost, so only the shared-cost task names get
them. khop has no plain MAPPO; its column is shown for context.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

PUBLISHED_STEPS = 10_000_000
PUBLISHED_SOURCE = "MACPO README figures, read at 1e7 env steps (±5–10 %; shared/research/safe-mamujoco.md §6)"
PUBLISHED_ALGOS = ("MACPO", "MAPPO-L", "HAPPO", "MAPPO", "IPPO")  # columns of the table below
KHOP_ALGO = {"macpo": "MACPO", "mappo-l": "MAPPO-L", "happo": "HAPPO", "ippo": "IPPO"}
# task -> (cost, reward) per PUBLISHED_ALGOS column
PUBLISHED: dict[str, tuple[tuple[float, float], ...]] = {
    "safe-manyagent-ant-2x3": ((5, 1650), (5, 2100), (270, 2550), (250, 2350), (250, 2400)),
    "safe-manyagent-ant-3x2": ((5, 2000), (5, 2050), (270, 2650), (250, 2450), (240, 2500)),
    "safe-manyagent-ant-6x1": ((10, 1700), (20, 2200), (270, 2500), (250, 2150), (280, 2200)),
    "safe-ant-2x4": ((5, 1380), (2, 2800), (200, 3350), (205, 2600), (285, 830)),
    "safe-ant-4x2": ((5, 1600), (5, 3000), (210, 3600), (240, 2000), (315, 850)),
    "safe-ant-2x4d": ((5, 1250), (5, 2800), (185, 3350), (225, 2250), (275, 850)),
    "safe-halfcheetah-2x3": ((10, 2650), (5, 2600), (560, 3700), (490, 3350), (85, 2200)),
    "safe-halfcheetah-3x2": ((10, 2450), (5, 2450), (600, 3950), (460, 3150), (180, 1850)),
    "safe-halfcheetah-6x1": ((15, 2750), (5, 2700), (600, 4000), (170, 2300), (65, 1250)),
}


@lru_cache(maxsize=None)
def reference_scores(task: str) -> dict[str, float] | None:
    """The exact optimum and uniform-random policy's J of a tabular game (coop games: backward
    induction; matrix games: the payoff table); None for every other task."""
    from envserver.tasks import task_class
    from envserver.tasks.coop_game import TabularCoopGame
    from envserver.tasks.matrix_games import MatrixGame

    try:
        cls = task_class(task)
    except ValueError:
        return None
    if issubclass(cls, TabularCoopGame):
        g = cls(1, 0)
        return {"optimum": g.optimal_return(), "uniform": g.evaluate(np.full((g.N, g.S, g.A), 1.0 / g.A))}
    if issubclass(cls, MatrixGame):
        g = cls(1, 0)
        return {"optimum": g.optimum(), "uniform": g.evaluate(0.5, 0.5)}
    return None


def published(task: str) -> dict[str, tuple[float, float]]:
    """{published algorithm: (cost, reward)} for ``task``; {} where nothing was published."""
    row = PUBLISHED.get(task)
    return dict(zip(PUBLISHED_ALGOS, row)) if row else {}


def reference_lines(cfg: dict) -> dict[str, list[tuple[float, str, str]]]:
    """Horizontal lines (value, label, line style) for the reward and cost plots of a run."""
    task, algo = str(cfg.get("task", "")), str(cfg.get("algo", ""))
    lines: dict[str, list[tuple[float, str, str]]] = {"return": [], "cost": []}
    ref = reference_scores(task)
    if ref:
        lines["return"] += [(ref["optimum"], f"optimum {ref['optimum']:.2f} (exact)", "--"),
                            (ref["uniform"], f"uniform random policy {ref['uniform']:.2f} (exact)", ":")]
    pub = published(task).get(KHOP_ALGO.get(algo, ""))
    if pub:
        name = KHOP_ALGO[algo]
        lines["cost"].append((pub[0], f"MACPO README: {name} at 1e7 steps ≈ {pub[0]:g}", "-."))
        lines["return"].append((pub[1], f"MACPO README: {name} at 1e7 steps ≈ {pub[1]:g}", "-."))
    return lines
