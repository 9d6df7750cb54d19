"""The combined sweep report: one CSV row per cell, seeds aggregated with the Pareto flag, Markdown."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .plots import plot_curves, plot_pareto
from .spec import AXES, FIXED, Cell, SweepError, SweepSpec, budget_label


def cell_row(cell: Cell, run_dir: Path) -> dict[str, Any]:
    """One CSV row: the cell's axes, its state and the numbers the frontier is drawn from."""
    from ..report import summarize  # lazy: matplotlib loads only when a report is written

    axes = {k: v for k, v in cell.axes.items() if k != "comm_budget"}
    row: dict[str, Any] = {**axes, "budget": budget_label(cell.axes["comm_budget"]), "cell": cell.name}
    try:
        status = json.loads((run_dir / "run_status.json").read_text()).get("state", "unknown")
    except (OSError, ValueError):
        status = "absent" if not run_dir.exists() else "unfinished"
    row["status"] = status
    if not (run_dir / "config.json").exists():
        return row
    s = summarize(run_dir)
    cfg = s["config"]
    plan = cfg.get("comm_plan") or {}
    limits = cfg.get("cost_limits") or []
    row.update({
        "plan": f"{plan.get('dtype', '?')}/every {plan.get('period', '?')}/{plan.get('hops', '?')} hops" if plan else "",
        "episodes": s["episodes"], "env_steps": s["last_env_step"],
        "final_return": s["last_quarter_return"], "final_cost": s["last_quarter_cost"],
        "cost_limit": sum(limits) if limits else None,
        "bytes_per_agent_step": s["bytes_per_agent_step"],
        **{f"bytes_per_agent_step_{ph}": v for ph, v in s["bytes_per_agent_step_by_phase"].items()},
        "presence_mean": s["presence_mean"], "msgs_lost": s["msgs_lost_total"],
        "wall_time_s": s["wall_time_s"],
    })
    return row


GROUP_AXES = ("task", "algo", "relay", "kappa", "budget", "steps", "envs", "topology")


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals)) if len(vals) > 1 else 0.0


def aggregate(rows: list[dict]) -> list[dict]:
    """Rows grouped over seeds (finished cells only), with the Pareto flag: within a (task, algo,
    steps, envs, topology), no other group sends fewer or equal bytes with a higher or equal
    return, one of them strictly."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("status") == "finished":
            groups.setdefault(tuple(str(r[a]) for a in GROUP_AXES), []).append(r)
    out = []
    for key, rs in groups.items():
        g = dict(zip(GROUP_AXES, (rs[0][a] for a in GROUP_AXES)))
        g["seeds"] = len(rs)
        g["plan"] = rs[0].get("plan", "")
        for name in ("final_return", "final_cost", "bytes_per_agent_step", "presence_mean"):
            g[name], g[name + "_std"] = _mean_std([r.get(name) for r in rs])
        g["cost_limit"] = rs[0].get("cost_limit")
        out.append(g)
    for g in out:
        peers = [h for h in out if all(h[a] == g[a] for a in ("task", "algo", "steps", "envs", "topology"))]
        g["pareto"] = g["final_return"] is not None and g["bytes_per_agent_step"] is not None and not any(
            h is not g and h["final_return"] is not None and h["bytes_per_agent_step"] is not None
            and h["bytes_per_agent_step"] <= g["bytes_per_agent_step"] and h["final_return"] >= g["final_return"]
            and (h["bytes_per_agent_step"] < g["bytes_per_agent_step"] or h["final_return"] > g["final_return"])
            for h in peers)
    out.sort(key=lambda g: (g["task"], g["algo"], str(g["relay"]), g["kappa"],
                            math.inf if g["budget"] == "none" else float(g["budget"])))
    return out


def _fmt(v: Any, std: Any = None, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        s = f"{v:,.{digits}f}"
        return s + (f" ± {std:,.{digits}f}" if std else "")
    return str(v)


def render_markdown(groups: list[dict], rows: list[dict], spec: dict | None) -> str:
    lines = ["# Sweep report", ""]
    if spec:
        axes = ", ".join(f"{a} = {', '.join(str('none' if v is None else v) for v in spec.get(a, []))}"
                         for a in AXES if spec.get(a))
        lines += [f"Grid: {axes}.", ""]
        fixed = {k: spec[k] for k in FIXED if k in spec and spec[k] not in (None, [], 0, 0.0, False)}
        if fixed:
            lines += ["Fixed: " + ", ".join(f"{k} = {v}" for k, v in fixed.items()) + ".", ""]
    states: dict[str, int] = {}
    for r in rows:
        states[r["status"]] = states.get(r["status"], 0) + 1
    lines += ["Cells: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + ".", "",
              "Final return / cost: mean of the last quarter of each run's episodes, then mean ± std over "
              "seeds. Bytes: wire bytes sent per agent per env step (one transition of one env copy). "
              "★ = on the return-vs-bytes Pareto frontier of its task and algorithm.", "",
              "| task | algo | relay | κ | budget | plan | bytes / agent-step | final return | final cost "
              "(limit) | presence | seeds | frontier |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in groups:
        limit = f" ({_fmt(g['cost_limit'], digits=0)})" if g.get("cost_limit") is not None else ""
        lines.append(
            f"| {g['task']} | {g['algo']} | {g['relay']} | {g['kappa']} | {g['budget']} | {g['plan']} | "
            f"{_fmt(g['bytes_per_agent_step'], digits=1)} | {_fmt(g['final_return'], g['final_return_std'])} | "
            f"{_fmt(g['final_cost'], g['final_cost_std'])}{limit} | {_fmt(g['presence_mean'])} | {g['seeds']} | "
            f"{'★' if g['pareto'] else ''} |")
    lines += ["", "![pareto](pareto.png)", "", "![curves](curves.png)", ""]
    return "\n".join(lines)



def write_sweep_report(out_dir: Path, cells: list[Cell] | None = None) -> Path:
    """Write OUT/report/{sweep.csv, sweep.md, pareto.png, curves.png} from whatever has finished."""
    out_dir = Path(out_dir)
    try:
        spec_json = json.loads((out_dir / "sweep.json").read_text())
    except (OSError, ValueError):
        spec_json = None
    if cells is None:
        if spec_json is None:
            raise SweepError(f"{out_dir} is not a sweep directory (no sweep.json)")
        cells = SweepSpec.from_mapping({k: v for k, v in spec_json.items() if k != "out"}).cells()
    report = out_dir / "report"
    report.mkdir(parents=True, exist_ok=True)
    rows = [cell_row(c, out_dir / "runs" / c.name) for c in cells]
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    with open(report / "sweep.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    groups = aggregate(rows)
    (report / "sweep.md").write_text(render_markdown(groups, rows, spec_json), encoding="utf-8")
    plot_pareto(groups, report / "pareto.png")
    plot_curves(out_dir, cells, rows, report / "curves.png")
    return report

