"""Markdown tables of a suite result (bench/suite.py), with each goal of issue 8 checked where
its cell was measured, and of a floor result (bench/floor.py)."""
from __future__ import annotations

from typing import Any, Callable

GOALS = {
    "ratio": "distributed ≥ 0.5× in-process at N = 6, κ = 1, E ≥ 8",
    "training": "training ≥ 4,000 samples/s distributed on safe-velocity-halfcheetah-2x3 and ≥ 2,500 on -6x1, "
                "distributed ≥ 0.8× in-process (issue 13 item 5)",
    "rss": "≤ 250 MB RSS per agent process",
    "wire": "wire bytes ≤ 1.1× the payload floor",
}

# distributed training samples/s per task (issue 13 item 5; bench/training.py TRAIN_TASKS)
TRAINING_GOALS = {"safe-velocity-halfcheetah-2x3": 4000, "safe-velocity-halfcheetah-6x1": 2500}

#: issue 16's two goals: khop ≥ 0.8× the lean loop with compute, ≥ 1.0× khop in-process (floor tables)
GOAL_RATIOS = ("khop/lean-compute", "khop/khop-inprocess")


def _f(v: Any, fmt: str = ",.0f") -> str:
    return "–" if v is None or v != v else format(v, fmt)


def _loads(values: list[float] | float) -> str:
    values = values if isinstance(values, list) else [values]
    return f"{min(values):.1f}–{max(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✅" if ok else " ❌")


def table_a(rows: list[dict]) -> list[str]:
    out = ["### (a) env steps/s, distributed vs in-process (acting, no updates)", "",
           "| family | task | N | κ | E | distributed | in-process | ratio (A/B pairs) | CPU µs/step dist / inproc | load |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        goal = r["n_agents"] == 6 and r["kappa"] == 1 and r["envs"] >= 8 and r["ratio"] is not None
        pairs = ", ".join(f"{x:.2f}" for x in r["ratios"])
        out.append(f"| {r['family']} | {r['task']} | {r['n_agents']} | {r['kappa']} | {r['envs']} | "
                   f"{_f(r['distributed_steps_per_s'])} | {_f(r['inprocess_steps_per_s'])} | "
                   f"**{_f(r['ratio'], '.2f')}**{_mark(r['ratio'] >= 0.5) if goal else ''} ({pairs}) | "
                   f"{_f(r['distributed_cpu_us_per_step'])} / {_f(r['inprocess_cpu_us_per_step'])} | "
                   f"{_loads(r['load_1m'])} |")
    return out


def table_b(rows: list[dict] | dict) -> list[str]:
    rows = rows if isinstance(rows, list) else [rows]  # suites before issue 13 measured one task
    out = ["### (b) training samples/s, updates included", "",
           "| task | algo | κ | E | updates | distributed | in-process | ratio | CPU-s/1k samples dist / inproc "
           "| projected dist (2 cores) / inproc (1 core) | RSS/agent max | load |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        goal = TRAINING_GOALS.get(r["task"])
        ok = None if goal is None else r["distributed_samples_per_s"] >= goal
        cpu = (f"{_f(r.get('distributed_cpu_s_per_1k'), '.3f')} / {_f(r.get('inprocess_cpu_s_per_1k'), '.3f')}")
        proj = (f"{_f(r.get('distributed_projected_samples_per_s'))} / "
                f"{_f(r.get('inprocess_projected_samples_per_s'))}")
        out.append(f"| {r['task']} | {r['algo']} | {r['kappa']} | {r['envs']} | {r['updates']} | "
                   f"**{_f(r['distributed_samples_per_s'])}**{_mark(ok)} | {_f(r['inprocess_samples_per_s'])} | "
                   f"{_f(r['ratio'], '.2f')}{_mark(None if r['ratio'] is None else r['ratio'] >= 0.8)} | {cpu} | "
                   f"{proj} | {_f(r['rss_mb_max'])} MB | {_loads(r['load_1m'])} |")
    out += ["", "Projected: 2 cores / (CPU-s per sample) for the distributed run and 1 core / (CPU-s per sample) "
            "for the one in-process process; a projection from the CPU measured under load, not a measured rate."]
    return out


def table_c(rows: list[dict]) -> list[str]:
    out = ["### (c) scaling on a ring (networked MDP, dpo, κ = 1, E = 16, one update)", "",
           "| N | task | env steps/s | CPU µs/step | start-up s | RSS/agent mean | RSS/agent max | HWM max "
           "| PSS max | USS max | load |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            out.append(f"| {r['n_agents']} | {r['task']} | skipped: {r['skipped']} | | | | | | | | |")
            continue
        rss = r["rss_mb_max"]
        out.append(f"| {r['n_agents']} | {r['task']} | {_f(r['steps_per_s'])} | {_f(r['cpu_us_per_step'])} | "
                   f"{_f(r['startup_s'], '.0f')} | {_f(r['rss_mb_mean'])} MB | "
                   f"**{_f(rss)} MB**{_mark(rss <= 250 if rss else None)} | {_f(r['hwm_mb_max'])} MB | "
                   f"{_f(r.get('pss_mb_max'))} MB | {_f(r.get('uss_mb_max'))} MB | "
                   f"{_loads(r['load_1m'])} |")
    return out


def table_d(rows: list[dict]) -> list[str]:
    out = ["### (d) wire bytes per agent per env step against the payload floor", "",
           "| task | topology | κ | E | wire bytes | payload floor | ratio | load |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["ratio"]
        out.append(f"| {r['task']} | {r['topology']} | {r['kappa']} | {r['envs']} | "
                   f"{_f(r['bytes_per_agent_step'], ',.1f')} | {_f(r['floor_bytes_per_agent_step'], ',.1f')} | "
                   f"**{_f(ratio, '.3f')}**{_mark(ratio <= 1.1 if ratio else None)} | {_loads(r['load_1m'])} |")
    return out


def render(out: dict[str, Any]) -> str:
    lines = [f"## Benchmark suite{' (--quick)' if out['quick'] else ''}, {out['started']}", "",
             f"{out['code_version']}; {out['cpus']} CPUs (shared); load average {out['load_1m_start']:.1f} at the "
             f"start, {out['load_1m_end']:.1f} at the end; {out['seconds']:.0f} s. Goals: "
             + "; ".join(GOALS.values()) + ".", ""]
    for key, fn in (("a", table_a), ("b", table_b), ("c", table_c), ("d", table_d)):
        if key in out:
            lines += fn(out[key]) + [""]
    return "\n".join(lines)


def _columns(rows: list[dict], of_row: Callable[[dict], list[str]]) -> list[str]:
    """The union of each row's names, in order of first appearance (older results have fewer)."""
    return list(dict.fromkeys(name for r in rows for name in of_row(r)))


def table_floor(rows: list[dict]) -> list[str]:
    """Two tables: each variant's rate and CPU, then the ratios (median of the rounds' ratios; the
    rounds' own for the two goal ratios)."""
    variants = _columns(rows, lambda r: [k for k, v in r.items() if isinstance(v, dict) and "steps_per_s" in v])
    ratios = _columns(rows, lambda r: list(r["ratios"]))
    out = ["### khop acting against the lean loop (bench/floor.py), ring: env steps/s (CPU µs per env step)", "",
           "| task | N | κ | E | " + " | ".join(variants) + " | load |",
           "|---|---|---|---|" + "---|" * (len(variants) + 1)]
    for r in rows:
        cells = [f"{_f(r[v]['steps_per_s'])} ({_f(r[v]['cpu_us_per_step'])})" if v in r else "–" for v in variants]
        out.append(f"| {r['task']} | {r['n_agents']} | {r['kappa']} | {r['envs']} | " + " | ".join(cells)
                   + f" | {_loads(r['load_1m'])} |")
    if not ratios:
        return out
    out += ["", "| task | N | κ | E | " + " | ".join(ratios) + " |", "|---|---|---|---|" + "---|" * len(ratios)]
    for r in rows:
        cells = []
        for name in ratios:
            got = r["ratios"].get(name, {})
            cell = _f(got.get("median"), ".2f")
            if name in GOAL_RATIOS and got.get("per_round"):
                cell = f"**{cell}** ({', '.join(f'{x:.2f}' for x in got['per_round'])})"
            cells.append(cell)
        out.append(f"| {r['task']} | {r['n_agents']} | {r['kappa']} | {r['envs']} | " + " | ".join(cells) + " |")
    return out


def render_floor(out: dict[str, Any]) -> str:
    lines = [f"## The floor{' (--quick)' if out['quick'] else ''}, {out['started']}", "",
             f"{out['code_version']}; {out['cpus']} CPUs (shared); load average {out['load_1m_start']:.1f} at the "
             f"start, {out['load_1m_end']:.1f} at the end; {out['seconds']:.0f} s; {out['seconds_per_run']:g} s "
             "timed per run; medians over rounds, ratios the median of each round's ratio.", ""]
    lines += table_floor(out["cells"])
    failed = [f for r in out["cells"] for f in r["failed"]]
    if failed:
        lines += ["", f"Failed runs: {failed}"]
    return "\n".join(lines) + "\n"
