"""Memory and start-up of N agent processes on a ring, agents forked from the zygote against agents
spawned as fresh interpreters (the default) — issue 16 item 4.

    python -m bench.memory                           # N = 8, 64, 256; zygote and spawn
    python -m bench.memory --sizes 8,64 --modes spawn

Per run: **start-up** = launch → every agent's ``learner_config.json`` (the last thing an agent
writes before its first step, compose/run/children.py), the zygote's preloading included; then,
once every agent has finished its first update (a row in its metrics.jsonl), **PSS and USS** of
every agent process from /proc/PID/smaps_rollup. USS (private clean + dirty) is what one more
agent costs the machine; PSS also charges each agent its share of the pages it shares, so the sum
of the agents' and the zygote's PSS is what the whole swarm costs. The run is then stopped.

Task: the networked MDP on a ring (bench/scaling.py task_for: `networked-mdp --topology ring` for 8,
`networked-mdp-ringN` above), dpo, κ = 1, E = 16, rollouts of 32 steps, so the first update comes
after 32 locksteps. A run that would not fit in the memory available now is skipped, with the
reason recorded, rather than risk the shared machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from compose.run.config import RunConfig, code_version
from compose.run.launcher import Launch

from .measure import load_average, proc_cpu_s, proc_private_mb
from .scaling import MB_PER_AGENT, mem_available_mb, task_for, too_big

ENVS, ROLLOUT = 16, 32
RESULTS = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass
class Watch:
    """Polls the run directory: when start-up is over, when every agent has updated once; then
    reads every agent's memory and stops the run (the launcher's Ctrl-C path)."""
    launch: Launch
    started: float
    ready_at: float | None = None
    startup_cpu_s: float | None = None  # CPU of the agents, the envserver and the zygote until ready_at
    updated_at: float | None = None
    memory: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)  # name -> (PSS, USS) MiB
    zygote: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.agents = [f"agent-{i}" for i in range(self.launch.spec.n_agents)]

    def _all(self, filename: str) -> bool:
        """Every agent has written ``filename`` (not empty)."""
        for name in self.agents:
            try:
                if (self.launch.dir / name / filename).stat().st_size == 0:
                    return False
            except OSError:
                return False
        return True

    def _loop(self) -> None:
        while not self.done.is_set() and not self.launch.interrupted:
            if self.ready_at is None and self._all("learner_config.json"):
                self.ready_at = time.time()
                pids = [p.pid for p in list(self.launch.procs.values())]
                if self.launch.zygote is not None:
                    pids.append(self.launch.zygote.proc.pid)
                self.startup_cpu_s = sum(proc_cpu_s(pid) or 0.0 for pid in pids)
            if self.ready_at is not None and self._all("metrics.jsonl"):
                self.updated_at = time.time()
                for name in self.agents:
                    mem = proc_private_mb(self.launch.procs[name].pid)
                    if mem is not None:
                        self.memory[name] = mem
                if self.launch.zygote is not None:
                    self.zygote = proc_private_mb(self.launch.zygote.proc.pid)
                self.launch.interrupted = True
                return
            time.sleep(0.2)


def measure(n: int, mode: str, root: Path) -> dict[str, Any]:
    """One run of ``n`` agents, forked (``mode`` "zygote") or spawned ("spawn")."""
    task, topology = task_for(n)
    cfg = RunConfig(task=task, topology=topology, algo="dpo", kappa=1, envs=ENVS, steps=10**9, progress=False,
                    run_dir=root / f"memory-{mode}-{n}", overrides=[f"rollout_len={ROLLOUT}"], zygote=mode == "zygote")
    launch = Launch(cfg)
    launch.prepare()
    available = mem_available_mb()
    load = load_average()
    watch = Watch(launch, time.time())
    try:
        launch.start()
        watch.thread.start()
        launch.watch()
    finally:
        watch.done.set()
        if watch.thread.is_alive():
            watch.thread.join()
        launch.stop()
        launch.supervisor.close()
    events = [json.loads(line) for line in (launch.dir / "events.jsonl").read_text().splitlines()]
    pss = [m[0] for m in watch.memory.values()]
    uss = [m[1] for m in watch.memory.values()]
    mean = lambda v: sum(v) / len(v) if v else None  # noqa: E731
    return {"n_agents": n, "mode": mode, "task": task, "envs": ENVS, "rollout_len": ROLLOUT,
            "startup_s": watch.ready_at - watch.started if watch.ready_at else None,
            "startup_cpu_s": watch.startup_cpu_s,
            "first_update_s": watch.updated_at - watch.started if watch.updated_at else None,
            "measured_agents": len(watch.memory),
            "uss_mb_mean": mean(uss), "uss_mb_max": max(uss, default=None),
            "pss_mb_mean": mean(pss), "pss_mb_max": max(pss, default=None),
            "zygote_pss_mb": watch.zygote[0] if watch.zygote else None,
            "zygote_uss_mb": watch.zygote[1] if watch.zygote else None,
            "total_pss_gb": (sum(pss) + (watch.zygote[0] if watch.zygote else 0)) / 1024 if pss else None,
            "forked": any(e["event"] == "zygote_ready" for e in events),
            "preload_s": next((e["preload_s"] for e in events if e["event"] == "zygote_ready"), None),
            "fallback": next((e["reason"] for e in events if e["event"] == "zygote_unavailable"), None),
            "mem_available_mb_before": available, "load_1m": load, "load_1m_end": load_average()}


def run_memory(sizes: list[int], modes: list[str], root: Path,
               log: Callable[[str], None] = print) -> Iterator[dict[str, Any]]:
    """One row per (N, mode), yielded as soon as it is measured."""
    for n in sizes:
        for mode in modes:
            skipped = too_big(n, mode)
            if skipped:
                log(f"  N={n} {mode}: skipped ({skipped})")
                yield {"n_agents": n, "mode": mode, "skipped": skipped}
                continue
            row = measure(n, mode, root)
            log(f"  N={n} {mode}: start-up {row['startup_s'] or 0:.1f} s ({row['startup_cpu_s'] or 0:.1f} CPU-s), "
                f"USS {row['uss_mb_mean'] or 0:.1f} MB (max {row['uss_mb_max'] or 0:.1f}), "
                f"PSS {row['pss_mb_mean'] or 0:.1f} MB, total {row['total_pss_gb'] or 0:.2f} GB "
                f"(load {row['load_1m']:.1f}→{row['load_1m_end']:.1f})")
            yield row


def table(rows: list[dict[str, Any]]) -> str:
    def f(v: Any, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)
    out = ["| N | agents | start-up (CPU-s) | USS per agent, mean (max) | PSS per agent | zygote PSS "
           "| all agents + zygote PSS | load 1 min (start → end) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            out.append(f"| {r['n_agents']} | {r['mode']} | skipped: {r['skipped']} | | | | | |")
            continue
        out.append(f"| {r['n_agents']} | {'forked' if r['forked'] else 'spawned'} | {f(r['startup_s'], '.1f')} s "
                   f"({f(r['startup_cpu_s'], '.0f')}) | {f(r['uss_mb_mean'], '.1f')} ({f(r['uss_mb_max'], '.1f')}) "
                   f"MB | {f(r['pss_mb_mean'], '.1f')} MB | {f(r['zygote_pss_mb'], '.0f')} MB | "
                   f"{f(r['total_pss_gb'], '.2f')} GB | {r['load_1m']:.1f} → {r['load_1m_end']:.1f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="8,64,256", help="ring sizes N (8, 16, 32, 64, 128, 256)")
    p.add_argument("--modes", default="zygote,spawn", help="zygote (forked agents, the default), spawn (--no-zygote)")
    p.add_argument("--root", type=Path, default=None, help="where the runs go (default: a temporary directory)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    modes = args.modes.split(",")
    if set(modes) - set(MB_PER_AGENT):
        p.error(f"--modes: choose from {', '.join(MB_PER_AGENT)}")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = {"started": stamp, "code_version": code_version(), "cpus": os.cpu_count(), "rows": []}
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="khop-memory-") as tmp:
        root = args.root or Path(tmp)
        for row in run_memory([int(n) for n in args.sizes.split(",")], modes, root,
                              lambda line: print(line, file=sys.stderr, flush=True)):
            out["rows"].append(row)
            (args.out / f"memory-{stamp}.json").write_text(json.dumps(out, indent=1))
            (args.out / f"memory-{stamp}.md").write_text(table(out["rows"]) + "\n")
    print(table(out["rows"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
