"""`envserver` console script: parse arguments, build the task, serve it."""
from __future__ import annotations

import argparse
import logging
import sys

import zmq

from .clock import read_clock
from .faults import exhausted, one_line_errors
from .options import add_arguments, check, from_namespace
from .server import EnvServer, ServerConfig
from .tasks import make_task


def build_parser() -> argparse.ArgumentParser:
    """envserver's command line: ServerConfig's declared options (the same ones `khop run` writes)."""
    p = argparse.ArgumentParser(prog="envserver", description="Serve one khop task to agentd processes.")
    add_arguments(p, ServerConfig)
    return p


@one_line_errors("envserver")  # what escapes main: disk full, too many open files, a bug (faults.py)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s envserver %(levelname)s %(message)s")
    try:
        cfg = from_namespace(ServerConfig, args)
        check(cfg)
        previous = read_clock(cfg.run_dir / "clock") if cfg.resume else None
        # a restarted server draws new initial states rather than replaying the run's first episodes
        task_seed = cfg.seed if previous is None else hash((cfg.seed, previous.starts)) % 2**31
        task = make_task(cfg.task, n_envs=cfg.envs, seed=task_seed, physics_threads=cfg.physics_threads)
    except ValueError as err:
        print(f"envserver: error: {err}", file=sys.stderr)
        return 2
    try:
        server = EnvServer(task, cfg, seed=cfg.seed)
    except ValueError as err:  # a damaged clock record, unreadable keys
        task.close()
        print(f"envserver: error: {err}", file=sys.stderr)
        return 2
    except zmq.ZMQError as err:  # a port in use: not a bad argument when `khop run` picked it
        task.close()
        if exhausted(err):  # too many open files: the decorator's line and exit code
            raise
        print(f"envserver: error: cannot bind {cfg.bind}: {zmq.strerror(err.errno)}", file=sys.stderr)
        return 1
    server.install_signal_handlers()
    logging.info("serving %s (%d agents, %d envs) on %s", task.spec.name, task.spec.n_agents, cfg.envs,
                 server.endpoint)
    try:
        server.serve()
    except TimeoutError as err:
        print(f"envserver: error: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
