"""`khop`, the umbrella command: run, sweep, report, tasks, algos."""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from agentd.comm import CommConfig
from envserver.options import add_arguments, flags, from_namespace, names

from . import judge
from .cluster import slurm
from .containers import compose_file
from .run import keys, tensorboard
from .run.launcher import Launch
from .run.config import LaunchError, RunConfig, resume_config


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are the one line the user needs (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_run_arguments(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """`khop run`'s options, from RunConfig's declarations: its own, then the communication ones."""
    add_arguments(p, RunConfig, skip=(*names(CommConfig), *skip))
    add_arguments(p.add_argument_group("communication (README \"Communication layer and budgets\")"), CommConfig,
                  skip=skip)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="khop", description="Decentralized multi-agent RL: one process per agent, "
                                         "ZeroMQ links to graph neighbours only.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="train: spawn one envserver and N agentd processes, then write a report")
    add_run_arguments(r)
    r.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="continue the unfinished (killed, interrupted) run in DIR with the options in its "
                        "config.json: agents load their newest checkpoints, the envserver continues its step "
                        "counter; only --no-progress, --restart, --max-restarts, --tensorboard and --no-zygote may be "
                        "given with it")

    from . import sweep

    sweep.register(sub)

    rep = sub.add_parser("report", help="(re)write RUN_DIR/report from the run's files")
    rep.add_argument("run_dir", type=Path)
    sub.add_parser("tasks", help="list tasks")
    sub.add_parser("algos", help="list learners")
    compose_file.register(sub)
    slurm.register(sub)
    keys.register(sub)
    judge.register(sub)
    tensorboard.register(sub)
    return p


#: the only `khop run` options that may accompany --resume: everything else is the run's config.json
RESUME_OPTIONS = ("command", "resume", "progress", "restart", "max_restarts", "tensorboard", "zygote")


def resume_conflict(args: argparse.Namespace) -> str | None:
    """The first option given with --resume that the resumed run would ignore, as the user typed it."""
    defaults = vars(build_parser().parse_args(["run"]))
    for dest, value in vars(args).items():
        if dest not in RESUME_OPTIONS and value != defaults.get(dest):
            return flags(RunConfig).get(dest, "--" + dest.replace("_", "-"))
    return None


def cmd_run(args: argparse.Namespace) -> int:
    if args.resume is not None:
        conflict = resume_conflict(args)
        if conflict:
            raise LaunchError(f"--resume takes the run's options from {args.resume / 'config.json'}; drop {conflict}")
        launch = Launch(resume_config(args.resume, progress=args.progress, restart=args.restart,
                                      max_restarts=args.max_restarts, tensorboard=args.tensorboard,
                                      zygote=args.zygote), resume=True)
        return finish(launch)
    cfg = from_namespace(RunConfig, args)
    return finish(Launch(cfg))


def finish(launch: Launch) -> int:
    try:
        mirror = tensorboard.Mirror(launch.dir) if launch.cfg.tensorboard else contextlib.nullcontext()
    except ValueError as err:
        raise LaunchError(str(err)) from None
    with mirror:
        code = launch.run()
    summary = launch.dir / "report" / "summary.md"
    print(f"run directory: {launch.dir}\nreport: {summary}")
    if summary.exists():
        print(_headline(launch.dir))
    return code


def _headline(run_dir: Path) -> str:
    from .report import summarize

    s = summarize(run_dir)
    parts = [f"episodes {s.get('episodes', 0)}"]
    for key, label in (("first_quarter_return", "return first quarter"), ("last_quarter_return", "last quarter"),
                       ("last_quarter_cost", "cost last quarter")):
        if s.get(key) is not None:
            parts.append(f"{label} {s[key]:.3f}")
    if s.get("last_quarter_win_rate") is not None:
        parts.append(f"win rate last quarter {100 * s['last_quarter_win_rate']:.1f}%")
    return ", ".join(parts)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    if not (args.run_dir / "config.json").exists():
        print(f"khop report: error: {args.run_dir} is not a run directory (no config.json)", file=sys.stderr)
        return 2
    print(write_report(args.run_dir) / "summary.md")
    return 0


def cmd_tasks(_args: argparse.Namespace) -> int:
    from envserver.tasks import task_names, task_spec

    names = task_names()
    width = max(map(len, names))  # one column for every name, the longest included
    for name in names:
        s = task_spec(name)
        costs = ", ".join(f"{n} ≤ {lim:g}" for n, lim in zip(s.cost_names, s.cost_limits)) or "no cost"
        kinds = {a.act_kind for a in s.agents}
        acts = [a.n_actions if a.act_kind == "discrete" else a.act_dim for a in s.agents]  # choices / actuators
        masked = " masked" if any(a.action_mask for a in s.agents) else ""  # the STEP carries available actions
        sizes = f"obs {_dims([a.obs_dim for a in s.agents])} act {_dims(acts)}{masked}"
        print(f"{name:{width}s} {s.n_agents:2d} agents  {'/'.join(sorted(kinds)):10s} episode {s.episode_length:4d}  "
              f"{costs:22s} {sizes}  {s.description}")
    return 0


def _dims(sizes: list[int]) -> str:
    """Per-agent sizes, runs of equal ones as SIZE*COUNT: [36]*6 + [58] -> "36*6,58"."""
    out: list[list[int]] = []
    for n in sizes:
        if out and out[-1][0] == n:
            out[-1][1] += 1
        else:
            out.append([n, 1])
    return ",".join(str(n) if k == 1 else f"{n}*{k}" for n, k in out)


def cmd_algos(_args: argparse.Namespace) -> int:
    from agentd.learner import ALGOS

    for name, cls in sorted(ALGOS.items()):
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
        print(f"{name:12s} {doc[0] if doc else ''}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import sweep

    handlers = {"run": cmd_run, "report": cmd_report, "tasks": cmd_tasks, "algos": cmd_algos,
                "compose": compose_file.cmd_compose, "sweep": sweep.cmd_sweep, "keys": keys.cmd_keys,
                "slurm": slurm.cmd_slurm,
                "tensorboard": tensorboard.cmd_tensorboard, **{name: judge.dispatch for name in judge.HANDLERS}}
    try:
        return handlers[args.command](args)
    except LaunchError as err:
        print(f"khop {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
