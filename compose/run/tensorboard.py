"""Live TensorBoard dashboards of a run: `khop run --tensorboard` and `khop tensorboard RUN_DIR`.

    RUN_DIR/tensorboard/agent-<i>/   every numeric field of every metrics.jsonl row, at its env_step
    RUN_DIR/tensorboard/envserver/   every finished episode (return, cost, each named cost, length)

Why mirror the JSONL logs instead of writing events inside the agent and envserver processes:
those logs are already the run's record, flushed row by row by every process (agents, envserver,
the in-process reference) on this machine or in containers, so following them gives the same
scalars with no TensorBoard (and protobuf) import in every agent process, nothing to keep in step
with the processes' code, and a way to add dashboards to a run that was started without them. A
thread in the `khop run` launcher polls the files every second and flushes what it wrote, so
TensorBoard shows a live run; `khop tensorboard RUN_DIR [--follow]` does the same from outside
(e.g. next to a `khop compose` run's volume). Event files are derived data: each start rewrites
them from the logs, so a resumed run gets one consistent set. Nested values are flattened
(``msgs_sent_update_to/3``; ``episode_costs/<cost name>``); wall times are the rows' own.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

TB_DIR = "tensorboard"
POLL_S = 1.0  # TensorBoard's own reload interval is 5 s; polling faster only costs the launcher


def require_tensorboard() -> None:
    """One line instead of torch's ImportError when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ValueError("--tensorboard needs the tensorboard package: pip install 'khop[tensorboard]'") from None


def scalars(row: dict[str, Any], names: dict[str, list[str]] | None = None, prefix: str = "") -> dict[str, float]:
    """Every numeric leaf of ``row`` by tag (dicts and lists flattened with '/'; list items named by
    ``names[key]`` when given); env_step and time are the axes, not scalars; bools and text are skipped."""
    out: dict[str, float] = {}
    for key, v in row.items():
        tag = f"{prefix}{key}"
        if not prefix and key in ("env_step", "time"):
            continue
        if isinstance(v, dict):
            out.update(scalars(v, None, tag + "/"))
        elif isinstance(v, list):
            labels = (names or {}).get(key) or []
            out.update(scalars({labels[i] if i < len(labels) else str(i): x for i, x in enumerate(v)}, None, tag + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[tag] = float(v)
    return out


class Mirror:
    """Follows a run directory's JSONL logs into TensorBoard event files (module docstring)."""

    def __init__(self, run_dir: Path, poll_s: float = POLL_S) -> None:
        require_tensorboard()
        self.run_dir, self.out, self.poll_s = Path(run_dir), Path(run_dir) / TB_DIR, poll_s
        self._offsets: dict[Path, int] = {}
        self._writers: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        shutil.rmtree(self.out, ignore_errors=True)  # derived data: rebuilt from the logs

    def _sources(self) -> list[tuple[str, Path]]:
        agents = sorted(d for d in self.run_dir.glob("agent-*") if d.is_dir())
        return [("envserver", self.run_dir / "envserver" / "episodes.jsonl")] + \
               [(d.name, d / "metrics.jsonl") for d in agents]

    def _cost_names(self) -> dict[str, list[str]]:
        try:
            return {"episode_costs": list(json.loads((self.run_dir / "config.json").read_text())["cost_names"])}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def _new_rows(self, path: Path) -> list[dict]:
        """Complete lines appended since the last poll (a half-written last line waits for the next)."""
        try:
            with open(path, "rb") as fh:
                fh.seek(self._offsets.get(path, 0))
                data = fh.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self._offsets[path] = self._offsets.get(path, 0) + end
        rows = []
        for line in data[:end].splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a torn line from a killed writer, as the report skips it
            if isinstance(row, dict) and isinstance(row.get("env_step"), (int, float)):
                rows.append(row)
        return rows

    def poll(self) -> int:
        """Write what the logs gained since the last poll; return the rows written."""
        from torch.utils.tensorboard import SummaryWriter

        names, written = self._cost_names(), 0
        for name, path in self._sources():
            rows = self._new_rows(path)
            if not rows:
                continue
            if name not in self._writers:
                self._writers[name] = SummaryWriter(str(self.out / name))
            w = self._writers[name]
            for row in rows:
                wall = row.get("time") if isinstance(row.get("time"), (int, float)) else None
                for tag, value in scalars(row, names).items():
                    w.add_scalar(tag, value, int(row["env_step"]), walltime=wall)
            w.flush()
            written += len(rows)
        return written

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def __enter__(self) -> "Mirror":
        self._thread = threading.Thread(target=self._loop, name="tensorboard-mirror", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()  # what the run wrote last
        for w in self._writers.values():
            w.close()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tensorboard", help="write (or keep writing, --follow) a run's TensorBoard event files")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--follow", action="store_true", help="keep following the run's logs until Ctrl-C")


def cmd_tensorboard(args: argparse.Namespace) -> int:
    if not (args.run_dir / "config.json").exists():
        print(f"khop tensorboard: error: {args.run_dir} is not a run directory (no config.json)", file=sys.stderr)
        return 2
    try:
        mirror = Mirror(args.run_dir)
    except ValueError as err:
        print(f"khop tensorboard: error: {err}", file=sys.stderr)
        return 2
    with mirror:
        try:
            while args.follow:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
    print(f"{mirror.out}; view with: tensorboard --logdir {mirror.out}")
    return 0
