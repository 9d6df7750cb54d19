"""`agentd` console script: one decentralized learner process."""
from __future__ import annotations

import argparse
import logging
import sys

from envserver.faults import one_line_errors
from envserver.options import add_arguments, from_namespace
from topologies import TopologyError

from .agent import Agent, AgentConfig
from .core import pin_threads


def build_parser() -> argparse.ArgumentParser:
    """agentd's command line: AgentConfig's declared options (the same ones `khop run` writes)."""
    p = argparse.ArgumentParser(prog="agentd", description="Run one khop agent.")
    add_arguments(p, AgentConfig)
    return p


@one_line_errors("agentd")  # what escapes main: disk full, too many open files, a bug (envserver/faults.py)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s agentd[{args.agent}] %(levelname)s %(message)s")
    try:
        cfg = from_namespace(AgentConfig, args)
        cfg.validate()
        pin_threads()
        agent = Agent(cfg)
        agent.install_signal_handlers()
        return agent.run()
    except (ValueError, TopologyError, RuntimeError, TimeoutError) as err:
        print(f"agentd[{args.agent}]: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
