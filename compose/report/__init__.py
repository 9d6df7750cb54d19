"""End-of-run report: turns a run directory's JSONL logs into summary.md plus four PNG plots.

Reading (logs.py) → numbers (summary.py) → Markdown (markdown.py) and plots (plots.py); this
module only ties them together.
"""
from __future__ import annotations

from pathlib import Path

from .logs import load_agent_metrics, load_episodes, read_config, read_jsonl
from .markdown import render_summary
from .plots import plot_coefficients, plot_comm, plot_cost, plot_reward
from .references import reference_lines
from .summary import summarize

__all__ = ["load_agent_metrics", "load_episodes", "read_config", "read_jsonl", "summarize", "write_report"]


def write_report(run_dir: Path | str) -> Path:
    """Write DIR/report/{summary.md, reward.png, cost.png, comm.png, coefficients.png}."""
    run_dir = Path(run_dir)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    s = summarize(run_dir)
    cfg = s["config"]
    episodes = load_episodes(run_dir)
    metrics = load_agent_metrics(run_dir)
    lines = reference_lines(cfg)
    plot_reward(cfg, episodes, out / "reward.png", lines["return"])
    plot_cost(cfg, episodes, out / "cost.png", lines["cost"])
    plot_comm(cfg, metrics, s, out / "comm.png")
    plot_coefficients(cfg, metrics, out / "coefficients.png")
    (out / "summary.md").write_text(render_summary(s), encoding="utf-8")
    return out
