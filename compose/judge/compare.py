"""`khop compare RUN_DIR... [-o DIR]`: runs side by side, seeds of one configuration pooled.

Runs whose config.json agree on everything that shapes learning (:data:`GROUP_KEYS`: task,
algorithm, graph, κ, relay, budget, links, hyperparameters, env copies) and differ only in seed,
step budget or how they were launched are one group; a group is labelled by the keys in which the
groups differ. Per group, over its seeds:

* return.png, cost.png, bytes.png — the episode return, the episode cost (cost limits drawn) and
  the bytes each agent sent per env step, each run binned on a common grid of env steps, the
  group's mean drawn with a band of the 95 % Student-t interval of the mean over seeds (no band
  for a single seed; bins where fewer seeds have data use those that do). Tabular games get their
  optimum and uniform-policy score as lines.
* compare.md — one row per group: final return and cost (each run's last-quarter mean, as `khop
  report`; mean ± 95 % interval over seeds), bytes per agent-step, and `khop eval`'s scores where
  the runs were evaluated; compare.csv — the same per run.
"""
from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .stats import mean_ci
from .team import JudgeError

# what makes two runs the same configuration (seed, steps, launch mode and supervision do not)
GROUP_KEYS = ("task", "algo", "topology", "kappa", "envs", "overrides", "relay", "comm_budget", "budget_max_period",
              "link_delay_ms", "link_jitter_ms", "link_loss", "link_bandwidth_bps", "actor_mask", "actor_input")
BINS = 30  # points per curve: enough to see shape, few enough that each bin holds several episodes
METRICS = ("return", "cost", "bytes")


@dataclass
class Run:
    dir: Path
    cfg: dict[str, Any]
    summary: dict[str, Any]
    episodes: list[dict]
    metrics: dict[Any, list[dict]]


@dataclass
class Group:
    key: tuple
    runs: list[Run] = field(default_factory=list)
    label: str = ""


def load_runs(dirs: list[Path]) -> list[Run]:
    from ..report import load_agent_metrics, load_episodes, summarize

    runs = []
    for d in dirs:
        if not (Path(d) / "config.json").is_file():
            raise JudgeError(f"{d} is not a run directory (no config.json)")
        s = summarize(d)
        runs.append(Run(Path(d), s["config"], s, load_episodes(d), load_agent_metrics(d)))
    return runs


def group_runs(runs: list[Run]) -> list[Group]:
    """Groups in first-seen order, each labelled by the keys that differ between groups."""
    groups: dict[tuple, Group] = {}
    for r in runs:
        key = tuple(_hashable(r.cfg.get(k)) for k in GROUP_KEYS)
        groups.setdefault(key, Group(key)).runs.append(r)
    out = list(groups.values())
    differ = [i for i, k in enumerate(GROUP_KEYS) if len({g.key[i] for g in out}) > 1]
    for g in out:
        parts = [f"{GROUP_KEYS[i]}={_show(g.key[i])}" for i in differ if GROUP_KEYS[i] != "algo"]
        algo = str(g.runs[0].cfg.get("algo", "?"))
        g.label = " ".join([algo] + parts) if parts or len(out) == 1 else algo
    return out


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(map(str, v)) or "none"
    return "none" if v is None else str(v)


# --------------------------------------------------------------------------- curves


def binned(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Mean of y within each bin of ``grid`` (NaN for an empty bin); x on the bins' right edges inclusive."""
    out = np.full(len(grid) - 1, np.nan)
    if len(x):
        idx = np.clip(np.searchsorted(grid, x, side="left") - 1, 0, len(grid) - 2)
        sums, counts = np.bincount(idx, y, len(grid) - 1), np.bincount(idx, minlength=len(grid) - 1)
        out[counts > 0] = sums[counts > 0] / counts[counts > 0]
    return out


def run_curve(run: Run, metric: str, grid: np.ndarray) -> np.ndarray:
    """One run's metric binned over env steps: episode return or cost, or bytes sent per agent per env step."""
    from ..report.logs import num
    from ..report.plots import comm_rate
    from ..report.summary import episode_cost

    if metric == "bytes":
        per_agent = [binned(*comm_rate(rows), grid) for rows in run.metrics.values()]
        return _nanmean(per_agent, len(grid) - 1)
    get = (lambda e: num(e.get("episode_return"))) if metric == "return" else episode_cost
    pts = [(float(e["env_step"]), get(e)) for e in run.episodes]
    pts = [(a, b) for a, b in pts if b is not None]
    x, y = (np.asarray(v, dtype=float) for v in zip(*pts)) if pts else (np.empty(0), np.empty(0))
    return binned(x, y, grid)


def _nanmean(curves: list[np.ndarray], n: int) -> np.ndarray:
    if not curves:
        return np.full(n, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins stay NaN
        return np.nanmean(np.vstack(curves), axis=0)


def group_band(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds and the 95 % half-width per bin (0 where one seed has data, NaN where none)."""
    stack = np.vstack(curves)
    stats = [mean_ci(col[np.isfinite(col)]) for col in stack.T]
    mean = np.array([np.nan if s["mean"] is None else s["mean"] for s in stats])
    half = np.array([0.0 if s["ci95"] is None else s["ci95"] for s in stats])
    return mean, half


def plot_metric(groups: list[Group], metric: str, grid: np.ndarray, path: Path) -> None:
    from matplotlib.figure import Figure

    ylabel = {"return": "episode return", "cost": "episode cost", "bytes": "bytes sent per agent per env step"}[metric]
    fig = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlabel("env step (summed over parallel envs)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    centres = (grid[:-1] + grid[1:]) / 2
    for k, g in enumerate(groups):
        mean, half = group_band([run_curve(r, metric, grid) for r in g.runs])
        ok = np.isfinite(mean)
        if not ok.any():
            continue
        n = len(g.runs)
        ax.plot(centres[ok], mean[ok], color=f"C{k}", lw=1.6, marker="o" if ok.sum() <= 12 else None, ms=3,
                label=f"{g.label} ({n} seed{'s' if n > 1 else ''})")
        if n > 1:
            ax.fill_between(centres[ok], (mean - half)[ok], (mean + half)[ok], color=f"C{k}", alpha=0.2, lw=0)
    _reference_lines(ax, groups, metric)
    if not ax.get_legend_handles_labels()[0]:
        ax.text(0.5, 0.5, f"no data: no {ylabel}", ha="center", va="center", transform=ax.transAxes, color="gray")
    else:
        ax.legend(fontsize=8, loc="best")
    band = "; band: 95 % interval of the mean over seeds" if any(len(g.runs) > 1 for g in groups) else ""
    ax.set_title(f"{ylabel}{band}", fontsize=10)
    fig.savefig(path)


def _reference_lines(ax: Any, groups: list[Group], metric: str) -> None:
    """Cost limits on the cost plot; a tabular game's optimum and uniform score on the return plot."""
    tasks = sorted({str(r.cfg.get("task")) for g in groups for r in g.runs})
    if metric == "cost":
        for lim in sorted({sum(r.cfg.get("cost_limits") or []) for g in groups for r in g.runs} - {0}):
            ax.axhline(lim, ls="--", color="red", lw=1.2, label=f"cost limit {lim:g}")
    if metric == "return":
        from ..report.references import reference_scores

        for task in tasks:
            ref = reference_scores(task)
            if ref:
                ax.axhline(ref["optimum"], ls="--", color="black", lw=1, label=f"{task} optimum {ref['optimum']:.2f}")
                ax.axhline(ref["uniform"], ls=":", color="gray", lw=1, label=f"{task} uniform policy {ref['uniform']:.2f}")


# --------------------------------------------------------------------------- tables


def run_row(group: Group, run: Run) -> dict[str, Any]:
    s, ev = run.summary, run.summary.get("evaluation") or {}
    row = {"group": group.label, "run_dir": str(run.dir), "seed": run.cfg.get("seed"), "episodes": s["episodes"],
           "env_steps": s["last_env_step"], "final_return": s["last_quarter_return"],
           "final_cost": s["last_quarter_cost"] if run.cfg.get("cost_names") else None, "cost_limit": sum(run.cfg.get("cost_limits") or []) or None,
           "bytes_per_agent_step": s["bytes_per_agent_step"], "wall_time_s": s["wall_time_s"]}
    for mode in ("sampled", "deterministic"):
        rec = ev.get(mode) or {}
        row[f"eval_{mode}_return"] = (rec.get("return") or {}).get("mean")
        row[f"eval_{mode}_cost"] = (rec.get("cost") or {}).get("mean")
        row[f"exact_{mode}"] = (rec.get("exact") or {}).get(f"J_{mode}")
    return row


def _cell(values: list[Any]) -> str:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return "n/a"
    s = mean_ci(vals)
    text = f"{s['mean']:,.2f}" if abs(s["mean"]) < 1e6 else f"{s['mean']:.3e}"
    return text + (f" ± {s['ci95']:,.2f}" if s["ci95"] is not None else "") + (f" (n={len(vals)})"
                                                                               if len(vals) != len(values) else "")


def markdown(groups: list[Group], rows: list[dict]) -> str:
    cols = [("final_return", "final return"), ("final_cost", "final cost"), ("bytes_per_agent_step", "bytes / agent-step")]
    cols += [(f"eval_{m}_return", f"eval return ({m})") for m in ("sampled", "deterministic")
             if any(r[f"eval_{m}_return"] is not None for r in rows)]
    cols += [(f"exact_{m}", f"exact J ({m})") for m in ("sampled", "deterministic")
             if any(r[f"exact_{m}"] is not None for r in rows)]
    lines = ["# Comparison", "", "| config | seeds | cost limit | " + " | ".join(c[1] for c in cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for g in groups:
        mine = [r for r in rows if r["group"] == g.label]
        limits = sorted({r["cost_limit"] for r in mine if r["cost_limit"] is not None})
        lines.append(f"| {g.label} | {len(mine)} | {', '.join(f'{v:g}' for v in limits) or 'none'} | "
                     + " | ".join(_cell([r[c] for r in mine]) for c, _ in cols) + " |")
    lines += ["", "Mean ± 95 % Student-t half-width over the seeds of each configuration. Final return and cost: each "
              "run's mean over its last quarter of episodes (`khop report`); eval: `khop eval` (eval.json), where run.",
              "", "Runs:", ""] + [f"- {r['group']}, seed {r['seed']}: `{r['run_dir']}`" for r in rows]
    lines += ["", "![return](return.png)", "![cost](cost.png)", "![bytes](bytes.png)", ""]
    return "\n".join(lines)


def write_compare(dirs: list[Path], out: Path) -> Path:
    """Write OUT/{compare.md, compare.csv, return.png, cost.png, bytes.png}; return compare.md."""
    if not dirs:
        raise JudgeError("give at least one run directory")
    groups = group_runs(load_runs(dirs))
    out.mkdir(parents=True, exist_ok=True)
    end = max([r.summary["last_env_step"] for g in groups for r in g.runs] + [1])
    grid = np.linspace(0.0, float(end), BINS + 1)
    for metric in METRICS:
        plot_metric(groups, metric, grid, out / f"{metric}.png")
    rows = [run_row(g, r) for g in groups for r in g.runs]
    with open(out / "compare.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "compare.md").write_text(markdown(groups, rows), encoding="utf-8")
    return out / "compare.md"
