"""Constrained and unconstrained learners on Safe MaMuJoCo through `khop run` with real agent
processes: learning curves of return and cost (limit drawn, 95% bands over seeds) and a table of
the last 10 % of each run beside the published readings (safe-mamujoco.md §6).

Every (algorithm, seed) cell is one distributed `khop run` — an envserver and one agentd process
per agent, talking ZeroMQ — with the repository's defaults for the task family and the algorithm
(agentd/learner/defaults.py, config.py: nothing is tuned here) and khop's default κ for the
algorithm (the graph's diameter for the centralised references, else 1; README "CLI"). No cell
runs --inprocess. Runs go to runs/experiments/safe_mamujoco/<cell>/ (git-ignored), at most
``--jobs`` at a time (default 1: one 2-agent run keeps three processes busy).

Resumable at two levels (experiments/common.py): a finished cell (run_status.json "finished" and
a report) is never rerun, and it leaves a committed record under experiments/results/cells/ that a
later session reads even when runs/ is gone; a cell cut short — the script killed or interrupted, the session ended,
each `khop run` dying with the script — is continued by `khop run --resume`: its agents load their
newest checkpoints (at most ``--checkpoint-every`` = 10 updates are trained again) and the envserver
continues its step counter, so the budget is honoured. Rerun the same command to continue a sweep.

    python -m experiments.safe_mamujoco --task safe-velocity-halfcheetah-2x3 \\
        --algos dec-mappo-l mappo-l mafocops macpo happo ippo --seeds 3 --steps 1000000 --envs 16 --jobs 1
    python -m experiments.safe_mamujoco --task safe-halfcheetah-2x3 --algos dec-mappo-l macpo ippo
    python -m experiments.safe_mamujoco --task safe-velocity-halfcheetah-2x3 --report-only

Results (from the cells finished so far; partial results are labelled as such) go to
experiments/results/safe_mamujoco_<task>[_<tag>].{png,md,csv,json} plus _runs.csv (one row per
run); the Markdown records the command and the code version.
"""
from __future__ import annotations

import argparse
import csv
import json
import shlex
import time
from pathlib import Path

import numpy as np

from experiments.common import (
    RESULTS,
    Cell,
    binned,
    ci95,
    curve_mean,
    episode_curve,
    figure,
    cell_record,
    parse_sweep,
    print_results,
    record_path,
    rounded,
    run_cells,
    seed_bands,
    sweep_parser,
    write_table,
)

GROUP = "safe_mamujoco"  # runs/experiments/safe_mamujoco/
ALGOS = ("dec-mappo-l", "mappo-l", "mafocops", "macpo", "happo", "ippo")
COLORS = {"dec-mappo-l": "tab:red", "mappo-l": "tab:orange", "mafocops": "tab:purple", "macpo": "tab:green",
          "happo": "tab:blue", "ippo": "tab:gray"}
COEF_KEYS = ("lambda0", "nu0")  # DEC-MAPPO-L / MAPPO-L's λ, MAFOCOPS's ν (metrics.jsonl)
FINAL_FRAC = 0.1  # "the last 10 %" of the env-step budget

# safe-mamujoco.md §6: MACPO README figures, mean over seeds eyeballed at 1e7 env steps (±5–10 %),
# (episode cost, episode return) per 1000-step episode; "mappo" is unconstrained MAPPO (not a khop learner)
PUBLISHED_STEPS = 10_000_000
PUBLISHED: dict[str, dict[str, tuple[float, float]]] = {
    "safe-manyagent-ant-2x3": {"macpo": (5, 1650), "mappo-l": (5, 2100), "happo": (270, 2550), "mappo": (250, 2350),
                               "ippo": (250, 2400)},
    "safe-manyagent-ant-3x2": {"macpo": (5, 2000), "mappo-l": (5, 2050), "happo": (270, 2650), "mappo": (250, 2450),
                               "ippo": (240, 2500)},
    "safe-manyagent-ant-6x1": {"macpo": (10, 1700), "mappo-l": (20, 2200), "happo": (270, 2500), "mappo": (250, 2150),
                               "ippo": (280, 2200)},
    "safe-ant-2x4": {"macpo": (5, 1380), "mappo-l": (2, 2800), "happo": (200, 3350), "mappo": (205, 2600),
                     "ippo": (285, 830)},
    "safe-ant-4x2": {"macpo": (5, 1600), "mappo-l": (5, 3000), "happo": (210, 3600), "mappo": (240, 2000),
                     "ippo": (315, 850)},
    "safe-ant-2x4d": {"macpo": (5, 1250), "mappo-l": (5, 2800), "happo": (185, 3350), "mappo": (225, 2250),
                      "ippo": (275, 850)},
    "safe-halfcheetah-2x3": {"macpo": (10, 2650), "mappo-l": (5, 2600), "happo": (560, 3700), "mappo": (490, 3350),
                             "ippo": (85, 2200)},
    "safe-halfcheetah-3x2": {"macpo": (10, 2450), "mappo-l": (5, 2450), "happo": (600, 3950), "mappo": (460, 3150),
                             "ippo": (180, 1850)},
    "safe-halfcheetah-6x1": {"macpo": (15, 2750), "mappo-l": (5, 2700), "happo": (600, 4000), "mappo": (170, 2300),
                             "ippo": (65, 1250)},
}


def task_facts(task: str) -> tuple[float, object]:
    """The task's (first) cost limit and its default graph."""
    from envserver.tasks import task_spec
    from topologies import resolve_topology

    spec = task_spec(task)
    if not spec.cost_limits:
        raise ValueError(f"{task} has no cost; choose a safe task (see `khop tasks`)")
    return float(spec.cost_limits[0]), resolve_topology(spec.topology, spec.n_agents)


def make_cells(task: str, algos: list[str], seeds: int, steps: int, envs: int) -> list[Cell]:
    """One distributed cell per (algo, seed), each at khop's default κ for the algorithm; seed-major,
    so that a sweep cut short by the end of a session has every algorithm at the same seed count."""
    from compose.run.config import default_kappa

    _limit, graph = task_facts(task)
    return [Cell(task, a, s, steps, envs, kappa=default_kappa(a, graph)[0], distributed=True)
            for s in range(seeds) for a in algos]


def run_stats(run_dir: Path, limit: float | None, frac: float = FINAL_FRAC) -> dict:
    """Last ``frac`` of the budget: mean episode return and cost, the violation rate (episodes
    with cost > limit; NaN on a task without a cost limit) and the final dual variable (mean over
    agents of the newest row)."""
    from compose.report import load_agent_metrics, read_config

    steps, ret = episode_curve(run_dir)
    _, cost = episode_curve(run_dir, "episode_cost")
    cfg = read_config(run_dir)
    sel = steps > (1.0 - frac) * cfg["steps"]
    coef: dict[str, float] = {}
    for key in COEF_KEYS:
        last = [rows[-1][key] for rows in load_agent_metrics(run_dir).values() if rows and key in rows[-1]]
        if last:
            coef[key] = float(np.mean(last))
    n = int(sel.sum())
    nan = float("nan")
    return {"episodes": n, "return": float(ret[sel].mean()) if n else nan,
            "cost": float(cost[sel].mean()) if n else nan,
            "violation": float((cost[sel] > limit).mean()) if n and limit is not None else nan, "coef": coef,
            "kappa": cfg["kappa"], "code_version": cfg.get("code_version", "")}


def run_record(limit: float | None):
    """The maker of a finished run's committed record: its episode curves and last-10 % stats."""
    def make(run_dir: Path) -> dict:
        x, ret = episode_curve(run_dir)
        _, cost = episode_curve(run_dir, "episode_cost")
        return {"steps": rounded(x, 0), "returns": rounded(ret, 3), "costs": rounded(cost, 3),
                "stats": run_stats(run_dir, limit)}
    return make


def summarise(cells: list[Cell], limit: float | None, bins: int = 25, group: str = GROUP) -> dict:
    """Per cell label (default: the algorithm), over its finished seeds (their cell records): binned
    return and cost curves and the run stats."""
    steps = max(c.steps for c in cells)
    edges = np.linspace(0, steps, bins + 1)
    edges[-1] += 1  # the episodes that end with the budget (env_step == steps) belong to the last bin
    out: dict[str, dict] = {}
    for c in cells:
        r = cell_record(c, group, run_record(limit))
        if r is None:
            continue
        rec = out.setdefault(c.label or c.algo, {"ret": [], "cost": [], "stats": [], "seeds": []})
        x = np.array(r["steps"])
        rec["ret"].append(binned(x, np.array(r["returns"]), edges))
        rec["cost"].append(binned(x, np.array(r["costs"]), edges))
        rec["stats"].append(r["stats"])
        rec["seeds"].append(c.seed)
    for rec in out.values():
        rec["ret"], rec["cost"] = np.array(rec["ret"]), np.array(rec["cost"])
    return {"edges": edges, "algos": out}


def plot(summary: dict, limit: float, path: Path, title: str) -> None:
    fig, axes = figure(1, 2, (6.5, 4.5))
    for ax, key, ylabel in ((axes[0, 0], "ret", "episode return"), (axes[0, 1], "cost", "episode cost")):
        seed_bands(ax, summary["edges"], {algo: rec[key] for algo, rec in summary["algos"].items()}, COLORS)
        ax.set_ylabel(f"{ylabel} (1000 steps)")
    axes[0, 1].axhline(limit, color="k", ls="--", label=f"cost limit {limit:g}")
    axes[0, 1].legend(fontsize=8)
    fig.suptitle(title + "; mean and 95% band over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def mean_ci(values: list[float], digits: int = 1) -> str:
    v = np.array(values, dtype=np.float64)
    if not np.isfinite(v).any():
        return "n/a"
    v = v[np.isfinite(v)]
    return f"{v.mean():.{digits}f} ± {float(ci95(v)):.{digits}f}" if len(v) > 1 else f"{v.mean():.{digits}f}"


def table_rows(summary: dict, task: str) -> list[list]:
    published = PUBLISHED.get(task, {})
    rows = []
    for algo, rec in summary["algos"].items():
        st = rec["stats"]
        coef_key = next((k for k in COEF_KEYS if any(k in s["coef"] for s in st)), None)
        coef = "—"
        if coef_key:
            symbol = "λ" if coef_key == "lambda0" else "ν"
            coef = f"{symbol} " + mean_ci([s["coef"].get(coef_key, np.nan) for s in st], 3)
        pub = published.get(algo)
        rows.append([algo, len(st), st[0]["kappa"], mean_ci([s["return"] for s in st]),
                     mean_ci([s["cost"] for s in st]), mean_ci([s["violation"] for s in st], 2), coef,
                     " / ".join(f"{s['return']:.0f}, {s['cost']:.1f}" if s["episodes"] else "no episode" for s in st),
                     f"~{pub[1]:g} / ~{pub[0]:g}" if pub else "—"])
    return rows


HEADER = ["algorithm", "seeds finished", "κ", "return (last 10 %, mean ± 95% CI)", "cost (last 10 %)",
          "violation rate (episodes over the limit)", "final λ / ν", "per seed: return, cost",
          f"published return / cost at {PUBLISHED_STEPS // 1_000_000}M steps"]


def scale_note(task: str, steps: int, envs: int, limit: float) -> str:
    """How the published numbers and these differ, in words."""
    ours = (f"Here: {steps:,} env steps per run ({envs} env copies, {steps / PUBLISHED_STEPS:.1%} of the published "
            f"10M), cost limit {limit:g} per 1000-step episode, and each khop agent observes only its own joints "
            "and the root (+ the hazard on the MACPO tasks; README \"MuJoCo tasks\"), what reaches it from the "
            "other agent coming through the κ-hop relay.")
    if task in PUBLISHED:
        pub = PUBLISHED[task]
        extra = (f" The MACPO figures also show unconstrained MAPPO (not a khop learner): ~{pub['mappo'][1]:g} / "
                 f"~{pub['mappo'][0]:g}." if "mappo" in pub else "")
        return ("**Scales.** Published (safe-mamujoco.md §6): the MACPO README's figures, eyeballed at 1e7 env "
                "steps (±5–10 %), MACPO's own code, whose agents each observe the whole robot state "
                "(safe-mamujoco.md §1.1), 1000-step rollouts from 16 threads; the same episode length and cost "
                f"limit ({limit:g}); rewards of the same form per 1000-step episode (Gymnasium v5's here, MACPO's "
                "v2-era code there; README \"MuJoCo tasks\" lists the differences). " + ours
                + f" At {steps / PUBLISHED_STEPS:.1%} of the published budget and with local observations, returns "
                "are expected below the published ones; what compares is the constraint's behaviour (the "
                "published cost settles near the limit for MACPO / MAPPO-L and far above it for HAPPO / IPPO) "
                "more than the return." + extra)
    return ("**Scales.** No published numbers for this task: SafePO, which benchmarks the Safety-Gymnasium "
            "velocity tasks, publishes only W&B report links (safe-mamujoco.md §6); its runs are 1e7 env steps "
            "from 10 envs and its agents each see the whole standardised state plus a one-hot id (§3.7). " + ours)


def write_results(args: argparse.Namespace, cells: list[Cell], limit: float, wall_s: float | None) -> Path:
    from compose.run.config import code_version

    summary = summarise(cells, limit)
    stem = RESULTS / (f"safe_mamujoco_{args.task.replace('-', '_')}" + (f"_{args.tag}" if args.tag else ""))
    stem.parent.mkdir(parents=True, exist_ok=True)
    done = [c for c in cells if record_path(c, GROUP).exists()]
    missing = [c.name for c in cells if c not in done]
    if summary["algos"]:
        plot(summary, limit, stem.with_suffix(".png"),
             f"{args.task}, {args.steps:,} steps, distributed `khop run`")
    # the command that runs and reports (--report-only only rewrites the files from the same runs)
    command = "python -m experiments.safe_mamujoco " + shlex.join(a for a in args.argv if a != "--report-only")
    made_with = sorted({s["code_version"] for r in summary["algos"].values() for s in r["stats"]})
    pre = (f"# {args.task}: {', '.join(args.algos)}\n\n`{command}`\n\n"
           f"Code: {code_version()}; runs made with: {', '.join(made_with) or '—'}\n\n"
           f"Every run is a distributed `khop run` (an envserver and one agentd process per agent). Last 10 % = "
           f"the episodes that ended after {1 - FINAL_FRAC:.0%} of the budget. Cost limit {limit:g} per episode.\n"
           + (f"\n**Partial**: {len(done)} of {len(cells)} runs finished; not (yet) finished: "
              f"{', '.join(missing)}.\n" if missing else f"\nAll {len(cells)} runs finished.\n")
           + (f"\nWall time of this invocation: {wall_s / 3600:.2f} h.\n" if wall_s else ""))
    write_table(stem, HEADER, table_rows(summary, args.task), pre)
    with open(stem.with_suffix(".md"), "a") as fh:
        fh.write("\n" + scale_note(args.task, args.steps, args.envs, limit) + "\n")
    with open(stem.parent / (stem.name + "_runs.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["algo", "seed", "kappa", "episodes_last_10pct", "return", "cost", "violation_rate", "lambda0",
                    "nu0"])
        for algo, rec in summary["algos"].items():
            for seed, s in zip(rec["seeds"], rec["stats"]):
                w.writerow([algo, seed, s["kappa"], s["episodes"], s["return"], s["cost"], s["violation"],
                            s["coef"].get("lambda0", ""), s["coef"].get("nu0", "")])
    stem.with_suffix(".json").write_text(json.dumps(
        {"task": args.task, "steps": args.steps, "envs": args.envs, "limit": limit, "command": command,
         "bin_edges": summary["edges"].tolist(), "missing": missing,
         "algos": {a: {"seeds": r["seeds"], "stats": r["stats"],
                       "return_curve_mean": curve_mean(r["ret"]).tolist(),
                       "cost_curve_mean": curve_mean(r["cost"]).tolist()}
                   for a, r in summary["algos"].items()}}, indent=1))
    return stem


def main(argv: list[str] | None = None) -> int:
    p = sweep_parser(__doc__, list(ALGOS), seeds=3, steps=1_000_000, envs=16, jobs=1,
                     jobs_help="runs at once (one 2-agent run uses three processes)")
    p.add_argument("--task", default="safe-velocity-halfcheetah-2x3")
    p.add_argument("--tag", default="", help="suffix of the result files (e.g. smoke)")
    args, algos = parse_sweep(p, argv)
    try:
        limit, _graph = task_facts(args.task)
    except ValueError as err:
        p.error(str(err))
    cells = make_cells(args.task, algos, args.seeds, args.steps, args.envs)
    t0, failure = time.monotonic(), None
    if not args.report_only:
        try:
            run_cells(cells, GROUP, args.jobs, record=run_record(limit))
        except RuntimeError as err:  # write what finished, then say what did not
            failure = err
    return print_results([write_results(args, cells, limit, None if args.report_only else time.monotonic() - t0)],
                         failure)


if __name__ == "__main__":
    raise SystemExit(main())
