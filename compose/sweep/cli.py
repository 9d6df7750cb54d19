"""`khop sweep`'s command line."""
from __future__ import annotations

import argparse
from pathlib import Path

from .report import write_sweep_report
from .runner import Sweep
from .spec import SweepSpec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a grid (κ × budget × algo × seed …), resumable, with a combined report")
    p.add_argument("--spec", type=Path, default=None, help="JSON or TOML file with the same keys as these options")
    p.add_argument("--out", type=Path, default=None, help="sweep directory (default sweeps/sweep)")
    lists = p.add_argument_group("axes (comma-separated lists)")
    for name, help_ in (("task", "tasks"), ("algo", "learners"), ("relay", "sync and/or async"),
                        ("kappa", "e.g. 0,1,2"), ("budget", "bytes per agent per env step, or none; e.g. none,2000,500"),
                        ("seeds", "e.g. 0,1,2"), ("steps", "env steps per run"), ("envs", "env copies per run")):
        lists.add_argument(f"--{name}", default=None, help=help_)
    lists.add_argument("--topology", action="append", default=None, help="repeatable; default: the task's graph")
    p.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                   help="learner hyperparameter for every cell, repeatable")
    for flag, kind in (("--link-delay-ms", float), ("--link-jitter-ms", float), ("--link-loss", float),
                       ("--link-bandwidth-bps", float), ("--round-timeout-ms", float), ("--budget-max-period", int),
                       ("--deadline", float), ("--checkpoint-every", int)):
        p.add_argument(flag, type=kind, default=None, help="as for `khop run`, for every cell")
    p.add_argument("--inprocess", action="store_true", default=None, help="run each cell with `khop run --inprocess`")
    p.add_argument("--jobs", type=int, default=None, help="cells running at once (default 1)")
    p.add_argument("--dry-run", action="store_true", help="print what would run and exit")
    p.add_argument("--report-only", action="store_true", help="rewrite OUT/report from the finished cells")


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    spec = SweepSpec.from_file(args.spec) if args.spec else SweepSpec()
    given = {k: getattr(args, k) for k in ("task", "algo", "relay", "kappa", "budget", "seeds", "steps", "envs",
                                           "topology", "overrides", "link_delay_ms", "link_jitter_ms", "link_loss",
                                           "link_bandwidth_bps", "round_timeout_ms", "budget_max_period", "deadline",
                                           "checkpoint_every", "inprocess", "jobs", "out")
             if getattr(args, k, None) is not None}
    return SweepSpec.from_mapping(given, spec)


def cmd_sweep(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    if args.report_only:
        print(write_sweep_report(spec.out, spec.cells() if (args.spec or args.kappa) else None) / "sweep.md")
        return 0
    return Sweep(spec).run(dry_run=args.dry_run)
