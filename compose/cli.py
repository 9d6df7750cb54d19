"""`khop`, the umbrella command: run, sweep, report, tasks, algos."""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from . import compose_file, judge, keys, tensorboard
from agentd.main import add_comm_arguments

from .launcher import Launch, LaunchError, RunConfig, resume_config

DEFAULTS = RunConfig()


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are the one line the user needs (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="khop", description="Decentralized multi-agent RL: one process per agent, "
                                         "ZeroMQ links to graph neighbours only.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="train: spawn one envserver and N agentd processes, then write a report")
    r.add_argument("--task", default=DEFAULTS.task, help=f"task name (default {DEFAULTS.task}; see `khop tasks`)")
    r.add_argument("--algo", default=DEFAULTS.algo, help=f"learner (default {DEFAULTS.algo}; see `khop algos`)")
    r.add_argument("--topology", default="", help="generator (ring, line, star, complete, grid[:RxC]), a shipped "
                                                  "graph name, or a node-link JSON/GraphML file; default: the task's graph")
    r.add_argument("--kappa", type=int, default=DEFAULTS.kappa,
                   help="hops of state each critic sees (default: the graph's diameter for the centralised "
                        "references mappo-l, happo, macpo; 1 otherwise)")
    r.add_argument("--steps", type=int, default=DEFAULTS.steps, help="env steps, summed over env copies")
    r.add_argument("--envs", type=int, default=DEFAULTS.envs, help="env copies stepped in lockstep")
    r.add_argument("--seed", type=int, default=DEFAULTS.seed)
    r.add_argument("--run-dir", type=Path, default=None, help="default: runs/<task>-<algo>-k<κ>-s<seed>-<time>")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="learner hyperparameter, repeatable (e.g. --set rollout_len=64)")
    r.add_argument("--deadline", type=float, default=DEFAULTS.deadline_s, help="seconds the envserver waits for an ACT")
    r.add_argument("--checkpoint-every", type=int, default=DEFAULTS.checkpoint_every, help="updates between checkpoints")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--inprocess", action="store_true",
                   help="run every agent in this one process with no sockets (reference mode)")
    r.add_argument("--restart", action="store_true",
                   help="restart any agent or envserver process that dies (exponential backoff); agents "
                        "resume from their newest checkpoint, the envserver from its step counter")
    r.add_argument("--max-restarts", type=int, default=DEFAULTS.max_restarts, metavar="N",
                   help=f"restarts per process with --restart (default {DEFAULTS.max_restarts})")
    r.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="continue the unfinished (killed, interrupted) run in DIR with the options in its "
                        "config.json: agents load their newest checkpoints, the envserver continues its step "
                        "counter; only --no-progress, --restart and --max-restarts may be given with it")
    add_comm_arguments(r, DEFAULTS)
    r.add_argument("--tensorboard", action="store_true",
                   help="live TensorBoard event files in RUN_DIR/tensorboard (one per agent, one for the envserver)")
    r.add_argument("--curve", type=Path, default=None, metavar="DIR",
                   help="CurveZMQ on every socket with the keys in DIR (`khop keys`); only listed keys connect")

    from . import sweep

    sweep.register(sub)

    rep = sub.add_parser("report", help="(re)write RUN_DIR/report from the run's files")
    rep.add_argument("run_dir", type=Path)
    sub.add_parser("tasks", help="list tasks")
    sub.add_parser("algos", help="list learners")
    compose_file.register(sub)
    keys.register(sub)
    judge.register(sub)
    tensorboard.register(sub)
    return p


#: the only `khop run` options that may accompany --resume: everything else is the run's config.json
RESUME_OPTIONS = ("command", "resume", "no_progress", "restart", "max_restarts", "tensorboard")


def resume_conflict(args: argparse.Namespace) -> str | None:
    """The first option given with --resume that the resumed run would ignore, as the user typed it."""
    defaults = vars(build_parser().parse_args(["run"]))
    for dest, value in vars(args).items():
        if dest not in RESUME_OPTIONS and value != defaults.get(dest):
            return "--set" if dest == "overrides" else "--" + dest.replace("_", "-")
    return None


def cmd_run(args: argparse.Namespace) -> int:
    if args.resume is not None:
        conflict = resume_conflict(args)
        if conflict:
            raise LaunchError(f"--resume takes the run's options from {args.resume / 'config.json'}; drop {conflict}")
        launch = Launch(resume_config(args.resume, progress=not args.no_progress, restart=args.restart,
                                      max_restarts=args.max_restarts), resume=True)
        return _finish(launch, args.tensorboard)
    cfg = RunConfig(task=args.task, algo=args.algo, topology=args.topology, kappa=args.kappa, steps=args.steps,
                    envs=args.envs, seed=args.seed, run_dir=args.run_dir, overrides=args.overrides,
                    deadline_s=args.deadline, checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
                    inprocess=args.inprocess, restart=args.restart, max_restarts=args.max_restarts,
                    curve=args.curve, **comm_options(args))
    return _finish(Launch(cfg), args.tensorboard)


def _finish(launch: Launch, with_tensorboard: bool = False) -> int:
    try:
        mirror = tensorboard.Mirror(launch.dir) if with_tensorboard else contextlib.nullcontext()
    except ValueError as err:
        raise LaunchError(str(err)) from None
    with mirror:
        code = launch.run()
    summary = launch.dir / "report" / "summary.md"
    print(f"run directory: {launch.dir}\nreport: {summary}")
    if summary.exists():
        print(_headline(launch.dir))
    return code


def comm_options(args: argparse.Namespace) -> dict:
    """RunConfig's communication fields from parsed add_comm_arguments options."""
    return {"relay": args.relay, "comm_budget": args.comm_budget, "budget_max_period": args.budget_max_period,
            "link_delay_ms": args.link_delay_ms, "link_jitter_ms": args.link_jitter_ms, "link_loss": args.link_loss,
            "link_bandwidth_bps": args.link_bandwidth_bps, "round_timeout_ms": args.round_timeout_ms,
            "actor_mask": args.actor_mask, "actor_input": args.actor_input, "heartbeat_timeout_s": args.heartbeat_timeout}


def _headline(run_dir: Path) -> str:
    from .report import summarize

    s = summarize(run_dir)
    parts = [f"episodes {s.get('episodes', 0)}"]
    for key, label in (("first_quarter_return", "return first quarter"), ("last_quarter_return", "last quarter"),
                       ("last_quarter_cost", "cost last quarter")):
        if s.get(key) is not None:
            parts.append(f"{label} {s[key]:.3f}")
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

    for name in task_names():
        s = task_spec(name)
        costs = ", ".join(f"{n} ≤ {lim:g}" for n, lim in zip(s.cost_names, s.cost_limits)) or "no cost"
        kinds = {a.act_kind for a in s.agents}
        acts = [a.n_actions if a.act_kind == "discrete" else a.act_dim for a in s.agents]  # choices / actuators
        sizes = f"obs {_dims([a.obs_dim for a in s.agents])} act {_dims(acts)}"
        print(f"{name:34s} {s.n_agents:2d} agents  {'/'.join(sorted(kinds)):10s} episode {s.episode_length:4d}  "
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
                "tensorboard": tensorboard.cmd_tensorboard, **{name: judge.dispatch for name in judge.HANDLERS}}
    try:
        return handlers[args.command](args)
    except LaunchError as err:
        print(f"khop {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
