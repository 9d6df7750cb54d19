"""DPO against IPPO, with DPO's two ablations, on the plain multi-agent MuJoCo tasks (dpo.md §4.3
Fig. 3 and §4.5 Fig. 6): learning curves of the episode return (95 % bands over seeds) and a table
of the last 10 % of each run.

Settings are the paper's where khop has them and the repository's defaults otherwise (nothing is
tuned here): d_target 0.001 (dpo.md App. B, agentd/learner/defaults.py), β1 = β2 = 0.01 initially,
and — for every algorithm alike — each agent's policy reads the κ = 2 ball of observation rows the
relay brings it (``--kappa 2 --set actor_input=khop``), khop's counterpart of the paper's
``agent_obsk = 2`` (dpo.md Table 1: each agent observes the joints of the agents up to two away). On
the 3-agent lines that is every agent's rows, brought hop by hop.

Cells run in-process by default (``khop run --inprocess`` through experiments/run_cell.py), two at
a time, one per core, because the in-process transport computes the same thing as the distributed
one: before any long cell, ``identity_check`` runs each (task, algorithm) for ``CHECK_STEPS`` both
ways — the distributed run with an envserver and one agentd process per agent — and the sweep
refuses to start unless both wrote identical episodes (step, copy, return, length) across several
learning updates; the outcome is committed under experiments/results/cells/dpo_mamujoco/.
``--distributed`` runs every cell through real agent processes instead.

Resumable: a finished cell is never rerun (its committed record is read back); an in-process cell
cut short starts over, a distributed one resumes from its checkpoints.

    python -m experiments.dpo_mamujoco --tasks mamujoco-hopper-3x1 mamujoco-halfcheetah-3x2 \\
        --algos dpo dpo-no-sqrt dpo-no-kl ippo --seeds 3 --steps 1000000 --envs 16 --jobs 2
    python -m experiments.dpo_mamujoco --report-only

Results: experiments/results/dpo_mamujoco_<task>.{png,md,csv,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from experiments import common
from experiments.common import RESULTS, ROOT, Cell, curve_mean, figure, parse_sweep, print_results, record_path, \
    run_cells, seed_bands, sweep_parser, write_table
from experiments.safe_mamujoco import FINAL_FRAC, mean_ci, run_record, summarise

GROUP = "dpo_mamujoco"  # runs/experiments/dpo_mamujoco/
TASKS = ("mamujoco-hopper-3x1", "mamujoco-halfcheetah-3x2")  # dpo.md Fig. 3 and 6 (the first two panels)
ALGOS = ("dpo", "dpo-no-sqrt", "dpo-no-kl", "ippo")  # dpo.md §4.5: DPO_w/o_sqrt (β1 ≡ 0), DPO_w/o_kl (β2 ≡ 0)
COLORS = {"dpo": "tab:red", "dpo-no-sqrt": "tab:orange", "dpo-no-kl": "tab:purple", "ippo": "tab:gray"}
KAPPA = 2  # dpo.md Table 1: agent_obsk = 2 on every MaMuJoCo task
OVERRIDES = ("actor_input=khop",)  # the policy reads the relayed κ-ball, as the paper's obsk-2 observation
CHECK_STEPS = 8192  # at least 4 updates of 128 steps × 16 copies; more where an episode is longer (check_steps)
#: what every agent's metrics rows must agree on, update by update, besides the episodes
CHECK_KEYS = ("update", "env_step", "policy_loss", "value_loss", "kl", "entropy")


def make_cells(tasks: list[str], algos: list[str], seeds: int, steps: int, envs: int,
               distributed: bool) -> list[Cell]:
    """Seed-major within each task, so a sweep cut short has every algorithm at the same seeds."""
    return [Cell(t, a, s, steps, envs, overrides=list(OVERRIDES), kappa=KAPPA, distributed=distributed)
            for t in tasks for s in range(seeds) for a in algos]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _trace(run_dir: Path, n_agents: int) -> tuple[list[tuple], list[list[tuple]]]:
    """What the two transports must agree on: every episode (step, copy, return, length) and every
    agent's update rows (CHECK_KEYS)."""
    episodes = [(r["env_step"], r["env"], r["episode_return"], r["episode_length"])
                for r in _rows(run_dir / "envserver" / "episodes.jsonl")]
    updates = [[tuple(r.get(k) for k in CHECK_KEYS) for r in _rows(run_dir / f"agent-{i}" / "metrics.jsonl")]
               for i in range(n_agents)]
    return episodes, updates


def same_trace(a: tuple[list, list], b: tuple[list, list], envs: int) -> bool:
    """Identical, and not vacuously: at least one episode per copy and one update row per agent."""
    return a == b and len(b[0]) >= envs and all(b[1])


def check_steps(task: str, envs: int) -> int:
    """CHECK_STEPS, or enough for every copy to finish one full-length episode (HalfCheetah never
    terminates early: 1000 steps per copy before its first episode ends)."""
    from envserver.tasks import task_spec

    return max(CHECK_STEPS, (task_spec(task).episode_length + 1) * envs)


def identity_check(task: str, algo: str, envs: int) -> dict:
    """Run (task, algo) in-process and distributed with the sweep's settings and seed 0; identical
    means the same episodes (at least one per copy) and the same update rows of every agent. The
    outcome is recorded once."""
    path = common.RECORDS / GROUP / f"identity-{task}-{algo}-e{envs}.json"
    if path.exists():
        return json.loads(path.read_text())
    from envserver.tasks import task_spec

    base = common.RUNS / GROUP / "identity"
    steps, n_agents = check_steps(task, envs), task_spec(task).n_agents
    runs = {}
    for mode in ("distributed", "inprocess"):
        cell = Cell(task, algo, 0, steps, envs, overrides=list(OVERRIDES), kappa=KAPPA,
                    distributed=mode == "distributed")
        run_dir = base / mode / cell.name
        cmd = cell.command(f"{GROUP}/identity/{mode}")
        shutil.rmtree(run_dir, ignore_errors=True)  # a check cut short starts over
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if res.returncode != 0:
            raise RuntimeError(f"identity check {task} {algo} ({mode}) failed: {res.stdout[-400:]}{res.stderr[-400:]}")
        runs[mode] = run_dir
    (ep_a, up_a), (ep_b, up_b) = _trace(runs["distributed"], n_agents), _trace(runs["inprocess"], n_agents)
    out = {"task": task, "algo": algo, "steps": steps, "envs": envs, "kappa": KAPPA,
           "overrides": list(OVERRIDES), "episodes": [len(ep_a), len(ep_b)], "updates_agent0": len(up_b[0]),
           "compared": ["episodes"] + [f"agents' {', '.join(CHECK_KEYS)}"],
           "identical": same_trace((ep_a, up_a), (ep_b, up_b), envs)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out


def plot(summary: dict, path: Path, title: str) -> None:
    fig, axes = figure(1, 1, (6.5, 4.5))
    ax = axes[0, 0]
    seed_bands(ax, summary["edges"], {algo: rec["ret"] for algo, rec in summary["algos"].items()}, COLORS)
    ax.set_ylabel("episode return")
    ax.legend(fontsize=8)
    ax.set_title(title + "\nmean and 95% band over seeds", fontsize=9)  # two lines: one overran the figure
    fig.tight_layout()
    fig.savefig(path, dpi=120)


HEADER = ["algorithm", "seeds finished", "return, first 10 %", "return, last 10 % (mean ± 95% CI)",
          "per seed: last 10 % return", "episodes in the last 10 %"]


def table_rows(summary: dict) -> list[list]:
    rows = []
    for algo, rec in summary["algos"].items():
        st = rec["stats"]
        first = [float(np.nanmean(r[:max(1, len(r) // 10)])) for r in rec["ret"]]  # the first of 10 bins' worth
        rows.append([algo, len(st), mean_ci(first), mean_ci([s["return"] for s in st]),
                     " / ".join(f"{s['return']:.0f}" if s["episodes"] else "no episode" for s in st),
                     " / ".join(str(s["episodes"]) for s in st)])
    return rows


def write_results(args: argparse.Namespace, task: str, cells: list[Cell], checks: list[dict],
                  wall_s: float | None) -> Path:
    from compose.run.config import code_version

    cells = [c for c in cells if c.task == task]
    summary = summarise(cells, None, bins=20, group=GROUP)
    stem = RESULTS / f"dpo_mamujoco_{task.replace('-', '_')}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    done = [c for c in cells if record_path(c, GROUP).exists()]
    missing = [c.name for c in cells if c not in done]
    mode = "distributed `khop run`" if args.distributed else "`khop run --inprocess`"
    if summary["algos"]:
        plot(summary, stem.with_suffix(".png"), f"{task}, {args.steps:,} steps, {mode}")
    command = "python -m experiments.dpo_mamujoco " + shlex.join(a for a in args.argv if a != "--report-only")
    made_with = sorted({s["code_version"] for r in summary["algos"].values() for s in r["stats"]})
    check_lines = "".join(f"\n- {c['algo']}: {'identical' if c['identical'] else 'DIFFERENT'} episodes "
                          f"({c['episodes'][0]} / {c['episodes'][1]}, {c['updates_agent0']} updates of agent 0, "
                          f"{c['steps']:,} steps)" for c in checks if c["task"] == task)
    pre = (f"# {task}: {', '.join(args.algos)}\n\n`{command}`\n\n"
           f"Code: {code_version()}; runs made with: {', '.join(made_with) or '—'}\n\n"
           f"Every run: {mode}, κ = {KAPPA} with the policy reading the relayed κ-ball (dpo.md Table 1 agent_obsk "
           f"= 2), {args.envs} env copies, the repository's defaults (d_target 0.001, dpo.md App. B). Last 10 % = "
           f"the episodes that ended after {1 - FINAL_FRAC:.0%} of the budget; first 10 % = the first two of 20 "
           f"bins.\n"
           + (f"\nIn-process computes what the distributed system computes — the same seed, both ways:"
              f"{check_lines}\n" if check_lines else "")
           + (f"\n**Partial**: {len(done)} of {len(cells)} runs finished; not (yet) finished: "
              f"{', '.join(missing)}.\n" if missing else f"\nAll {len(cells)} runs finished.\n")
           + (f"\nWall time of this invocation: {wall_s / 3600:.2f} h.\n" if wall_s else ""))
    write_table(stem, HEADER, table_rows(summary), pre)
    with open(stem.with_suffix(".md"), "a") as fh:
        fh.write("\n**Scales.** dpo.md reports curves only (Fig. 3, 6: return against environment steps, the "
                 "MAPPO code base's 1000-step MaMuJoCo episodes on the v2-era robots); there is no table to set "
                 "beside this one. khop's robots are Gymnasium v5's (README \"MuJoCo tasks\"). What compares is "
                 "the ordering of the curves at equal steps, not their height.\n")
    stem.with_suffix(".json").write_text(json.dumps(
        {"task": task, "steps": args.steps, "envs": args.envs, "kappa": KAPPA, "overrides": list(OVERRIDES),
         "command": command, "bin_edges": summary["edges"].tolist(), "missing": missing,
         "identity_checks": [c for c in checks if c["task"] == task],
         "algos": {a: {"seeds": r["seeds"], "stats": r["stats"], "return_curve_mean": curve_mean(r["ret"]).tolist()}
                   for a, r in summary["algos"].items()}}, indent=1))
    return stem


def main(argv: list[str] | None = None) -> int:
    p = sweep_parser(__doc__, list(ALGOS), seeds=3, steps=1_000_000, envs=16, jobs=2,
                     jobs_help="runs at once (an in-process run keeps one core busy)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--distributed", action="store_true", help="every cell through real agent processes")
    args, algos = parse_sweep(p, argv)
    from envserver.tasks import task_spec

    for t in args.tasks:
        try:
            task_spec(t)
        except (KeyError, ValueError) as err:
            p.error(f"--tasks {t}: {err}")
    cells = make_cells(args.tasks, algos, args.seeds, args.steps, args.envs, args.distributed)
    checks = sorted((json.loads(f.read_text()) for f in (common.RECORDS / GROUP).glob("identity-*.json")),
                    key=lambda c: (c["task"], c["algo"])) if (common.RECORDS / GROUP).exists() else []
    t0, failure = time.monotonic(), None
    if not args.report_only:
        try:
            if not args.distributed:
                checks = [identity_check(t, a, args.envs) for t in args.tasks for a in algos]
                different = [f"{c['task']} {c['algo']}" for c in checks if not c["identical"]]
                if different:
                    raise RuntimeError("in-process and distributed runs differ for " + ", ".join(different)
                                       + "; run with --distributed")
            run_cells(cells, GROUP, args.jobs, record=run_record(None))
        except RuntimeError as err:  # write what finished, then say what did not
            failure = err
    wall = None if args.report_only else time.monotonic() - t0
    return print_results([write_results(args, t, cells, checks, wall) for t in args.tasks], failure)


if __name__ == "__main__":
    raise SystemExit(main())
