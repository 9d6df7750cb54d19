"""Reading a run directory's logs, tolerant on purpose.

A run may have been killed mid-write (the last JSONL line half written), an agent may never have
started, or no episode may have finished. A report is most wanted exactly when a run went wrong,
so missing or broken data is skipped here and described by the report, never raised.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

AgentId = int | str


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


def num(x: Any) -> float | None:
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
            rows = [r for r in read_jsonl(d / "metrics.jsonl") if num(r.get("env_step")) is not None]
            rows.sort(key=lambda r: r["env_step"])
            out[_agent_key(d.name)] = rows
    return dict(sorted(out.items(), key=lambda kv: _sort_key(kv[0])))


def load_episodes(run_dir: Path) -> list[dict]:
    """Finished episodes with a numeric env_step, in env_step order (stable for ties)."""
    rows = read_jsonl(Path(run_dir) / "envserver" / "episodes.jsonl")
    rows = [r for r in rows if num(r.get("env_step")) is not None]
    rows.sort(key=lambda r: r["env_step"])
    return rows


