"""End-of-run report: turns a run directory's JSONL logs into summary.md plus four PNG plots.

Every reader here is tolerant on purpose: a run may have been killed mid-write (the last
JSONL line half written), an agent may never have started, or no episode may have finished.
A report is most wanted exactly when a run went wrong, so missing data is described in the
report, never raised.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")  # headless: report generation must work on servers without a display
from matplotlib.colors import to_rgb  # noqa: E402  (after backend selection)
from matplotlib.figure import Figure  # noqa: E402

import numpy as np  # noqa: E402

AgentId = int | str
COEF_KEYS = ("beta1", "beta2", "nu")  # plus any key starting with "lambda"
PLOT_NAMES = ("reward.png", "cost.png", "comm.png", "coefficients.png")
MAX_MA_WINDOW = 100


# --------------------------------------------------------------------------- reading


def read_jsonl(path: Path | str) -> list[dict]:
    """All parseable JSON-object lines of `path`; [] if missing, bad/partial lines skipped."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            return list(_parse_lines(fh))
    except OSError:
        return []


def _parse_lines(lines: Iterable[str]) -> Iterable[dict]:
    """Yield dict rows; a killed writer may leave garbage, which we drop silently."""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            yield row


def read_config(run_dir: Path) -> dict:
    """config.json as a dict, or {} if it is missing or unreadable."""
    try:
        cfg = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _num(x: Any) -> float | None:
    """A finite float or None, so a NaN or a string in a log never poisons a mean."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _agent_key(name: str) -> AgentId:
    """'agent-3' -> 3; non-numeric suffixes stay strings."""
    suffix = name[len("agent-"):]
    return int(suffix) if suffix.isdigit() else suffix


def _sort_key(a: AgentId) -> tuple[int, Any]:
    return (0, a) if isinstance(a, int) else (1, str(a))


def load_agent_metrics(run_dir: Path) -> dict[AgentId, list[dict]]:
    """Metric rows per agent directory present, each list sorted by env_step."""
    out: dict[AgentId, list[dict]] = {}
    for d in Path(run_dir).glob("agent-*"):
        if d.is_dir():
            rows = [r for r in read_jsonl(d / "metrics.jsonl") if _num(r.get("env_step")) is not None]
            rows.sort(key=lambda r: r["env_step"])
            out[_agent_key(d.name)] = rows
    return dict(sorted(out.items(), key=lambda kv: _sort_key(kv[0])))


def load_episodes(run_dir: Path) -> list[dict]:
    """Finished episodes with a numeric env_step, in env_step order (stable for ties)."""
    rows = read_jsonl(Path(run_dir) / "envserver" / "episodes.jsonl")
    rows = [r for r in rows if _num(r.get("env_step")) is not None]
    rows.sort(key=lambda r: r["env_step"])
    return rows


# --------------------------------------------------------------------------- numbers


def ma_window(n: int) -> int:
    """Moving-average window adapted to the episode count: ~10% of it, within [1, 100]."""
    return max(1, min(MAX_MA_WINDOW, n // 10))


def moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average, 'valid' part only (len = len(y) - window + 1)."""
    if len(y) < window or window < 1:
        return np.empty(0)
    return np.convolve(y, np.ones(window) / window, mode="valid")


def quarter_size(n: int) -> int:
    """Episodes in a 'quarter': n // 4, but at least one whenever there is an episode."""
    return max(1, n // 4) if n > 0 else 0


def _mean(values: Iterable[Any]) -> float | None:
    vals = [v for v in (_num(x) for x in values) if v is not None]
    return float(np.mean(vals)) if vals else None


def _episode_cost(ep: dict) -> float | None:
    """Summed cost of an episode, from episode_cost or else the per-cost list."""
    c = _num(ep.get("episode_cost"))
    if c is None and isinstance(ep.get("episode_costs"), list):
        parts = [_num(v) for v in ep["episode_costs"]]
        c = sum(p for p in parts if p is not None) if parts else None
    return c


def _episode_stats(episodes: list[dict]) -> dict[str, Any]:
    """Counts, quarter means and best moving-average return."""
    n = len(episodes)
    q = quarter_size(n)
    first, last = episodes[:q], episodes[n - q:] if q else []
    returns = np.array([v for v in (_num(e.get("episode_return")) for e in episodes) if v is not None])
    w = ma_window(len(returns))
    ma = moving_average(returns, w)
    return {
        "episodes": n,
        "quarter_size": q,
        "first_quarter_return": _mean(e.get("episode_return") for e in first),
        "last_quarter_return": _mean(e.get("episode_return") for e in last),
        "first_quarter_cost": _mean(_episode_cost(e) for e in first),
        "last_quarter_cost": _mean(_episode_cost(e) for e in last),
        "mean_return": _mean(e.get("episode_return") for e in episodes),
        "mean_cost": _mean(_episode_cost(e) for e in episodes),
        "ma_window": w,
        "best_ma_return": float(ma.max()) if len(ma) else None,
        "mean_episode_length": _mean(e.get("episode_length") for e in episodes),
    }


def _last_num(rows: list[dict], key: str) -> float | None:
    """The latest numeric value of a cumulative counter."""
    for r in reversed(rows):
        v = _num(r.get(key))
        if v is not None:
            return v
    return None


PHASES = ("rollout", "update", "control")


def _comm_stats(metrics: dict[AgentId, list[dict]], n_envs: int = 0) -> dict[str, Any]:
    """Updates and cumulative traffic per agent. Bytes per env step = bytes sent / env steps over
    which they were sent: the agent's ``exchanges`` counter × E (``n_envs``, from config.json) when
    the metrics carry it (it resets with the byte counters when an agent restarts), else the row's
    env_step."""
    updates, total, recv, msgs, per_step, by_phase = {}, {}, {}, {}, {}, {}
    lost = presence = timeouts = blocked = 0
    presence_vals = []
    for aid, rows in metrics.items():
        updates[aid] = len(rows)
        sent = _last_num(rows, "bytes_sent")
        total[aid] = int(sent) if sent is not None else None
        r = _last_num(rows, "bytes_received")
        recv[aid] = int(r) if r is not None else None
        m = _last_num(rows, "msgs_sent")
        msgs[aid] = int(m) if m is not None else None
        steps = _last_num([x for x in rows if _num(x.get("bytes_sent")) is not None], "env_step")
        exchanges = _last_num(rows, "exchanges")
        if exchanges and n_envs:
            steps = exchanges * n_envs
        per_step[aid] = sent / steps if sent is not None and steps else None
        by_phase[aid] = {}
        for ph in PHASES:
            v = _last_num(rows, f"bytes_sent_{ph}")
            by_phase[aid][ph] = v / steps if v is not None and steps else None
        lost += int(_last_num(rows, "msgs_lost") or 0)
        timeouts += int(_last_num(rows, "round_timeouts") or 0)
        blocked += int(_last_num(rows, "budget_blocked") or 0)
        p = _last_num(rows, "presence_mean")
        if p is not None:
            presence_vals.append(p)
    presence = float(np.mean(presence_vals)) if presence_vals else None
    return {
        "updates_per_agent": updates,
        "bytes_total": total,
        "bytes_received_total": recv,
        "msgs_sent_total": msgs,
        "bytes_per_step": per_step,
        "bytes_per_step_by_phase": by_phase,
        "bytes_per_agent_step": _mean(per_step.values()),
        "bytes_per_agent_step_by_phase": {ph: _mean(v[ph] for v in by_phase.values()) for ph in PHASES},
        "msgs_lost_total": lost,
        "round_timeouts_total": timeouts,
        "budget_blocked_total": blocked,
        "presence_mean": presence,
    }


def _event_stats(events: list[dict]) -> dict[str, Any]:
    """Up/down events and envserver restarts matter for reading a curve (a dip may be a crashed agent)."""
    restarts = [e for e in events if e.get("event") == "server_start" and "resumed" in str(e.get("detail"))]
    updown = [e for e in events if e.get("event") in ("agent_down", "agent_up", "agent_rejoin", "no_agents")
              or e in restarts]
    return {
        "events": events,
        "agent_events": updown,
        "agent_down": sum(e.get("event") == "agent_down" for e in events),
        "agent_up": sum(e.get("event") == "agent_up" for e in events),
        "agent_rejoin": sum(e.get("event") == "agent_rejoin" for e in events),
        "server_restarts": len(restarts),
        "errors": sum(e.get("event") == "error" for e in events),
    }


def _wall_time(cfg: dict, episodes: list[dict], metrics: dict, events: list[dict]) -> float | None:
    """Span between the earliest and latest timestamp seen anywhere (config start_time if given)."""
    times = [_num(r.get("time")) for r in episodes + events]
    times += [_num(r.get("time")) for rows in metrics.values() for r in rows]
    times = [t for t in times if t is not None]
    start = _num(cfg.get("start_time"))
    if start is not None:
        times.append(start)
    end = _num(cfg.get("end_time"))
    if end is not None:
        times.append(end)
    return max(times) - min(times) if len(times) >= 2 else None


def _expected_agents(cfg: dict) -> list[int]:
    n = _num(cfg.get("n_agents"))
    return list(range(int(n))) if n is not None and n >= 0 else []


def summarize(run_dir: Path | str) -> dict[str, Any]:
    """All numbers the report shows, as a dict (also handy for tests and benchmarks)."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    episodes = load_episodes(run_dir)
    metrics = load_agent_metrics(run_dir)
    events = read_jsonl(run_dir / "envserver" / "events.jsonl")
    steps = [_num(r.get("env_step")) for r in episodes] + [
        _num(r.get("env_step")) for rows in metrics.values() for r in rows
    ]
    steps = [s for s in steps if s is not None]
    out: dict[str, Any] = {"run_dir": str(run_dir), "config": cfg}
    out.update(_episode_stats(episodes))
    envs = _num(cfg.get("envs"))
    out.update(_comm_stats(metrics, int(envs) if envs else 0))
    out.update(_event_stats(events))
    out["agents"] = list(metrics)
    out["missing_agents"] = [a for a in _expected_agents(cfg) if a not in metrics]
    out["last_env_step"] = int(max(steps)) if steps else 0
    out["total_steps"] = cfg.get("steps")
    out["wall_time_s"] = _wall_time(cfg, episodes, metrics, events)
    out["steps_per_s"] = (
        out["last_env_step"] / out["wall_time_s"] if out["wall_time_s"] else None
    )
    return out


# --------------------------------------------------------------------------- formatting


def fmt_num(x: Any) -> str:
    """Returns/costs: two decimals, scientific for very large/small, 'n/a' for missing."""
    v = _num(x)
    if v is None:
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.3e}"
    return f"{v:,.2f}"


def fmt_bytes(x: Any) -> str:
    """Human-readable size, with the exact count so numbers stay greppable."""
    v = _num(x)
    if v is None:
        return "n/a"
    size, unit = v, "B"
    for u in ("KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024:
            break
        size, unit = size / 1024, u
    return f"{int(v):,} B" if unit == "B" else f"{size:.2f} {unit} ({int(v):,} B)"


def fmt_duration(s: Any) -> str:
    v = _num(s)
    if v is None:
        return "n/a"
    v = int(round(v))
    h, rem = divmod(v, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def _cell(v: Any) -> str:
    """A config value rendered safely inside a Markdown table cell."""
    if isinstance(v, float):
        s = f"{v:g}"
    elif isinstance(v, (list, tuple)):
        s = ", ".join(_cell(x) for x in v) if v else "(none)"
    elif isinstance(v, dict):
        s = json.dumps(v, sort_keys=True)
    else:
        s = str(v)
    return s.replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _title(cfg: dict) -> str:
    return (
        f"{cfg.get('task', '?')} / {cfg.get('algo', '?')} / "
        f"κ={cfg.get('kappa', '?')} / seed={cfg.get('seed', '?')}"
    )


# --------------------------------------------------------------------------- summary.md


def _md_config(cfg: dict) -> list[str]:
    if not cfg:
        return ["_config.json missing or unreadable._", ""]
    lines = ["| key | value |", "|---|---|"]
    lines += [f"| {_cell(k)} | `{_cell(v)}` |" for k, v in cfg.items()]
    return lines + [""]


def _md_episodes(s: dict) -> list[str]:
    if not s["episodes"]:
        return ["_No finished episodes were recorded._", ""]
    q = s["quarter_size"]
    return [
        f"- Finished episodes: **{s['episodes']:,}** (quarter = {q:,} episodes)",
        f"- Mean episode length: {fmt_num(s['mean_episode_length'])}",
        "",
        "| | return | cost |",
        "|---|---|---|",
        f"| first quarter | {fmt_num(s['first_quarter_return'])} | {fmt_num(s['first_quarter_cost'])} |",
        f"| last quarter | {fmt_num(s['last_quarter_return'])} | {fmt_num(s['last_quarter_cost'])} |",
        f"| all episodes | {fmt_num(s['mean_return'])} | {fmt_num(s['mean_cost'])} |",
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
    lines = [f"- Relay: {_cell(cfg.get('relay', 'sync'))}, κ = {_cell(cfg.get('kappa', '?'))}, budget: "
             + (f"{fmt_num(budget)} bytes per agent per env step" if _num(budget) is not None else "none")]
    if plan:
        lines.append(f"- Plan: {_cell(plan.get('dtype'))} rows, every {_cell(plan.get('period'))} step(s), "
                     f"{_cell(plan.get('hops'))} of {_cell(plan.get('kappa'))} hops; planned at most "
                     f"{fmt_num(plan.get('max_bytes_per_env_step'))} bytes per agent per env step")
    links = {k: cfg.get(k) for k in ("link_delay_ms", "link_jitter_ms", "link_loss", "link_bandwidth_bps")
             if _num(cfg.get(k))}
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
            f"| {fmt_num(e.get('env_step'))} | {_cell(e.get('event'))} | {_cell(e.get('agent', ''))} "
            f"| {_cell(e.get('detail', ''))} |"
            for e in evs[:200]
        ]
        if len(evs) > 200:
            lines.append(f"| … | {len(evs) - 200} more | | |")
        lines.append("")
    return lines


def render_summary(s: dict) -> str:
    """The Markdown page for a summarize() dict."""
    cfg = s["config"]
    total = s["total_steps"]
    progress = f"{s['last_env_step']:,}" + (f" / {total:,}" if isinstance(total, int) else "")
    lines = [f"# Run report: {_title(cfg)}", "", "## Config", ""] + _md_config(cfg)
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
    lines += _md_episodes(s) + ["## Agents", ""] + _md_agents(s) + ["## Communication", ""] + _md_comm(s)
    lines += ["## Events", ""] + _md_events(s) + ["## Plots", ""]
    lines += [f"![{n[:-4]}]({n})" for n in PLOT_NAMES] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")


def _scatter_ma(ax: Any, x: np.ndarray, y: np.ndarray, label: str, color: Any = None) -> Any:
    """Faint raw points plus a moving average; returns the colour used so limits can match."""
    pts = ax.scatter(x, y, s=6, alpha=0.25, color=color, label=f"{label} (episodes)")
    c = color if color is not None else to_rgb(pts.get_facecolor()[0])  # opaque, unlike the dots
    w = ma_window(len(y))
    ma = moving_average(y, w)
    if len(ma):
        ax.plot(x[w - 1:], ma, color=c, lw=1.8, label=f"{label} (moving avg, w={w})")
    return c


def _series(episodes: list[dict], get: Any) -> tuple[np.ndarray, np.ndarray]:
    """(env_step, value) arrays for episodes where `get` yields a finite number."""
    pairs = [(e["env_step"], get(e)) for e in episodes]
    pairs = [(float(s), float(v)) for s, v in pairs if v is not None]
    if not pairs:
        return np.empty(0), np.empty(0)
    x, y = zip(*pairs)
    return np.array(x), np.array(y)


def _new_fig(title: str, ylabel: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel("env step (summed over parallel envs)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig: Figure, ax: Any, path: Path) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.savefig(path)


def plot_reward(cfg: dict, episodes: list[dict], path: Path) -> None:
    fig, ax = _new_fig(f"Episode return — {_title(cfg)}", "episode return")
    x, y = _series(episodes, lambda e: _num(e.get("episode_return")))
    if len(x):
        _scatter_ma(ax, x, y, "return")
    else:
        _no_data(ax, "no data: no finished episodes")
    _save(fig, ax, path)


def _cost_columns(episodes: list[dict]) -> int:
    """Number of per-cost columns if every episode reports the same count, else 0."""
    lens = {len(e["episode_costs"]) if isinstance(e.get("episode_costs"), list) else -1 for e in episodes}
    return lens.pop() if len(lens) == 1 and min(lens) > 0 else 0


def _task_has_no_costs(cfg: dict, episodes: list[dict]) -> bool:
    names, limits = cfg.get("cost_names"), cfg.get("cost_limits")
    if isinstance(names, list) and not names and not limits:
        return True
    if names or limits:
        return False
    return bool(episodes) and all(not _episode_cost(e) for e in episodes)  # unknown without data


def _limit_line(ax: Any, limit: Any, color: Any, name: str | None) -> None:
    v = _num(limit)
    if v is not None:
        ax.axhline(v, ls="--", color=color, lw=1.2, label="cost limit" + (f" ({name})" if name else ""))


def plot_cost(cfg: dict, episodes: list[dict], path: Path) -> None:
    fig, ax = _new_fig(f"Episode cost — {_title(cfg)}", "episode cost")
    limits = [v for v in (cfg.get("cost_limits") or []) if _num(v) is not None]
    names = list(cfg.get("cost_names") or [])
    k = _cost_columns(episodes)
    if _task_has_no_costs(cfg, episodes):
        _no_data(ax, "this task has no costs")
    elif not episodes:
        _no_data(ax, "no data: no finished episodes")
        for i, lim in enumerate(limits):
            _limit_line(ax, lim, "red", names[i] if len(limits) > 1 and i < len(names) else None)
    elif k > 1:
        for i in range(k):
            name = names[i] if i < len(names) else f"cost {i}"
            x, y = _series(episodes, lambda e, i=i: _num(e["episode_costs"][i]))
            c = _scatter_ma(ax, x, y, name) if len(x) else f"C{i}"
            _limit_line(ax, limits[i] if i < len(limits) else None, c, name)
    else:
        x, y = _series(episodes, _episode_cost)
        _scatter_ma(ax, x, y, "cost")
        _limit_line(ax, sum(float(v) for v in limits) if limits else None, "red", None)
    _save(fig, ax, path)


def comm_rate(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Bytes sent per env step between consecutive metric rows (x = the later row's env_step)."""
    pts = [(float(r["env_step"]), _num(r.get("bytes_sent"))) for r in rows]
    pts = [(s, b) for s, b in pts if b is not None]
    xs, ys = [], []
    for (s0, b0), (s1, b1) in zip(pts, pts[1:]):
        if s1 > s0 and b1 >= b0:  # a restarted agent resets its counters: skip that gap
            xs.append(s1)
            ys.append((b1 - b0) / (s1 - s0))
    if not xs and pts and pts[-1][0] > 0:  # one row only: average since start
        xs, ys = [pts[-1][0]], [pts[-1][1] / pts[-1][0]]
    return np.array(xs), np.array(ys)


def plot_comm(cfg: dict, metrics: dict[AgentId, list[dict]], s: dict, path: Path) -> None:
    fig, ax = _new_fig(f"Communication — {_title(cfg)}", "bytes sent per env step")
    drawn = False
    for aid, rows in metrics.items():
        x, y = comm_rate(rows)
        if len(x):
            label = f"agent {aid} (total {fmt_bytes(s['bytes_total'].get(aid))})"
            ax.plot(x, y, marker="." if len(x) < 30 else None, lw=1.2, label=label)
            drawn = True
    if not drawn:
        _no_data(ax, "no data: no communication metrics")
    _save(fig, ax, path)


def coefficient_keys(rows: Iterable[dict]) -> list[str]:
    """Dual/penalty coefficient keys present in metric rows (beta1, beta2, nu, lambda*)."""
    keys: set[str] = set()
    for r in rows:
        keys.update(k for k in r if k in COEF_KEYS or k.startswith("lambda"))
    return sorted(keys)


def plot_coefficients(cfg: dict, metrics: dict[AgentId, list[dict]], path: Path) -> None:
    fig, ax = _new_fig(f"Coefficients — {_title(cfg)}", "coefficient value")
    drawn = False
    for aid, rows in metrics.items():
        for key in coefficient_keys(rows):
            x, y = _series(rows, lambda r, key=key: _num(r.get(key)))
            if len(x):
                ax.plot(x, y, lw=1.2, label=f"agent {aid}: {key}")
                drawn = True
    if not drawn:
        _no_data(ax, "no data: no coefficients (beta1, beta2, lambda*, nu) in metrics")
    _save(fig, ax, path)


# --------------------------------------------------------------------------- entry point


def write_report(run_dir: Path | str) -> Path:
    """Write DIR/report/{summary.md, reward.png, cost.png, comm.png, coefficients.png}."""
    run_dir = Path(run_dir)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    s = summarize(run_dir)
    cfg = s["config"]
    episodes = load_episodes(run_dir)
    metrics = load_agent_metrics(run_dir)
    plot_reward(cfg, episodes, out / "reward.png")
    plot_cost(cfg, episodes, out / "cost.png")
    plot_comm(cfg, metrics, s, out / "comm.png")
    plot_coefficients(cfg, metrics, out / "coefficients.png")
    (out / "summary.md").write_text(render_summary(s), encoding="utf-8")
    return out
