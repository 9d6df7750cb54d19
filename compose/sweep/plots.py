"""The sweep's figures: the return/cost-vs-bytes frontier and learning curves per κ."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from .spec import Cell, budget_label


def _panel_keys(groups: list[dict]) -> list[tuple[str, str]]:
    return sorted({(g["task"], g["algo"]) for g in groups})


def plot_pareto(groups: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    panels = _panel_keys(groups) or [("", "")]
    fig = Figure(figsize=(6 * len(panels), 8), dpi=100, layout="constrained")
    axes = fig.subplots(2, len(panels), squeeze=False)
    for col, (task, algo) in enumerate(panels):
        gs = [g for g in groups if (g["task"], g["algo"]) == (task, algo) and g["final_return"] is not None
              and g["bytes_per_agent_step"] is not None]
        ax_r, ax_c = axes[0][col], axes[1][col]
        for ax, key, label in ((ax_r, "final_return", "final return"), (ax_c, "final_cost", "final cost")):
            ax.set_title(f"{task} / {algo}" if ax is ax_r else "")
            ax.set_xlabel("bytes sent per agent per env step")
            ax.set_ylabel(label)
            ax.set_xscale("symlog", linthresh=10)
            ax.grid(alpha=0.3)
            for kappa in sorted({g["kappa"] for g in gs}):
                pts = [g for g in gs if g["kappa"] == kappa and g[key] is not None]
                ax.errorbar([g["bytes_per_agent_step"] for g in pts], [g[key] for g in pts],
                            yerr=[g[key + "_std"] or 0 for g in pts], fmt="o", capsize=3, label=f"κ = {kappa}")
                for g in pts:
                    ax.annotate(f"{g['budget']}" + ("" if g["relay"] == "sync" else f" {g['relay']}"),
                                (g["bytes_per_agent_step"], g[key]), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
        front = sorted((g for g in gs if g["pareto"]), key=lambda g: g["bytes_per_agent_step"])
        if front:
            ax_r.plot([g["bytes_per_agent_step"] for g in front], [g["final_return"] for g in front], "k--", lw=1,
                      label="Pareto frontier")
        limits = {g["cost_limit"] for g in gs if g.get("cost_limit") is not None}
        for lim in limits:
            ax_c.axhline(lim, color="red", ls="--", lw=1, label="cost limit")
        for ax in (ax_r, ax_c):
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.savefig(path)


def _curve(run_dir: Path, grid: np.ndarray, key: str) -> np.ndarray:
    """Episode metric averaged within each bin of env steps (NaN where no episode ended)."""
    from ..report.logs import load_episodes, num
    from ..report.summary import episode_cost

    eps = load_episodes(run_dir)
    get = (lambda e: num(e.get("episode_return"))) if key == "return" else episode_cost
    pts = [(float(e["env_step"]), get(e)) for e in eps]
    pts = [(x, y) for x, y in pts if y is not None]
    out = np.full(len(grid) - 1, np.nan)
    if not pts:
        return out
    x, y = map(np.asarray, zip(*pts))
    idx = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, len(grid) - 2)
    for b in range(len(grid) - 1):
        sel = y[idx == b]
        if len(sel):
            out[b] = sel.mean()
    return out


def plot_curves(out_dir: Path, cells: list[Cell], rows: list[dict], path: Path, bins: int = 25) -> None:
    """Learning curves per κ: one column per (task, algo, budget), rows return and cost, lines per κ
    (and relay mode when several), mean over finished seeds."""
    from matplotlib.figure import Figure

    finished = {r["cell"] for r in rows if r.get("status") == "finished"}
    done = [c for c in cells if c.name in finished]
    columns = sorted({(c.axes["task"], c.axes["algo"], budget_label(c.axes["comm_budget"])) for c in done},
                     key=lambda k: (k[0], k[1], math.inf if k[2] == "none" else float(k[2])))
    fig = Figure(figsize=(4.5 * max(1, len(columns)), 7), dpi=100, layout="constrained")
    axes = fig.subplots(2, max(1, len(columns)), squeeze=False)
    relays = {c.axes["relay"] for c in done}
    for col, (task, algo, budget) in enumerate(columns):
        mine = [c for c in done if (c.axes["task"], c.axes["algo"]) == (task, algo)
                and budget_label(c.axes["comm_budget"]) == budget]
        steps = max(c.axes["steps"] for c in mine)
        grid = np.linspace(0, steps, bins + 1)
        centres = (grid[:-1] + grid[1:]) / 2
        for row, key in enumerate(("return", "cost")):
            ax = axes[row][col]
            ax.set_title(f"{task} / {algo} / budget {budget}" if row == 0 else "", fontsize=9)
            ax.set_xlabel("env step")
            ax.set_ylabel(f"episode {key}")
            ax.grid(alpha=0.3)
            for kappa, relay in sorted({(c.axes["kappa"], c.axes["relay"]) for c in mine}):
                curves = [_curve(out_dir / "runs" / c.name, grid, key) for c in mine
                          if (c.axes["kappa"], c.axes["relay"]) == (kappa, relay)]
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # bins where no seed finished an episode
                    mean = np.nanmean(np.vstack(curves), axis=0) if curves else np.array([])
                ok = np.isfinite(mean) if len(mean) else np.zeros(0, bool)
                if ok.any():  # bins where no episode ended are skipped, not drawn as gaps
                    label = f"κ = {kappa}" + (f" ({relay})" if len(relays) > 1 else "")
                    ax.plot(centres[ok], mean[ok], lw=1.5, marker="o" if ok.sum() <= 12 else None, ms=4,
                            label=label)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    if not columns:
        axes[0][0].text(0.5, 0.5, "no finished cells", ha="center", va="center", transform=axes[0][0].transAxes)
    fig.savefig(path)

