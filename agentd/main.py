"""`agentd` console script: one decentralized learner process."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from envserver.faults import one_line_errors
from topologies import TopologyError

from .agent import Agent, AgentConfig
from .core import pin_threads
from .links import LinkSpec


def parse_overrides(items: list[str]) -> dict[str, str]:
    """`--set key=value` pairs; the learner casts and validates the keys."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def actor_override(actor_input: str | None) -> dict[str, str]:
    """`--actor-input` as the learner override it is (LearnerConfig.actor_input); none when not given."""
    return {} if actor_input is None else {"actor_input": actor_input}


def budget_value(text: str) -> float | None:
    """`--comm-budget`: bytes per agent per env step, or none/off/inf for unlimited."""
    if text.strip().lower() in ("none", "off", "inf", ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of bytes or 'none', got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be > 0 bytes, got {text!r}")
    return value


def add_comm_arguments(p: argparse.ArgumentParser, defaults: object | None = None) -> None:
    """The communication-layer options, shared by `agentd` and `khop run` (README: "Communication
    layer and budgets")."""
    d = (lambda name, v: getattr(defaults, name, v)) if defaults is not None else (lambda _name, v: v)
    p.add_argument("--relay", choices=("sync", "async"), default=d("relay", "sync"),
                   help="sync: κ exchange rounds per env step, exact κ-hop state; async: one exchange per "
                        "step, state from d hops is d−1 steps old")
    p.add_argument("--comm-budget", type=budget_value, default=d("comm_budget", None), metavar="BYTES",
                   help="wire bytes each agent may send per env step (one transition of one env copy); "
                        "met by float16, sending every k steps, dropping the farthest hops (default: none)")
    p.add_argument("--budget-max-period", type=int, default=d("budget_max_period", 4), metavar="K",
                   help="longest send period the budget policy may choose before it drops hops (default 4)")
    p.add_argument("--link-delay-ms", type=float, default=d("link_delay_ms", 0.0),
                   help="emulated one-way delay of every link (topology edge attribute delay_ms overrides)")
    p.add_argument("--link-jitter-ms", type=float, default=d("link_jitter_ms", 0.0),
                   help="emulated jitter: delay ± U(0, jitter) per message, in order (edge attribute jitter_ms)")
    p.add_argument("--link-loss", type=float, default=d("link_loss", 0.0),
                   help="emulated probability that a message is lost (edge attribute loss)")
    p.add_argument("--link-bandwidth-bps", type=float, default=d("link_bandwidth_bps", 0.0),
                   help="emulated link rate in bits/s, 0 = unlimited (edge attribute bandwidth_bps)")
    p.add_argument("--round-timeout-ms", type=float, default=d("round_timeout_ms", None),
                   help="relay round slot length (default: the link timeout on reliable links; "
                        "100 ms + 2 × worst link latency when a link is lossy)")
    p.add_argument("--actor-mask", action="store_true", default=d("actor_mask", False),
                   help="actor input = own observation + direct neighbours' presence bits (default: own only)")
    p.add_argument("--actor-input", choices=("local", "khop"), default=d("actor_input", None),
                   help="what the policy conditions on: local = own observation; khop = the critic's κ-ball rows + "
                        "presence bits (default: the algorithm's paper; dec-mappo-l and shadow-pg khop)")
    p.add_argument("--heartbeat-timeout", type=float, default=d("heartbeat_timeout_s", 5.0), metavar="S",
                   help="a neighbour silent this long during an exchange is down (presence 0, not waited for); "
                        "heartbeats go out every S/5 on quiet links (default 5)")


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
    p.add_argument("--link-timeout", type=float, default=30.0,
                   help="seconds of silence after which a neighbour is no longer waited for")
    add_comm_arguments(p)
    p.add_argument("--curve", type=Path, default=None, metavar="DIR",
                   help="CurveZMQ key directory (`khop keys`): encrypt every socket, admit only listed keys")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="learner hyperparameter")
    return p


@one_line_errors("agentd")  # what escapes main: disk full, too many open files, a bug (envserver/faults.py)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s agentd[{args.id}] %(levelname)s %(message)s")
    try:
        if args.kappa < 0:
            raise ValueError(f"--kappa must be >= 0, got {args.kappa}")
        if not 0 < args.heartbeat_timeout < float("inf"):
            raise ValueError(f"--heartbeat-timeout must be > 0 seconds, got {args.heartbeat_timeout}")
        cfg = AgentConfig(agent=args.id, env=args.env, topology=args.topology, kappa=args.kappa, algo=args.algo,
                          run_dir=args.run_dir, seed=args.seed, overrides={**parse_overrides(args.set),
                                                                         **actor_override(args.actor_input)},
                          checkpoint_every=args.checkpoint_every, link_timeout_s=args.link_timeout,
                          relay=args.relay, comm_budget=args.comm_budget, budget_max_period=args.budget_max_period,
                          link=LinkSpec(args.link_delay_ms, args.link_jitter_ms, args.link_loss,
                                        args.link_bandwidth_bps).validate("--link-* options"),
                          round_timeout_s=args.round_timeout_ms / 1000 if args.round_timeout_ms else None,
                          actor_mask=args.actor_mask, heartbeat_timeout_s=args.heartbeat_timeout,
                          curve=args.curve)
        pin_threads()
        agent = Agent(cfg)
        agent.install_signal_handlers()
        return agent.run()
    except (ValueError, TopologyError, RuntimeError, TimeoutError) as err:
        print(f"agentd[{args.id}]: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
