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

    r = sub.add_parser("render", help="a video (MP4/GIF) of the learned deterministic policy, headless")
    r.add_argument("run_dir", type=Path)
    r.add_argument("-o", "--out", type=Path, default=None, help="video file, .mp4 or .gif (default RUN_DIR/render.mp4)")
    r.add_argument("--episodes", type=int, default=1, help="episodes of env copy 0 to film (default 1)")
    r.add_argument("--frames", type=int, default=None, metavar="N", help="stop after N frames (one per env step)")
    r.add_argument("--camera", default="follow",
                   help="MuJoCo: follow (tracks the robot, framed for its hazard) or a camera of the model, e.g. track")
    r.add_argument("--size", default="480x480", metavar="WxH", help="frame size in pixels (default 480x480, Gymnasium's)")
    r.add_argument("--fps", type=float, default=None, help="video frame rate (default: real time, 1/dt of the task)")
    r.add_argument("--gif", action="store_true", help="also write a GIF next to the MP4")
    _common(r)

    c = sub.add_parser("compare", help="runs overlaid (return, cost, bytes), seeds of one config as mean and band, a table")
    c.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    c.add_argument("-o", "--out", type=Path, default=Path("compare"), help="output directory (default ./compare)")


def _size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise JudgeError(f"--size expects WIDTHxHEIGHT, e.g. 480x480; got {text!r}")
    return int(w), int(h)


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


def cmd_render(args: argparse.Namespace) -> int:
    from ..report import write_report
    from .render import render

    width, height = _size(args.size)
    rec = render(args.run_dir, args.out, args.episodes, args.env_seed, args.camera, args.checkpoint, width, height,
                 args.fps, args.frames, args.gif)
    write_report(args.run_dir)
    eps = ", ".join(f"return {e['return']:.2f}" + (f" cost {e['cost']:g}" if e["cost"] else "") for e in rec["episodes"])
    print(f"{rec['frames']} frames at {rec['fps']:g} frames/s of video ({eps or 'no episode finished'}); rendering ran "
          f"at {rec['render_fps']:.1f} frames/s")
    print("written: " + ", ".join(rec["videos"]) + f", still {args.run_dir / rec['still']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import write_compare

    print(write_compare(args.run_dirs, args.out))
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {"eval": cmd_eval, "render": cmd_render, "compare": cmd_compare}


def dispatch(args: argparse.Namespace) -> int:
    """Run the subcommand; a run that cannot be judged is one line on stderr and exit 2."""
    try:
        return HANDLERS[args.command](args)
    except JudgeError as err:
        print(f"khop {args.command}: error: {err}", file=sys.stderr)
        return 2
