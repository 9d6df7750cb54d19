"""κ sensitivity of DEC-MAPPO-L (dec-mappo-l.md, Fig. 2) at a scale a 2-core machine runs in ~15 minutes.

The paper trains DEC-MAPPO-L with several κ on Safe ManyAgent Ant, Safe Ant and Safe Coupled
HalfCheetah (millions of steps) and finds κ = "own state only" clearly worse, larger κ close to
MAPPO-L. Here: safe-halfcheetah-6x1 (six agents, one joint each, on the task's path graph
2-1-0-3-4-5 of diameter 5), κ ∈ {0, 1, 2, 5} (κ = 5 = the diameter: every critic sees the global
state, the MAPPO-L-style centralised reference), 2 seeds, 64k env steps each, through
`khop sweep` — so the same run also gives bytes per agent-step for every κ. DEC-MAPPO-L's policy is
κ-hop by default (``actor_input=khop``), so κ changes the policy class as in the paper, not only
the critic's input; ``--actor-input local`` runs the critic-only variant.

    python experiments/kappa_sensitivity.py                  # in-process (identical to distributed sync)
    python experiments/kappa_sensitivity.py --distributed    # one process per agent (slower on 2 cores)
    python experiments/kappa_sensitivity.py --algo dpo       # another learner

The sweep directory (runs, logs) goes to --out (default runs/kappa_sensitivity, not committed);
the combined report is copied to experiments/results/kappa_sensitivity/ with a results.md that
records the command, code version and timing. Rerunning resumes: finished cells are skipped.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compose.run.config import code_version  # noqa: E402
from compose.sweep import Sweep, SweepSpec  # noqa: E402

RESULTS = ROOT / "experiments" / "results" / "kappa_sensitivity"


def actor_input(args: argparse.Namespace) -> str:
    """The policy input every cell ran with (the sweep's, else the algorithm's default)."""
    from agentd.learner import learner_config

    chosen = args.actor_input or learner_config(args.algo).actor_input
    return f"{chosen} ({'--actor-input' if args.actor_input else 'the algorithm default'})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="safe-halfcheetah-6x1")
    p.add_argument("--algo", default="dec-mappo-l")
    p.add_argument("--kappa", default="0,1,2,5")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--steps", type=int, default=64_000)
    p.add_argument("--envs", type=int, default=16)
    p.add_argument("--budget", default="none", help="comma-separated budgets, as for `khop sweep`")
    p.add_argument("--distributed", action="store_true", help="one OS process per agent instead of --inprocess")
    p.add_argument("--actor-input", choices=("local", "khop"), default=None,
                   help="the policy's input (default: the algorithm's own; dec-mappo-l: khop, eqs. 14/18/22)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "kappa_sensitivity")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    spec = SweepSpec.from_mapping({"out": args.out, "task": args.task, "algo": args.algo, "kappa": args.kappa,
                                   "seed": args.seeds, "steps": args.steps, "envs": args.envs,
                                   "budget": args.budget, "inprocess": not args.distributed, "jobs": args.jobs,
                                   "actor_input": args.actor_input})
    started = time.time()
    code = Sweep(spec).run()
    elapsed = time.time() - started
    args.results.mkdir(parents=True, exist_ok=True)
    for name in ("sweep.md", "sweep.csv", "pareto.png", "curves.png"):
        shutil.copy2(args.out / "report" / name, args.results / name)
    command = "python experiments/kappa_sensitivity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.results / "results.md").write_text(
        f"# κ sensitivity (dec-mappo-l.md Fig. 2), {args.task}, {args.algo}\n\n"
        f"- Command: `{command.strip()}`\n- Code: {code_version()}\n"
        f"- Actor input: {actor_input(args)}\n"
        f"- Mode: {'distributed (one process per agent)' if args.distributed else 'in-process (same learner code and relay frames)'}\n"
        f"- Sweep wall time this invocation: {elapsed / 60:.1f} min (cells already finished were skipped)\n"
        f"- Spec: `{json.dumps(spec.to_json())}`\n\n"
        + (args.results / "sweep.md").read_text().split("\n", 1)[1], encoding="utf-8")
    print(f"results in {args.results}")
    return code


if __name__ == "__main__":
    sys.exit(main())
