"""The command lines of `khop eval`, `khop render` and `khop compare`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from .team import JudgeError


def register(sub: argparse._SubParsersAction) -> None:
    from .evaluate import DEFAULT_EPISODES

    e = sub.add_parser("eval", help="score the learned policy on fresh episodes: return, cost, violations (95% CI)")
    e.add_argument("run_dir", type=Path)
    e.add_argument("--episodes", type=int, default=DEFAULT_EPISODES,
                   help=f"episodes to play (default {DEFAULT_EPISODES}, BenchMARL's evaluation_episodes)")
    e.add_argument("--deterministic", action="store_true",
                   help="play each policy's mode (argmax / mean / greedy Q / noiseless μ) instead of sampling")
    _common(e)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env-seed", type=int, default=None, metavar="S",
                   help="seed of the played episodes (default: the run's seed + 1000003, episodes it never trained on)")
    p.add_argument("--checkpoint", type=int, default=None, metavar="UPDATE",
                   help="every agent's checkpoint at this update count (default: each agent's newest)")


def cmd_eval(args: argparse.Namespace) -> int:
    from ..report import write_report
    from .evaluate import evaluate, headline, write_eval

    record = evaluate(args.run_dir, args.episodes, args.deterministic, args.env_seed, args.checkpoint)
    path = write_eval(args.run_dir, record)
    write_report(args.run_dir)
    print(headline(record))
    print(f"written to {path} and {args.run_dir / 'report' / 'summary.md'}")
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {"eval": cmd_eval}


def dispatch(args: argparse.Namespace) -> int:
    """Run the subcommand; a run that cannot be judged is one line on stderr and exit 2."""
    try:
        return HANDLERS[args.command](args)
    except JudgeError as err:
        print(f"khop {args.command}: error: {err}", file=sys.stderr)
        return 2
