"""Section (a): env steps/s of the distributed run against the in-process reference, per task
family, agent count N, relay depth κ and env copies E, measured A B A B in one time window.

Acting only: the rollout is made longer than the run (no update inside the window), so the
number is the cost of stepping, relaying and acting — what decentralization adds. Section (b)
measures training with updates. A cell's ratio is the median over repeats of the ratio of each
adjacent A/B pair, so slow drift of the shared machine's speed cancels.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable, Iterator

from compose.run.config import RunConfig
from envserver.tasks import task_spec

from .measure import MAX_LOCKSTEPS_PER_S, run_distributed, run_in_process

# The tasks with 2 / 6 / 12 agents in each family (`khop tasks`). No many-segment ant has 12
# agents; its largest partition, 8x1, stands in for N = 12.
TASKS: dict[str, dict[int, str]] = {
    "halfcheetah": {2: "safe-halfcheetah-2x3", 6: "safe-halfcheetah-6x1", 12: "safe-coupled-halfcheetah-12x1"},
    "manyagent-ant": {2: "safe-manyagent-ant-2x3", 6: "safe-manyagent-ant-6x1", 12: "safe-manyagent-ant-8x1"},
}


def cell_config(task: str, kappa: int, envs: int, run_dir: Path, seconds: float | None = None) -> RunConfig:
    """Lockstep cap = rollout length: the run ends (or is stopped by time) before any update. A caller
    that times by ``seconds`` gets a cap that cannot run out first (it did at 1,800 locksteps/s: a
    cell with no rate, bench/NOTES.md §19)."""
    rollout = max(200, 4000 // envs, int(seconds * MAX_LOCKSTEPS_PER_S) + 200 if seconds else 0)
    return RunConfig(task=task, algo="dpo", kappa=kappa, envs=envs, steps=envs * rollout, run_dir=run_dir,
                     overrides=[f"rollout_len={rollout}"])


def measure_cell(task: str, kappa: int, envs: int, seconds: float, repeats: int, root: Path,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """A B A B … (B A on odd repeats, so neither side always runs first)."""
    pairs = []
    for r in range(repeats):
        pair = {}
        order = ("distributed", "inprocess") if r % 2 == 0 else ("inprocess", "distributed")
        for mode in order:
            cfg = cell_config(task, kappa, envs, root / f"{task}-k{kappa}-E{envs}-{mode}-{r}", seconds)
            pair[mode] = (run_distributed if mode == "distributed" else run_in_process)(cfg, seconds=seconds)
        pairs.append(pair)
        d, i = pair["distributed"], pair["inprocess"]
        log(f"  {task} κ={kappa} E={envs} rep {r}: distributed {d['steps_per_s'] or 0:,.0f}/s, in-process "
            f"{i['steps_per_s'] or 0:,.0f}/s (load {d['load_1m']:.1f})")
    ratios = [p["distributed"]["steps_per_s"] / p["inprocess"]["steps_per_s"] for p in pairs
              if p["distributed"]["steps_per_s"] and p["inprocess"]["steps_per_s"]]
    med = lambda key, mode: statistics.median(  # noqa: E731
        [p[mode][key] for p in pairs if p[mode].get(key) is not None] or [float("nan")])
    return {"task": task, "kappa": kappa, "envs": envs, "repeats": repeats,
            "distributed_steps_per_s": med("steps_per_s", "distributed"),
            "inprocess_steps_per_s": med("steps_per_s", "inprocess"),
            "ratio": statistics.median(ratios) if ratios else None, "ratios": ratios,
            "distributed_cpu_us_per_step": med("cpu_us_per_step", "distributed"),
            "inprocess_cpu_us_per_step": med("cpu_us_per_step", "inprocess"),
            "load_1m": [p[m]["load_1m"] for p in pairs for m in ("distributed", "inprocess")],
            "failed": [p["distributed"]["failed"] for p in pairs if p["distributed"]["failed"]]}


def run_grid(families: list[str], agents: list[int], kappas: list[int], envs: list[int], seconds: float,
             repeats: int, root: Path, log: Callable[[str], None] = print) -> Iterator[dict[str, Any]]:
    """One row per cell, yielded as soon as it is measured."""
    for family in families:
        for n in agents:
            for kappa in kappas:
                for e in envs:
                    row = measure_cell(TASKS[family][n], kappa, e, seconds, repeats, root, log)
                    yield {"family": family, "n_agents": task_spec(row["task"]).n_agents, **row}
