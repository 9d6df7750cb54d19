"""The benchmark suite of issue 8: prints one table per section and writes the numbers to
bench/results/ (``suite-<time>.json`` with every measurement, ``suite-<time>.md`` and
``latest.md`` with the tables).

    python -m bench.suite            # full grid: ~25 min at load ≈ 1 (estimate), far longer when loaded
    python -m bench.suite --quick    # the goal cells only, ~3 min (194 s at load 7)
    python -m bench.suite --sections a,d --families halfcheetah --agents 6 --kappas 1 --envs 8,32

Sections: (a) distributed vs in-process env steps/s (bench/grid.py), (b) training samples/s
with updates on the two velocity halfcheetahs (bench/training.py), (c) scaling on a ring up to 256 agents with RSS per agent
process (bench/scaling.py), (d) wire bytes against the payload floor on safe-halfcheetah-6x1 for
the κ ≥ 1 and E of (a) (bench/wire.py). Every run
is a real `khop run` (compose/run/launcher.py); the 1-minute load average is recorded with each.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from compose.run.config import code_version

from .grid import TASKS, run_grid
from .scaling import run_scaling
from .tables import GOALS, render
from .training import TRAIN_TASKS, run_training
from .wire import run_wire

RESULTS = Path(__file__).resolve().parent / "results"


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the goal cells only (N=6, κ=1, E=8; ring of 8)")
    p.add_argument("--sections", default="a,b,c,d")
    p.add_argument("--families", default=None, help=f"for (a): {','.join(TASKS)}")
    p.add_argument("--agents", default=None, help="N for (a): 2,6,12")
    p.add_argument("--kappas", default=None, help="κ for (a): 0,1,2")
    p.add_argument("--envs", default=None, help="E for (a): 1,8,32")
    p.add_argument("--seconds", type=float, default=None, help="steady stepping timed per (a) run")
    p.add_argument("--repeats", type=int, default=None, help="A/B pairs per (a) cell and for (b)")
    p.add_argument("--ring", default=None, help="N for (c): 8,16,32,64,128,256")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    q = args.quick
    args.agents = ints(args.agents or ("6" if q else "2,6,12"))
    args.kappas = ints(args.kappas or ("1" if q else "0,1,2"))
    args.envs = ints(args.envs or ("8" if q else "1,8,32"))
    args.seconds = args.seconds or (2.0 if q else 1.5)
    args.repeats = args.repeats or (2 if q else 1)
    args.ring = ints(args.ring or ("8" if q else "8,16,32,64,128,256"))
    args.families = [f for f in (args.families or ("halfcheetah" if q else ",".join(TASKS))).split(",") if f]
    unknown = [f for f in args.families if f not in TASKS]
    if unknown:
        p.error(f"unknown family {unknown[0]!r}; choose from {', '.join(TASKS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sections = set(args.sections.split(","))
    started = time.time()
    out: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
                           "code_version": code_version(), "cpus": os.cpu_count(), "quick": args.quick,
                           "load_1m_start": os.getloadavg()[0], "goals": GOALS}
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started)) + ("-quick" if args.quick else "")

    def save() -> str:
        """Rewritten after every section, so an interrupted suite keeps what it measured."""
        out["load_1m_end"] = os.getloadavg()[0]
        out["seconds"] = time.time() - started
        text = render(out)
        (args.out / f"suite-{stamp}.json").write_text(json.dumps(out, indent=1))
        (args.out / f"suite-{stamp}.md").write_text(text)
        (args.out / "latest.md").write_text(text)
        return text

    with tempfile.TemporaryDirectory(prefix="khop-bench-") as tmp:
        root = Path(tmp)
        if "a" in sections:
            log("(a) distributed vs in-process, acting only")
            out["a"] = []
            for row in run_grid(args.families, args.agents, args.kappas, args.envs, args.seconds, args.repeats,
                                root, log):
                out["a"].append(row)
                save()
        if "b" in sections:
            log("(b) training with updates")
            out["b"] = []
            for task in TRAIN_TASKS:
                out["b"].append(run_training(2 if args.quick else 4, 1 if args.quick else 2, root, log, task))  # quick: one A B pair
                save()
        if "d" in sections:  # before (c): its largest ring is the longest run of the suite
            log("(d) wire bytes against the payload floor")
            out["d"] = []
            cells = [("safe-halfcheetah-6x1", k, e) for k in args.kappas if k >= 1 for e in args.envs]
            for row in run_wire(cells, root, log):
                out["d"].append(row)
                save()
        if "c" in sections:
            log("(c) scaling on a ring")
            out["c"] = []
            for row in run_scaling(args.ring, root, log):
                out["c"].append(row)
                save()
    print(save())
    log(f"wrote {args.out / f'suite-{stamp}.json'} and .md ({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
