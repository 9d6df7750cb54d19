"""IPPO and DPO on SMAX battles (dpo.md §4.4 uses SMAC; SMAX is JaxMARL's re-implementation): the
share of episodes won against training steps, mean and 95 % band over seeds, and a table of the
first and last 10 % of each run.

Settings are the repository's defaults (agentd/learner/defaults.py; no SMAX-specific values, nothing
tuned here) at khop's default κ = 1 with each policy on its own observation. Cells run in-process
(``khop run --inprocess`` through experiments/run_cell.py): tests/test_inprocess.py shows smax-3m
gives the same episodes in-process and through agent processes (slow, where the smax extra is
installed). Needs ``pip install -e ".[smax]" -c constraints.txt``. Resumable: a finished cell is
never rerun (its committed record is read back).

    python -m experiments.smax_winrate --task smax-3m --algos ippo dpo --seeds 2 --steps 300000 --envs 8

Results: experiments/results/smax_winrate_<task>.{png,md,csv,json}.
"""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import numpy as np

from experiments.common import RESULTS, Cell, binned, curve_mean, figure, parse_sweep, print_results, record_path, \
    rounded, run_cells, seed_bands, sweep_parser, write_table
from experiments.safe_mamujoco import mean_ci

GROUP = "smax_winrate"  # runs/experiments/smax_winrate/
COLORS = {"dpo": "tab:red", "ippo": "tab:gray"}
BINS = 20


def run_record(run_dir: Path) -> dict:
    """A finished run's committed record: every episode's end step, return and outcome."""
    from compose.report import load_episodes, read_config

    rows = [r for r in load_episodes(run_dir) if isinstance(r.get("won"), bool)]
    return {"steps": rounded(np.array([r["env_step"] for r in rows], dtype=float), 0),
            "won": [int(r["won"]) for r in rows], "returns": rounded(np.array([r["episode_return"] for r in rows]), 3),
            "code_version": read_config(run_dir).get("code_version", "")}


def summarise(cells: list[Cell]) -> dict:
    steps = max(c.steps for c in cells)
    edges = np.linspace(0, steps, BINS + 1)
    edges[-1] += 1
    out: dict[str, dict] = {}
    from experiments.common import cell_record

    for c in cells:
        r = cell_record(c, GROUP, run_record)
        if r is None:
            continue
        x, won = np.array(r["steps"]), np.array(r["won"], dtype=float)
        rec = out.setdefault(c.algo, {"won": [], "seeds": [], "first": [], "last": [], "episodes": [], "code": set()})
        rec["won"].append(binned(x, won, edges))
        rec["first"].append(float(won[x <= 0.1 * steps].mean()) if (x <= 0.1 * steps).any() else float("nan"))
        rec["last"].append(float(won[x > 0.9 * steps].mean()) if (x > 0.9 * steps).any() else float("nan"))
        rec["episodes"].append(len(won))
        rec["seeds"].append(c.seed)
        rec["code"].add(r["code_version"])
    for rec in out.values():
        rec["won"] = np.array(rec["won"])
    return {"edges": edges, "algos": out}


def plot(summary: dict, path: Path, title: str) -> None:
    fig, axes = figure(1, 1, (6.5, 4.5))
    ax = axes[0, 0]
    seed_bands(ax, summary["edges"], {algo: rec["won"] for algo, rec in summary["algos"].items()}, COLORS, (0, 1))
    ax.set_ylabel("share of episodes won")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(title + "; mean and 95% band over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


HEADER = ["algorithm", "seeds finished", "win rate, first 10 % of steps", "win rate, last 10 % (mean ± 95% CI)",
          "per seed: first → last", "episodes per run"]


def main(argv: list[str] | None = None) -> int:
    p = sweep_parser(__doc__, ["ippo", "dpo"], seeds=2, steps=300_000, envs=8, jobs=1,
                     jobs_help="runs at once (an in-process run keeps one core busy)")
    p.add_argument("--task", default="smax-3m")
    args, algos = parse_sweep(p, argv)
    if not args.task.startswith("smax-"):
        p.error(f"--task {args.task}: choose an SMAX battle (`khop tasks`: smax-*)")
    cells = [Cell(args.task, a, s, args.steps, args.envs) for s in range(args.seeds) for a in algos]
    t0, failure = time.monotonic(), None
    if not args.report_only:
        try:
            run_cells(cells, GROUP, args.jobs, record=run_record)
        except RuntimeError as err:
            failure = err
    from compose.run.config import code_version

    summary = summarise(cells)
    stem = RESULTS / f"smax_winrate_{args.task.replace('-', '_')}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    missing = [c.name for c in cells if not record_path(c, GROUP).exists()]
    if summary["algos"]:
        plot(summary, stem.with_suffix(".png"), f"{args.task}, {args.steps:,} steps, `khop run --inprocess`")
    command = "python -m experiments.smax_winrate " + shlex.join(a for a in args.argv if a != "--report-only")
    rows = [[a, len(r["seeds"]), mean_ci(r["first"], 2), mean_ci(r["last"], 2),
             " / ".join(f"{f:.2f} → {l:.2f}" for f, l in zip(r["first"], r["last"])),
             " / ".join(map(str, r["episodes"]))] for a, r in summary["algos"].items()]
    made_with = sorted({v for r in summary["algos"].values() for v in r["code"]})
    wall = "" if args.report_only else f"\nWall time of this invocation: {(time.monotonic() - t0) / 3600:.2f} h.\n"
    pre = (f"# {args.task}: {', '.join(algos)}\n\n`{command}`\n\nCode: {code_version()}; runs made with: "
           f"{', '.join(made_with) or '—'}\n\nEvery run: `khop run --inprocess`, κ = 1, {args.envs} env copies, the "
           "repository's defaults. Won = every enemy dead with an ally alive (SMAX's outcome); an episode "
           "ends at 100 steps at the latest.\n"
           + (f"\n**Partial**: not (yet) finished: {', '.join(missing)}.\n" if missing
              else f"\nAll {len(cells)} runs finished.\n") + wall)
    write_table(stem, HEADER, rows, pre)
    stem.with_suffix(".json").write_text(json.dumps(
        {"task": args.task, "steps": args.steps, "envs": args.envs, "command": command, "missing": missing,
         "bin_edges": summary["edges"].tolist(),
         "algos": {a: {"seeds": r["seeds"], "first": r["first"], "last": r["last"], "episodes": r["episodes"],
                       "win_curve_mean": curve_mean(r["won"]).tolist()} for a, r in summary["algos"].items()}},
        indent=1))
    return print_results([stem], failure)


if __name__ == "__main__":
    raise SystemExit(main())
