"""Section (b): training throughput — env samples per second including the learners' updates,
distributed against in-process (A B A B), with a real constrained learner and its defaults.

The rate runs from the moment every agent is ready (see bench/measure.py) to the envserver's
last step, so it contains ``updates`` full updates (default: rollout 128 × E = 16 copies, 15
epochs × 4 minibatches) and the steps between them.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable

from compose.launcher import RunConfig

from .measure import run_distributed, run_in_process

TASK, ALGO, ENVS, ROLLOUT = "safe-halfcheetah-6x1", "dec-mappo-l", 16, 128  # LearnerConfig.rollout_len


def run_training(updates: int, repeats: int, root: Path, log: Callable[[str], None] = print,
                 task: str = TASK, algo: str = ALGO) -> dict[str, Any]:
    runs: dict[str, list[dict]] = {"distributed": [], "inprocess": []}
    for r in range(repeats):
        order = ("distributed", "inprocess") if r % 2 == 0 else ("inprocess", "distributed")
        for mode in order:
            # one lockstep past the last update, so the window ends after it
            cfg = RunConfig(task=task, algo=algo, kappa=1, envs=ENVS, steps=ENVS * (ROLLOUT * updates + 1),
                            run_dir=root / f"train-{task}-{algo}-{mode}-{r}")
            res = (run_distributed if mode == "distributed" else run_in_process)(cfg)
            runs[mode].append(res)
            log(f"  training {task} {algo} {mode} rep {r}: {res['steps_per_s'] or 0:,.0f} samples/s "
                f"(load {res['load_1m']:.1f})")
    ratios = [d["steps_per_s"] / i["steps_per_s"] for d, i in zip(runs["distributed"], runs["inprocess"])
              if d["steps_per_s"] and i["steps_per_s"]]
    med = lambda mode: statistics.median([r["steps_per_s"] for r in runs[mode] if r["steps_per_s"]] or [0.0])  # noqa: E731
    return {"task": task, "algo": algo, "envs": ENVS, "kappa": 1, "updates": updates, "repeats": repeats,
            "distributed_samples_per_s": med("distributed"), "inprocess_samples_per_s": med("inprocess"),
            "ratio": statistics.median(ratios) if ratios else None,
            "rss_mb_max": max((r["rss_mb_max"] or 0 for r in runs["distributed"]), default=None),
            "load_1m": [r["load_1m"] for m in runs.values() for r in m],
            "failed": [r["failed"] for r in runs["distributed"] if r["failed"]]}
