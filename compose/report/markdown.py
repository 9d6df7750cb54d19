"""summary.md: a summarize() dict rendered as Markdown tables."""
from __future__ import annotations

import json
from typing import Any

from .logs import num

PLOT_NAMES = ("reward.png", "cost.png", "comm.png", "coefficients.png")


def fmt_num(x: Any) -> str:
    """Returns/costs: two decimals, scientific for very large/small, 'n/a' for missing."""
    v = num(x)
    if v is None:
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.3e}"
    return f"{v:,.2f}"


def fmt_pct(x: Any) -> str:
    """A share as a percentage with one decimal ('n/a' for missing)."""
    v = num(x)
    return "n/a" if v is None else f"{100 * v:.1f}%"


def fmt_bytes(x: Any) -> str:
    """Human-readable size, with the exact count so numbers stay greppable."""
    v = num(x)
    if v is None:
        return "n/a"
    size, unit = v, "B"
    for u in ("KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024:
            break
        size, unit = size / 1024, u
    return f"{int(v):,} B" if unit == "B" else f"{size:.2f} {unit} ({int(v):,} B)"


def fmt_duration(s: Any) -> str:
    v = num(s)
    if v is None:
        return "n/a"
    v = int(round(v))
    h, rem = divmod(v, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def cell(v: Any) -> str:
    """A config value rendered safely inside a Markdown table cell."""
    if isinstance(v, float):
        s = f"{v:g}"
    elif isinstance(v, (list, tuple)):
        s = ", ".join(cell(x) for x in v) if v else "(none)"
    elif isinstance(v, dict):
        s = json.dumps(v, sort_keys=True)
    else:
        s = str(v)
    return s.replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def title(cfg: dict) -> str:
    return (
        f"{cfg.get('task', '?')} / {cfg.get('algo', '?')} / "
        f"κ={cfg.get('kappa', '?')} / seed={cfg.get('seed', '?')}"
    )


# --------------------------------------------------------------------------- summary.md


def _md_config(cfg: dict) -> list[str]:
    if not cfg:
        return ["_config.json missing or unreadable._", ""]
    lines = ["| key | value |", "|---|---|"]
    lines += [f"| {cell(k)} | `{cell(v)}` |" for k, v in cfg.items()]
    return lines + [""]


def _md_episodes(s: dict) -> list[str]:
    if not s["episodes"]:
        return ["_No finished episodes were recorded._", ""]
    q = s["quarter_size"]
    wins = s.get("win_rate") is not None  # a task that says who won (SMAX): the share of episodes won

    def row(label: str, ret: str, cost: str, win: str) -> str:
        return f"| {label} | {fmt_num(s[ret])} | {fmt_num(s[cost])} |" + (f" {fmt_pct(s[win])} |" if wins else "")
    return [
        f"- Finished episodes: **{s['episodes']:,}** (quarter = {q:,} episodes)",
        f"- Mean episode length: {fmt_num(s['mean_episode_length'])}",
        "",
        "| | return | cost |" + (" win rate |" if wins else ""),
        "|---|---|---|" + ("---|" if wins else ""),
        row("first quarter", "first_quarter_return", "first_quarter_cost", "first_quarter_win_rate"),
        row("last quarter", "last_quarter_return", "last_quarter_cost", "last_quarter_win_rate"),
        row("all episodes", "mean_return", "mean_cost", "win_rate"),
        "",
        f"- Best moving-average return (window {s['ma_window']}): **{fmt_num(s['best_ma_return'])}**",
        "",
    ]


def _md_agents(s: dict) -> list[str]:
    lines: list[str] = []
    if s["missing_agents"]:
        lines += [f"_No directory for agent(s): {', '.join(map(str, s['missing_agents']))}._", ""]
    if not s["agents"]:
        return lines + ["_No agent metrics were recorded._", ""]
    lines += [
        "| agent | updates | bytes sent | bytes sent / env step | bytes received | msgs sent |",
        "|---|---|---|---|---|---|",
    ]
    for a in s["agents"]:
        bps = s["bytes_per_step"][a]
        lines.append(
            f"| {a} | {s['updates_per_agent'][a]:,} | {fmt_bytes(s['bytes_total'][a])} | "
            f"{'n/a' if bps is None else f'{bps:,.1f}'} | {fmt_bytes(s['bytes_received_total'][a])} | "
            f"{fmt_num(s['msgs_sent_total'][a])} |"
        )
    return lines + [""]


def _md_comm(s: dict) -> list[str]:
    """Relay mode, budget plan, bytes per agent-step by phase, losses and presence."""
    cfg = s["config"]
    plan = cfg.get("comm_plan") if isinstance(cfg.get("comm_plan"), dict) else {}
    budget = cfg.get("comm_budget")
    lines = [f"- Relay: {cell(cfg.get('relay', 'sync'))}, κ = {cell(cfg.get('kappa', '?'))}, budget: "
             + (f"{fmt_num(budget)} bytes per agent per env step" if num(budget) is not None else "none")]
    if plan:
        lines.append(f"- Plan: {cell(plan.get('dtype'))} rows, every {cell(plan.get('period'))} step(s), "
                     f"{cell(plan.get('hops'))} of {cell(plan.get('kappa'))} hops; planned at most "
                     f"{fmt_num(plan.get('max_bytes_per_env_step'))} bytes per agent per env step")
    links = {k: cfg.get(k) for k in ("link_delay_ms", "link_jitter_ms", "link_loss", "link_bandwidth_bps")
             if num(cfg.get(k))}
    if links:
        lines.append("- Emulated links: " + ", ".join(f"{k[5:]} {fmt_num(v)}" for k, v in links.items()))
    lines += ["", "| phase | bytes sent per agent per env step |", "|---|---|"]
    for ph, v in s["bytes_per_agent_step_by_phase"].items():
        lines.append(f"| {ph} | {'n/a' if v is None else f'{v:,.1f}'} |")
    total = s["bytes_per_agent_step"]
    lines.append(f"| **all** | **{'n/a' if total is None else f'{total:,.1f}'}** |")
    lines += ["", f"- Messages lost on emulated links: {s['msgs_lost_total']:,}; expected messages missing at "
                  f"a round deadline: {s['round_timeouts_total']:,}; sends refused by the budget: "
                  f"{s['budget_blocked_total']:,}",
              f"- Mean presence of κ-ball origins in the critic input: {fmt_num(s['presence_mean'])}", ""]
    return lines


def _md_events(s: dict) -> list[str]:
    evs = s["agent_events"]
    if not evs and not s["errors"]:
        return ["_No agent up/down events._", ""]
    lines = [f"- agent_down: {s['agent_down']}, agent_up: {s['agent_up']}, agent_rejoin: {s['agent_rejoin']}, "
             f"envserver restarts: {s['server_restarts']}, errors: {s['errors']}", ""]
    if evs:
        lines += ["| env step | event | agent | detail |", "|---|---|---|---|"]
        lines += [
            f"| {fmt_num(e.get('env_step'))} | {cell(e.get('event'))} | {cell(e.get('agent', ''))} "
            f"| {cell(e.get('detail', ''))} |"
            for e in evs[:200]
        ]
        if len(evs) > 200:
            lines.append(f"| … | {len(evs) - 200} more | | |")
        lines.append("")
    return lines


def _pm(stat: Any) -> str:
    """mean ± 95 % half-width of a judge.stats.mean_ci dict."""
    if not isinstance(stat, dict) or num(stat.get("mean")) is None:
        return "n/a"
    ci = num(stat.get("ci95"))
    return fmt_num(stat["mean"]) + (f" ± {fmt_num(ci)}" if ci is not None else "")


def _md_evaluation(s: dict) -> list[str]:
    """`khop eval`'s scores (eval.json), one row per policy mode, and the tabular games' exact J."""
    ev = s.get("evaluation") or {}
    if not ev:
        return ["_Not evaluated; `khop eval RUN_DIR [--deterministic]` scores the learned policy._", ""]
    lines = ["| policy | episodes | return | cost | violation rate | updates | exact J |", "|---|---|---|---|---|---|---|"]
    for mode, r in sorted(ev.items()):
        exact = r.get("exact") or {}
        j = exact.get(f"J_{mode}")
        updates = sorted(set(r.get("updates") or []))
        lines.append(f"| {cell(mode)} | {cell(r.get('episodes'))} | {_pm(r.get('return'))} | {_pm(r.get('cost'))} | "
                     f"{_pm(r.get('violation_rate'))} | {cell(updates)} | {fmt_num(j) if j is not None else 'n/a'} |")
    lines.append("")
    wins = [f"{mode} {_pm(r['win_rate'])}" for mode, r in sorted(ev.items()) if r.get("win_rate")]
    if wins:  # a task that says who won (SMAX)
        lines += [f"- Win rate (share of the evaluation episodes won): {', '.join(wins)}", ""]
    exact = next((r.get("exact") for r in ev.values() if isinstance(r.get("exact"), dict)), None)
    if exact and "optimum" in exact:
        lines += [f"- Exact J by {exact.get('solver', 'the game solver')}: optimum {fmt_num(exact['optimum'])}, "
                  f"uniform random policy {fmt_num(exact['uniform'])}", ""]
    elif exact and "unavailable" in exact:
        lines += [f"- Exact J unavailable: {exact['unavailable']}", ""]
    lines += ["Mean ± 95 % Student-t half-width over the evaluation episodes (`khop eval`, eval.json).", ""]
    return lines


def _md_reference(s: dict) -> list[str]:
    """The cost limits, a tabular game's exact optimum and uniform score, the published readings."""
    cfg, ref = s["config"], s.get("reference") or {}
    lines = []
    names, limits = cfg.get("cost_names") or [], cfg.get("cost_limits") or []
    if limits:
        lines.append("- Cost limit per episode: " + ", ".join(f"{n} ≤ {fmt_num(v)}" for n, v in zip(names, limits))
                     + " (dashed red line in cost.png)")
    exact = ref.get("exact")
    if exact:
        lines.append(f"- Exact optimum **{fmt_num(exact['optimum'])}** and uniform random policy "
                     f"{fmt_num(exact['uniform'])} of this game (lines in reward.png); `khop eval` gives the "
                     "learned policy's exact J")
    pub = ref.get("published") or {}
    if pub:
        from .references import KHOP_ALGO, PUBLISHED_SOURCE

        mine = KHOP_ALGO.get(str(cfg.get("algo")))
        lines += [f"- Published: {PUBLISHED_SOURCE}; this run: {fmt_num(cfg.get('steps'))} env steps"
                  + ("; its algorithm's reading is drawn in reward.png and cost.png" if mine else ""), "",
                  "| algorithm | episode cost | episode reward |", "|---|---|---|"]
        for algo, (cost, reward) in pub.items():
            name = f"**{algo}** (this run's algorithm)" if algo == mine else algo
            lines.append(f"| {name} | ≈ {cost:g} | ≈ {reward:g} |")
    return (lines or ["_No cost limit, exact optimum or published reading for this task._"]) + [""]


def _md_video(s: dict) -> list[str]:
    """The still and what `khop render` made."""
    r = s.get("render") or {}
    if not r:
        return ["_No video; `khop render RUN_DIR` films the learned policy._", ""]
    eps = ", ".join(f"return {fmt_num(e.get('return'))}" for e in r.get("episodes") or []) or "no episode finished"
    return ["![still from the video](still.png)", "",
            f"- {cell(r.get('videos'))}: {r.get('frames')} frames of {r.get('width')}×{r.get('height')} at "
            f"{fmt_num(r.get('fps'))} frames/s, camera {cell(r.get('camera'))}, env seed {r.get('env_seed')}, "
            f"checkpoint updates {cell(sorted(set(r.get('updates') or [])))} ({eps})", ""]


def render_summary(s: dict) -> str:
    """The Markdown page for a summarize() dict."""
    cfg = s["config"]
    total = s["total_steps"]
    progress = f"{s['last_env_step']:,}" + (f" / {total:,}" if isinstance(total, int) else "")
    lines = [f"# Run report: {title(cfg)}", ""]
    if s.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {w}" for w in s["warnings"]] + [""]
    lines += ["## Config", ""] + _md_config(cfg)
    lines += [
        "## Run",
        "",
        f"- Env steps reached: {progress}",
        f"- Wall time: {fmt_duration(s['wall_time_s'])}",
        f"- Throughput: {fmt_num(s['steps_per_s'])} env steps/s",
        "",
        "## Episodes",
        "",
    ]
    lines += _md_episodes(s) + ["## What to compare with", ""] + _md_reference(s) + ["## Agents", ""] + _md_agents(s) + ["## Communication", ""] + _md_comm(s)
    lines += ["## Evaluation", ""] + _md_evaluation(s) + ["## Video", ""] + _md_video(s)
    lines += ["## Events", ""] + _md_events(s) + ["## Plots", ""]
    lines += [f"![{n[:-4]}]({n})" for n in PLOT_NAMES] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots

