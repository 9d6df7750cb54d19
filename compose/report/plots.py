"""The report's four PNG plots: reward, cost (with limits), communication rate, coefficients."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")  # headless: report generation must work on servers without a display
from matplotlib.colors import to_rgb  # noqa: E402  (after backend selection)
from matplotlib.figure import Figure  # noqa: E402

import numpy as np  # noqa: E402

from .logs import AgentId, num  # noqa: E402
from .markdown import fmt_bytes, title  # noqa: E402
from .summary import episode_cost, ma_window, moving_average  # noqa: E402

COEF_KEYS = ("beta1", "beta2", "nu")  # plus any key starting with "lambda"


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


def _reference(ax: Any, lines: Iterable[tuple[float, str, str]]) -> None:
    """Horizontal reference lines (value, label, style): an exact optimum, a published reading."""
    for value, label, style in lines:
        ax.axhline(value, ls=style, color="black" if style != ":" else "gray", lw=1.1, label=label)


def plot_reward(cfg: dict, episodes: list[dict], path: Path, lines: Iterable[tuple[float, str, str]] = ()) -> None:
    fig, ax = _new_fig(f"Episode return — {title(cfg)}", "episode return")
    x, y = _series(episodes, lambda e: num(e.get("episode_return")))
    if len(x):
        _scatter_ma(ax, x, y, "return")
    else:
        _no_data(ax, "no data: no finished episodes")
    _reference(ax, lines)
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
    return bool(episodes) and all(not episode_cost(e) for e in episodes)  # unknown without data


def _limit_line(ax: Any, limit: Any, color: Any, name: str | None) -> None:
    v = num(limit)
    if v is not None:
        ax.axhline(v, ls="--", color=color, lw=1.2, label="cost limit" + (f" ({name})" if name else ""))


def plot_cost(cfg: dict, episodes: list[dict], path: Path, lines: Iterable[tuple[float, str, str]] = ()) -> None:
    fig, ax = _new_fig(f"Episode cost — {title(cfg)}", "episode cost")
    limits = [v for v in (cfg.get("cost_limits") or []) if num(v) is not None]
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
            x, y = _series(episodes, lambda e, i=i: num(e["episode_costs"][i]))
            c = _scatter_ma(ax, x, y, name) if len(x) else f"C{i}"
            _limit_line(ax, limits[i] if i < len(limits) else None, c, name)
    else:
        x, y = _series(episodes, episode_cost)
        _scatter_ma(ax, x, y, "cost")
        _limit_line(ax, sum(float(v) for v in limits) if limits else None, "red", None)
    if not _task_has_no_costs(cfg, episodes):
        _reference(ax, lines)
    _save(fig, ax, path)


def comm_rate(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Bytes sent per env step between consecutive metric rows (x = the later row's env_step)."""
    pts = [(float(r["env_step"]), num(r.get("bytes_sent"))) for r in rows]
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
    fig, ax = _new_fig(f"Communication — {title(cfg)}", "bytes sent per env step")
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
    fig, ax = _new_fig(f"Coefficients — {title(cfg)}", "coefficient value")
    drawn = False
    for aid, rows in metrics.items():
        for key in coefficient_keys(rows):
            x, y = _series(rows, lambda r, key=key: num(r.get(key)))
            if len(x):
                ax.plot(x, y, lw=1.2, label=f"agent {aid}: {key}")
                drawn = True
    if not drawn:
        _no_data(ax, "no data: no coefficients (beta1, beta2, lambda*, nu) in metrics")
    _save(fig, ax, path)


# --------------------------------------------------------------------------- entry point

