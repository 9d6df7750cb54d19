"""Section (b): training throughput — env samples per second including the learners' updates,
distributed against in-process (A B A B), with a real constrained learner and its defaults.

The rate runs from the moment every agent is ready (see bench/measure.py) to the envserver's
last step, so it contains ``updates`` full updates (DEC-MAPPO-L defaults: rollout 128 × E = 16
copies, 5 epochs × 1 minibatch) and the steps between them. Next to it: the CPU seconds of every
process of the run per 1,000 samples, the measure that barely moves with the load others put on
the shared cores (bench/NOTES.md), and what it projects on two cores of our own.

    python -m bench.training --repeats 3 --envs 16,32
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from compose.run.config import RunConfig

from .measure import run_distributed, run_in_process

ALGO, ENVS, ROLLOUT = "dec-mappo-l", 16, 128  # LearnerConfig.rollout_len
TRAIN_TASKS = ("safe-velocity-halfcheetah-2x3", "safe-velocity-halfcheetah-6x1")  # the goals of issue 13 item 5
CORES = 2  # the projection's machine: the two cores this benchmark was written for


def cpu_s_per_1k(run: dict) -> float | None:
    """CPU seconds of all the run's processes per 1,000 samples (from CPU µs per env step)."""
    us = run.get("cpu_us_per_step")
    return us / 1e3 if us else None


def run_training(updates: int, repeats: int, root: Path, log: Callable[[str], None] = print,
                 task: str = TRAIN_TASKS[-1], algo: str = ALGO, envs: int = ENVS) -> dict[str, Any]:
    runs: dict[str, list[dict]] = {"distributed": [], "inprocess": []}
    for r in range(repeats):
        order = ("distributed", "inprocess") if r % 2 == 0 else ("inprocess", "distributed")
        for mode in order:
            # one lockstep past the last update, so the window ends after it
            cfg = RunConfig(task=task, algo=algo, kappa=1, envs=envs, steps=envs * (ROLLOUT * updates + 1),
                            run_dir=root / f"train-{task}-{algo}-E{envs}-{mode}-{r}")
            res = (run_distributed if mode == "distributed" else run_in_process)(cfg)
            runs[mode].append(res)
            log(f"  training {task} {algo} E={envs} {mode} rep {r}: {res['steps_per_s'] or 0:,.0f} samples/s, "
                f"{cpu_s_per_1k(res) or 0:.3f} CPU-s/1k samples (load {res['load_1m']:.1f})")
    ratios = [d["steps_per_s"] / i["steps_per_s"] for d, i in zip(runs["distributed"], runs["inprocess"])
              if d["steps_per_s"] and i["steps_per_s"]]
    med = lambda mode: statistics.median([r["steps_per_s"] for r in runs[mode] if r["steps_per_s"]] or [0.0])  # noqa: E731

    def cpu(mode: str) -> float | None:
        values = [c for c in map(cpu_s_per_1k, runs[mode]) if c]
        return statistics.median(values) if values else None

    out = {"task": task, "algo": algo, "envs": envs, "kappa": 1, "updates": updates, "repeats": repeats,
           "distributed_samples_per_s": med("distributed"), "inprocess_samples_per_s": med("inprocess"),
           "ratio": statistics.median(ratios) if ratios else None,
           "distributed_cpu_s_per_1k": cpu("distributed"), "inprocess_cpu_s_per_1k": cpu("inprocess"),
           "rss_mb_max": max((r["rss_mb_max"] or 0 for r in runs["distributed"]), default=None),
           "load_1m": [r["load_1m"] for m in runs.values() for r in m],
           "failed": [r["failed"] for r in runs["distributed"] if r["failed"]]}
    for mode in ("distributed", "inprocess"):  # a projection, not a measurement: labelled as such
        c = out[f"{mode}_cpu_s_per_1k"]
        out[f"{mode}_projected_samples_per_s"] = CORES * 1e3 / c if c else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default=",".join(TRAIN_TASKS))
    p.add_argument("--algo", default=ALGO)
    p.add_argument("--envs", default=str(ENVS), help="comma-separated E values")
    p.add_argument("--updates", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2, help="runs per mode, alternating the order")
    args = p.parse_args(argv)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    results = []
    with tempfile.TemporaryDirectory(prefix="khop-train-") as tmp:
        for task in args.tasks.split(","):
            for e in (int(v) for v in args.envs.split(",")):
                results.append(run_training(args.updates, args.repeats, Path(tmp), log, task, args.algo, e))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
