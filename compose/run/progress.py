"""Live progress for `khop run`: a one-line bar plus a cheap tail of the growing episode log.

The launcher polls; both pieces are built so polling costs almost nothing: the bar throttles
its own redraws, and tail_episodes reads only bytes it has not seen before.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

TTY_INTERVAL_S = 0.2  # at most 5 redraws per second on a terminal
PLAIN_INTERVAL_S = 10.0  # log files and pipes get a line every 10 s, not a flood
BAR_WIDTH = 24


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def fmt_eta(seconds: float | None) -> str:
    """'1h02m', '3m05s', '42s', or '--' when unknown."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "--"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


class ProgressBar:
    """One-line progress display; '\\r' redraws on a TTY, throttled plain lines otherwise."""

    def __init__(
        self,
        total_steps: int,
        stream: TextIO | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
    ) -> None:
        self.total = max(1, int(total_steps))
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _is_tty(self.stream) if tty is None else tty
        self.interval = TTY_INTERVAL_S if self.tty else PLAIN_INTERVAL_S
        self._clock = clock
        self._t0: float | None = None
        self._step0 = 0
        self._last_draw: float | None = None
        self._last_len = 0
        self._pending: str | None = None  # newest line not yet shown
        self._closed = False

    def update(self, env_step: int, recent_return: float | None = None, recent_cost: float | None = None) -> None:
        """Record progress; redraw only if the throttle allows (always at completion)."""
        if self._closed:
            return
        now = self._clock()
        if self._t0 is None:
            self._t0, self._step0 = now, int(env_step)
        self._pending = self._line(int(env_step), now, recent_return, recent_cost)
        due = self._last_draw is None or now - self._last_draw >= self.interval
        if due or env_step >= self.total:
            self._draw(now)

    def close(self) -> None:
        """Show the newest state and end the line; safe to call twice."""
        if self._closed:
            return
        if self._pending is not None:
            self._draw(self._clock())
        if self.tty and self._last_draw is not None:
            self._write("\n")
        self._closed = True

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _rate(self, step: int, now: float) -> float | None:
        dt = now - (self._t0 if self._t0 is not None else now)
        return (step - self._step0) / dt if dt > 0 and step > self._step0 else None

    def _line(self, step: int, now: float, ret: float | None, cost: float | None) -> str:
        frac = min(1.0, max(0.0, step / self.total))
        filled = int(round(frac * BAR_WIDTH))
        rate = self._rate(step, now)
        eta = (self.total - step) / rate if rate else None
        parts = [
            f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {step:,}/{self.total:,} {100 * frac:5.1f}%",
            f"{rate:,.0f} steps/s" if rate else "-- steps/s",
            f"ETA {fmt_eta(0.0 if step >= self.total else eta)}",
            f"ret {ret:.2f}" if ret is not None else "ret --",
            f"cost {cost:.2f}" if cost is not None else "cost --",
        ]
        return " | ".join(parts)

    def _draw(self, now: float) -> None:
        line, self._pending = self._pending, None
        if line is None:
            return
        if self.tty:
            pad = " " * max(0, self._last_len - len(line))  # wipe leftovers of a longer line
            self._write("\r" + line + pad)
            self._last_len = len(line)
        else:
            self._write(line + "\n")
        self._last_draw = now

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed/broken stderr must never kill the launcher


@dataclass
class TailState:
    """Where the previous tail stopped: byte offset plus the file identity (detects rotation)."""

    offset: int = 0
    inode: int | None = None


def _reset_if_replaced(path: Path, state: TailState) -> int | None:
    """File size, resetting the offset if the file was truncated or replaced; None if missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if (state.inode is not None and st.st_ino != state.inode) or st.st_size < state.offset:
        state.offset = 0
    state.inode = st.st_ino
    return st.st_size


def tail_jsonl(path: Path | str, state: TailState) -> list[dict]:
    """New complete JSON-object lines since the last call; a partial last line waits."""
    path = Path(path)
    size = _reset_if_replaced(path, state)
    if size is None or size <= state.offset:
        return []
    try:
        with open(path, "rb") as fh:
            fh.seek(state.offset)
            data = fh.read(size - state.offset)
    except OSError:
        return []
    end = data.rfind(b"\n")
    if end < 0:
        return []
    state.offset += end + 1
    rows = []
    for raw in data[: end + 1].splitlines():
        try:
            row = json.loads(raw.decode("utf-8", errors="replace"))
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def tail_episodes(path: Path | str, state: TailState) -> list[dict]:
    """Episodes appended to envserver/episodes.jsonl since the last call (see tail_jsonl)."""
    return tail_jsonl(path, state)
