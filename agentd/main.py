"""`agentd` console script: one decentralized learner process."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from topologies import TopologyError

from .agent import Agent, AgentConfig
from .core import pin_threads


def parse_overrides(items: list[str]) -> dict[str, str]:
    """`--set key=value` pairs; the learner casts and validates the keys."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agentd", description="Run one khop agent.")
    p.add_argument("--id", type=int, required=True, help="this agent's node id in the topology")
    p.add_argument("--env", required=True, help="envserver endpoint, e.g. tcp://127.0.0.1:5555")
    p.add_argument("--topology", type=Path, required=True,
                   help="topology file whose nodes carry an 'address' (the agent's inbox endpoint)")
    p.add_argument("--kappa", type=int, default=1, help="hops of state relayed to this agent's critic")
    p.add_argument("--algo", default="dpo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", type=Path, default=Path("run"))
    p.add_argument("--checkpoint-every", type=int, default=10, help="updates between checkpoints")
    p.add_argument("--link-timeout", type=float, default=30.0, help="seconds to wait for a neighbour per round")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="learner hyperparameter")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s agentd[{args.id}] %(levelname)s %(message)s")
    try:
        if args.kappa < 0:
            raise ValueError(f"--kappa must be >= 0, got {args.kappa}")
        cfg = AgentConfig(agent=args.id, env=args.env, topology=args.topology, kappa=args.kappa, algo=args.algo,
                          run_dir=args.run_dir, seed=args.seed, overrides=parse_overrides(args.set),
                          checkpoint_every=args.checkpoint_every, link_timeout_s=args.link_timeout)
        pin_threads()
        agent = Agent(cfg)
        agent.install_signal_handlers()
        return agent.run()
    except (ValueError, TopologyError, RuntimeError, TimeoutError) as err:
        print(f"agentd[{args.id}]: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
