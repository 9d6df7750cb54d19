"""The floor in the benchmark (issue 16 item 1): khop's acting rate against the lean loop
(bench/lean_loop.py) — the same lockstep with bare pyzmq — measured alternately in one run.

For each cell (N, κ, E) the variants take turns, round after round:

* ``lean-msgs``    — the lean loop's messages only (STEP, κ relay rounds, ACT; no physics, no network);
* ``lean-compute`` — the same messages plus the same compute: E MuJoCo copies of the task's robot
  and the DPO acting network at batch E in every agent;
* ``lean-learner`` — the same with every agent acting through khop's real learner (act + observe:
  normalisers, rollout buffer) instead of the bare network — khop's own acting compute, bare frames;
* ``lean-parts``   — the same again with every message built and validated by khop's own protocol
  codec (the lean loop's ``parts`` level): what khop's validation costs without its orchestration;
* ``khop``         — a real distributed ``khop run`` acting only (bench/grid.py's cell: dpo, the
  rollout longer than the run, so no update), timed by bench/measure.py from all agents ready;
* ``khop-inprocess`` — the same run in khop's in-process reference mode (every learner in one
  process, no sockets), the other side of a distributed/in-process ratio.

Both sides run on a ring (``--topology ring`` for khop), so the messages per lockstep are the
same. The order rotates each round (A B C …, B C … A, …), so neither load drift on the shared
machine nor going first favours a variant. Reported: env steps/s (locksteps × E) per variant, the
median over rounds, and the ratios of :data:`RATIOS` whose two variants ran, each the median of
the per-round ratios (one round's runs share a few seconds of load). Read as a decomposition:
lean-learner / lean-compute is the learner's bookkeeping, lean-parts / lean-learner the protocol's,
khop / lean-parts khop's orchestration; lean-learner / khop-inprocess is the most a distributed run
of khop's own compute could reach against the in-process reference on this machine.

    python -m bench.floor --quick                       # N = 6, κ = 1, E = 8, two rounds
    python -m bench.floor [--n 2 6 12] [--kappa 0 1 2] [--envs 1 8 32] [--rounds R] [--seconds S]
                          [--variants lean-compute khop ...]

Tasks: the halfcheetah family of bench/grid.py — safe-halfcheetah-2x3 (N = 2, one cheetah),
safe-halfcheetah-6x1 (N = 6, one cheetah), safe-coupled-halfcheetah-12x1 (N = 12: no task has
twelve agents on one cheetah; this one has two cheetahs per env copy, which the lean loop steps too).
The JSON (``--out``) and its markdown table (same name, ``.md``) are rewritten after every cell.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from compose.run.config import RunConfig, code_version

from .grid import TASKS, cell_config
from .lean_loop import run_lean
from .measure import load_average, run_distributed, run_in_process
from .tables import render_floor

VARIANTS = ("lean-msgs", "lean-compute", "lean-learner", "lean-parts", "khop", "khop-inprocess")
LEVEL = {"lean-msgs": "msgs", "lean-compute": "compute", "lean-learner": "learner", "lean-parts": "parts"}
#: name -> (numerator, denominator); a ratio is reported when both variants ran
RATIOS = {"khop/lean-compute": ("khop", "lean-compute"), "khop/khop-inprocess": ("khop", "khop-inprocess"),
          "lean-learner/khop-inprocess": ("lean-learner", "khop-inprocess"),
          "lean-compute/khop-inprocess": ("lean-compute", "khop-inprocess"),
          "khop/lean-msgs": ("khop", "lean-msgs"), "lean-learner/lean-compute": ("lean-learner", "lean-compute"),
          "lean-parts/lean-learner": ("lean-parts", "lean-learner"), "khop/lean-parts": ("khop", "lean-parts"),
          "lean-parts/lean-compute": ("lean-parts", "lean-compute")}
FAMILY = TASKS["halfcheetah"]
RESULTS = Path(__file__).resolve().parent / "results"


def khop_config(task: str, kappa: int, envs: int, seconds: float, run_dir: Path) -> RunConfig:
    """bench/grid.py's acting-only cell on the lean loop's ring, its cap long enough for ``seconds``."""
    cfg = cell_config(task, kappa, envs, run_dir, seconds)
    return dataclasses.replace(cfg, topology="ring")


def measure(variant: str, task: str, kappa: int, envs: int, seconds: float, run_dir: Path) -> dict[str, Any]:
    """One run of one variant: its env steps/s, CPU per env step and load."""
    try:
        if variant in ("khop", "khop-inprocess"):
            run = run_distributed if variant == "khop" else run_in_process
            res = run(khop_config(task, kappa, envs, seconds, run_dir), seconds=seconds)
        else:
            res = run_lean(task, kappa, envs, seconds, LEVEL[variant])
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as err:  # recorded; the other cells run
        return {"steps_per_s": None, "cpu_us_per_step": None, "window_s": 0.0, "load_1m": load_average(),
                "failed": {variant: str(err)[-300:]}}
    return {k: res[k] for k in ("steps_per_s", "cpu_us_per_step", "window_s", "load_1m")} | {
        "failed": res.get("failed", {})}


def median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def measure_cell(n: int, kappa: int, envs: int, seconds: float, rounds: int, root: Path,
                 log: Callable[[str], None] = print, variants: tuple[str, ...] = VARIANTS) -> dict[str, Any]:
    task = FAMILY[n]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    pairs = {name: ab for name, ab in RATIOS.items() if set(ab) <= set(variants)}
    ratios: dict[str, list[float]] = {name: [] for name in pairs}
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        got = {v: measure(v, task, kappa, envs, seconds, root / f"{task}-k{kappa}-E{envs}-{v}-{r}") for v in order}
        for v, res in got.items():
            runs[v].append(res)
        for name, (a, b) in pairs.items():
            if got[a]["steps_per_s"] and got[b]["steps_per_s"]:
                ratios[name].append(got[a]["steps_per_s"] / got[b]["steps_per_s"])
        log(f"  N={n} κ={kappa} E={envs} round {r}: " + ", ".join(
            f"{v} {got[v]['steps_per_s'] or 0:,.0f}/s" for v in variants) + f" (load {got[order[0]]['load_1m']:.1f})")
    row: dict[str, Any] = {"task": task, "n_agents": n, "kappa": kappa, "envs": envs, "rounds": rounds,
                           "topology": "ring", "variants": list(variants)}
    for v in variants:
        row[v] = {"steps_per_s": median([x["steps_per_s"] for x in runs[v]]),
                  "cpu_us_per_step": median([x["cpu_us_per_step"] for x in runs[v]]),
                  "per_round": [x["steps_per_s"] for x in runs[v]], "window_s": [x["window_s"] for x in runs[v]]}
    row["ratios"] = {name: {"median": median(vals), "per_round": vals} for name, vals in ratios.items()}
    row["load_1m"] = [x["load_1m"] for v in variants for x in runs[v]]
    row["failed"] = [x["failed"] for v in variants for x in runs[v] if x["failed"]]
    return row


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="N = 6, κ = 1, E = 8, two rounds of 3 s")
    p.add_argument("--n", type=int, nargs="+", default=None, help=f"agents: {' '.join(map(str, FAMILY))}")
    p.add_argument("--kappa", type=int, nargs="+", default=None, help="relay depths (default 0 1 2)")
    p.add_argument("--envs", type=int, nargs="+", default=None, help="env copies E (default 1 8 32)")
    p.add_argument("--rounds", type=int, default=None, help="rounds of the variants per cell (default 3)")
    p.add_argument("--seconds", type=float, default=None, help="timed stepping per run (default 3)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                   help="which variants take turns (default all)")
    p.add_argument("--out", type=Path, default=RESULTS / "floor.json", help="JSON; the table goes next to it (.md)")
    args = p.parse_args(argv)
    q = args.quick
    args.n = args.n or ([6] if q else list(FAMILY))
    args.kappa = args.kappa if args.kappa is not None else ([1] if q else [0, 1, 2])
    args.envs = args.envs or ([8] if q else [1, 8, 32])
    args.rounds = args.rounds or (2 if q else 3)
    args.seconds = args.seconds or 3.0
    bad = ([f"--n {n}: choose from {' '.join(map(str, FAMILY))}" for n in args.n if n not in FAMILY]
           + [f"--kappa {k}: must be >= 0" for k in args.kappa if k < 0]
           + [f"--envs {e}: must be >= 1" for e in args.envs if e < 1]
           + ([f"--rounds {args.rounds}: must be >= 1"] if args.rounds < 1 else [])
           + ([f"--seconds {args.seconds}: must be > 0"] if args.seconds <= 0 else []))
    if bad:
        p.error(bad[0])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.time()
    out: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
                           "code_version": code_version(), "cpus": os.cpu_count(), "quick": args.quick,
                           "seconds_per_run": args.seconds, "load_1m_start": os.getloadavg()[0], "cells": []}
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> str:
        """Rewritten after every cell, so an interrupted run keeps what it measured."""
        out["load_1m_end"], out["seconds"] = os.getloadavg()[0], time.time() - started
        text = render_floor(out)
        args.out.write_text(json.dumps(out, indent=1))
        args.out.with_suffix(".md").write_text(text)
        return text

    with tempfile.TemporaryDirectory(prefix="khop-floor-") as tmp:
        for n in args.n:
            for kappa in args.kappa:
                for e in args.envs:
                    out["cells"].append(measure_cell(n, kappa, e, args.seconds, args.rounds, Path(tmp), log,
                                                     tuple(dict.fromkeys(args.variants))))
                    save()
    print(save())
    log(f"wrote {args.out} and {args.out.with_suffix('.md')} ({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
