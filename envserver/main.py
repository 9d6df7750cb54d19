"""`envserver` console script: parse arguments, build the task, serve it."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import zmq

from .clock import read_clock
from .faults import exhausted, one_line_errors
from .server import EnvServer, ServerConfig
from .tasks import make_task, task_names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="envserver", description="Serve one khop task to agentd processes.")
    p.add_argument("--task", required=True, help=f"one of: {', '.join(task_names())}")
    p.add_argument("--bind", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint to bind the ROUTER on")
    p.add_argument("--envs", type=int, default=8, help="parallel env copies stepped in lockstep")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=10_000, help="env steps to run, summed over copies")
    p.add_argument("--deadline", type=float, default=30.0, help="seconds to wait for an agent's ACT")
    p.add_argument("--join-timeout", type=float, default=300.0, help="seconds to wait for every agent to join")
    p.add_argument("--run-dir", type=Path, default=Path("run/envserver"), help="where episodes.jsonl goes")
    p.add_argument("--fresh", action="store_true",
                   help="start the step counter at 0 even if a previous server left a clock in --run-dir "
                        "(default: a restarted server continues its run's step counter and budget)")
    p.add_argument("--curve", type=Path, default=None, metavar="DIR",
                   help="CurveZMQ key directory (`khop keys`): admit only agents whose keys are listed")
    return p


@one_line_errors("envserver")  # what escapes main: disk full, too many open files, a bug (faults.py)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s envserver %(levelname)s %(message)s")
    try:
        if args.envs < 1:
            raise ValueError(f"--envs must be >= 1, got {args.envs}")
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        previous = None if args.fresh else read_clock(args.run_dir / "clock")
        # a restarted server draws new initial states rather than replaying the run's first episodes
        task_seed = args.seed if previous is None else hash((args.seed, previous.starts)) % 2**31
        task = make_task(args.task, n_envs=args.envs, seed=task_seed)
    except ValueError as err:
        print(f"envserver: error: {err}", file=sys.stderr)
        return 2
    cfg = ServerConfig(bind=args.bind, run_dir=args.run_dir, max_env_steps=args.steps,
                       deadline_s=args.deadline, join_timeout_s=args.join_timeout, resume=not args.fresh,
                       curve=args.curve)
    try:
        server = EnvServer(task, cfg, seed=args.seed)
    except ValueError as err:  # a damaged clock record, unreadable keys
        print(f"envserver: error: {err}", file=sys.stderr)
        return 2
    except zmq.ZMQError as err:  # a port in use: not a bad argument when `khop run` picked it
        if exhausted(err):  # too many open files: the decorator's line and exit code
            raise
        print(f"envserver: error: cannot bind {args.bind}: {zmq.strerror(err.errno)}", file=sys.stderr)
        return 1
    server.install_signal_handlers()
    logging.info("serving %s (%d agents, %d envs) on %s", task.spec.name, task.spec.n_agents, args.envs,
                 server.endpoint)
    try:
        server.serve()
    except TimeoutError as err:
        print(f"envserver: error: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
