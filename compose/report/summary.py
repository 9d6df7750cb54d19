"""The numbers of a run (episodes, traffic, events, throughput) as one dict: what the report
shows, and what tests, sweeps and benchmarks read."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .logs import AgentId, load_agent_metrics, load_episodes, num, read_config, read_jsonl
from .references import published, reference_scores

MAX_MA_WINDOW = 100


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
    vals = [v for v in (num(x) for x in values) if v is not None]
    return float(np.mean(vals)) if vals else None


def episode_cost(ep: dict) -> float | None:
    """Summed cost of an episode, from episode_cost or else the per-cost list."""
    c = num(ep.get("episode_cost"))
    if c is None and isinstance(ep.get("episode_costs"), list):
        parts = [num(v) for v in ep["episode_costs"]]
        c = sum(p for p in parts if p is not None) if parts else None
    return c


def win_rate(episodes: list[dict]) -> float | None:
    """Share of the episodes won, among those whose row says (SMAX's ``won``); None when none says."""
    won = [e["won"] for e in episodes if isinstance(e.get("won"), bool)]
    return sum(won) / len(won) if won else None


def _episode_stats(episodes: list[dict]) -> dict[str, Any]:
    """Counts, quarter means and best moving-average return."""
    n = len(episodes)
    q = quarter_size(n)
    first, last = episodes[:q], episodes[n - q:] if q else []
    returns = np.array([v for v in (num(e.get("episode_return")) for e in episodes) if v is not None])
    w = ma_window(len(returns))
    ma = moving_average(returns, w)
    return {
        "episodes": n,
        "quarter_size": q,
        "first_quarter_return": _mean(e.get("episode_return") for e in first),
        "last_quarter_return": _mean(e.get("episode_return") for e in last),
        "first_quarter_cost": _mean(episode_cost(e) for e in first),
        "last_quarter_cost": _mean(episode_cost(e) for e in last),
        "mean_return": _mean(e.get("episode_return") for e in episodes),
        "mean_cost": _mean(episode_cost(e) for e in episodes),
        "ma_window": w,
        "best_ma_return": float(ma.max()) if len(ma) else None,
        "mean_episode_length": _mean(e.get("episode_length") for e in episodes),
        "first_quarter_win_rate": win_rate(first),
        "last_quarter_win_rate": win_rate(last),
        "win_rate": win_rate(episodes),
    }


def _last_num(rows: list[dict], key: str) -> float | None:
    """The latest numeric value of a cumulative counter."""
    for r in reversed(rows):
        v = num(r.get(key))
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
        steps = _last_num([x for x in rows if num(x.get("bytes_sent")) is not None], "env_step")
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
    times = [num(r.get("time")) for r in episodes + events]
    times += [num(r.get("time")) for rows in metrics.values() for r in rows]
    times = [t for t in times if t is not None]
    start = num(cfg.get("start_time"))
    if start is not None:
        times.append(start)
    end = num(cfg.get("end_time"))
    if end is not None:
        times.append(end)
    return max(times) - min(times) if len(times) >= 2 else None


def _expected_agents(cfg: dict) -> list[int]:
    n = num(cfg.get("n_agents"))
    return list(range(int(n))) if n is not None and n >= 0 else []


def summarize(run_dir: Path | str) -> dict[str, Any]:
    """All numbers the report shows, as a dict (also handy for tests and benchmarks)."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    episodes = load_episodes(run_dir)
    metrics = load_agent_metrics(run_dir)
    events = read_jsonl(run_dir / "envserver" / "events.jsonl")
    steps = [num(r.get("env_step")) for r in episodes] + [
        num(r.get("env_step")) for rows in metrics.values() for r in rows
    ]
    steps = [s for s in steps if s is not None]
    out: dict[str, Any] = {"run_dir": str(run_dir), "config": cfg}
    out.update(_episode_stats(episodes))
    envs = num(cfg.get("envs"))
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
    out["evaluation"] = read_evaluation(run_dir)
    out["render"] = _read_json(run_dir / "render.json")
    task = str(cfg.get("task", ""))
    out["reference"] = {"exact": reference_scores(task), "published": published(task)}
    out["warnings"] = list(cfg.get("warnings", [])) + _slow_updates(cfg, metrics)
    return out


def _slow_updates(cfg: dict, metrics: dict) -> list[str]:
    """An update longer than the envserver's ACT deadline: the agent misses that step and is marked
    down until its next ACT (it learns inside a step), so the run silently loses steps."""
    deadline = num(cfg.get("deadline_s"))
    worst = {a: max((num(r.get("update_seconds")) or 0.0 for r in rows), default=0.0) for a, rows in metrics.items()}
    slow = {a: w for a, w in worst.items() if deadline and w > deadline}
    if not slow:
        return []
    return [f"updates took up to {max(slow.values()):.1f} s (agents {', '.join(map(str, sorted(slow)))}), longer than "
            f"the envserver's {deadline:g} s deadline: those agents missed a step per slow update (fallback action, "
            "marked down until their next ACT); raise --deadline"]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_evaluation(run_dir: Path) -> dict[str, dict]:
    """`khop eval`'s records by mode ("sampled", "deterministic") from eval.json; {} if none."""
    return {k: v for k, v in _read_json(Path(run_dir) / "eval.json").items() if isinstance(v, dict)}


# --------------------------------------------------------------------------- formatting

