"""`khop sweep`'s command line: every `khop run` option under its own flag (the axes take
comma-separated lists), derived from the same declarations."""
from __future__ import annotations

import argparse
from pathlib import Path

from envserver.options import declared, flag_of

from ..run.config import RunConfig
from .report import write_sweep_report
from .runner import Sweep
from .spec import AXES, FIXED, SweepSpec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a grid (κ × budget × algo × seed …), resumable, with a combined report")
    p.add_argument("--spec", type=Path, default=None, help="JSON or TOML file with the same keys as these options")
    p.add_argument("--out", type=Path, default=None, help="sweep directory (default sweeps/sweep)")
    lists = p.add_argument_group("axes (comma-separated lists)")
    fixed = p.add_argument_group("`khop run` options, the same for every cell")
    for f, opt in declared(RunConfig):
        if f.name not in AXES and f.name not in FIXED:
            continue
        flag = flag_of(f, opt)
        flags = [flag, "--seeds"] if f.name == "seed" else [flag]
        if f.name == "comm_budget":
            flags.append("--budget")  # the sweep's older name for it
        group = lists if f.name in AXES else fixed
        if f.name == "topology":  # file names may hold commas: repeat the flag instead
            group.add_argument(flag, dest=f.name, action="append", default=None, help="repeatable; " + opt.help)
        elif opt.repeat:
            group.add_argument(flag, dest=f.name, action="append", default=None, metavar=opt.metavar, help=opt.help)
        elif isinstance(f.default, bool):
            group.add_argument(flag, dest=f.name, action="store_const", const=not opt.negate, default=None,
                               help=opt.help)
        else:
            group.add_argument(*flags, dest=f.name, default=None, metavar=opt.metavar, help=opt.help)
    p.add_argument("--jobs", type=int, default=None, help="cells running at once (default 1)")
    p.add_argument("--dry-run", action="store_true", help="print what would run and exit")
    p.add_argument("--report-only", action="store_true", help="rewrite OUT/report from the finished cells")


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    spec = SweepSpec.from_file(args.spec) if args.spec else SweepSpec()
    given = {k: getattr(args, k) for k in (*AXES, *FIXED, "jobs", "out") if getattr(args, k, None) is not None}
    return SweepSpec.from_mapping(given, spec)


def cmd_sweep(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    if args.report_only:
        print(write_sweep_report(spec.out, spec.cells() if (args.spec or args.kappa) else None) / "sweep.md")
        return 0
    return Sweep(spec).run(dry_run=args.dry_run)
