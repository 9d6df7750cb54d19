"""Section (c): scaling in the number of agents on a ring — env steps/s while training and the
memory of every agent process (VmRSS / VmHWM from /proc, the largest over the run).

Task: the networked MDP (tabular, tiny observations), so what grows with N is the messaging and
the per-process cost, not the physics: `networked-mdp` on `--topology ring` for 8 agents and
`networked-mdp-ring16/32/64/128/256` above. One update happens half-way, so the peak memory includes a
learner update. Agents start as `khop run` starts them by default, forked from the zygote; a size that
does not fit in the memory available now is skipped with the reason recorded rather than risking the
shared machine.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from compose.run.config import RunConfig

from .measure import run_distributed

ENVS, ROLLOUT = 16, 128
#: what to keep free per agent before starting a run: spawned, 300 MB (RSS 266 MB at the update peak,
#: README Performance (c)); forked, 3× the PSS per agent of the first forked ring of 64 (19 MB,
#: bench/NOTES.md §9), which also covers the zygote's own ~280 MB
MB_PER_AGENT = {"zygote": 60, "spawn": 300}


def task_for(n: int) -> tuple[str, str]:
    return ("networked-mdp", "ring") if n == 8 else (f"networked-mdp-ring{n}", "")


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def too_big(n: int, mode: str) -> str | None:
    """Why ``n`` agents started this way would not fit in the memory available now, or None."""
    free = mem_available_mb()
    if free < n * MB_PER_AGENT[mode]:
        return f"{free:,.0f} MB available < {n} × {MB_PER_AGENT[mode]} MB"
    return None


def run_scaling(sizes: list[int], root: Path, log: Callable[[str], None] = print) -> Iterator[dict[str, Any]]:
    """One row per ring size, yielded as soon as it is measured."""
    for n in sizes:
        task, topology = task_for(n)
        skipped = too_big(n, "zygote")  # the default start: forked from the zygote
        if skipped:
            log(f"  scaling N={n}: skipped ({skipped})")
            yield {"n_agents": n, "task": task, "skipped": skipped}
            continue
        cfg = RunConfig(task=task, topology=topology, algo="dpo", kappa=1, envs=ENVS, steps=ENVS * 2 * ROLLOUT,
                        run_dir=root / f"scale-{n}", overrides=[f"rollout_len={ROLLOUT}"])
        res = run_distributed(cfg)
        row = {"n_agents": n, "task": task, "topology": "ring", "kappa": 1, "envs": ENVS,
                     "steps_per_s": res["steps_per_s"], "cpu_us_per_step": res["cpu_us_per_step"],
                     "startup_s": res["startup_s"], "rss_mb_max": res["rss_mb_max"],
                     "rss_mb_mean": res["rss_mb_mean"], "hwm_mb_max": res["hwm_mb_max"],
                     "pss_mb_max": res["pss_mb_max"], "uss_mb_max": res["uss_mb_max"], "load_1m": res["load_1m"],
                     "failed": res["failed"]}
        log(f"  scaling N={n}: {res['steps_per_s'] or 0:,.0f} steps/s, RSS ≤ {res['rss_mb_max'] or 0:.0f} MB "
            f"(HWM {res['hwm_mb_max'] or 0:.0f}), start-up {res['startup_s'] or 0:.0f} s (load {res['load_1m']:.1f})")
        yield row
