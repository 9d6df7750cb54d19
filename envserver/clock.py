"""Where a restarted envserver takes up its run: the lockstep counter and the env steps spent.

Why a file of its own, written on every step: the step budget (``--steps``) must be honoured
across restarts, and agents must never see a step counter twice — a STEP t of the new server read
as a duplicate of the old server's STEP t would be ignored. So before each STEP t goes out, the
server records (t, env steps done, its start count) with one ``pwrite`` of a fixed-width record at
offset 0: one syscall per step (status.json, rewritten every half second, would lag), which a
killed process cannot tear. A restarted server continues at t + 1 — past anything its predecessor
may have sent — with the env steps already spent.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_WIDTH = (20, 20, 10)
_SIZE = sum(_WIDTH) + len(_WIDTH)  # fields separated by spaces, newline-terminated


@dataclass(frozen=True)
class ClockState:
    t: int  # the last step whose STEP may have gone out
    env_step: int  # env transitions completed (summed over copies)
    starts: int  # how many times a server has started on this run directory (its incarnation)


class StepClock:
    """The run's step counter on disk (``<run-dir>/clock``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.previous = read_clock(self.path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def record(self, state: ClockState) -> None:
        text = " ".join(f"{v:0{w}d}" for v, w in zip((state.t, state.env_step, state.starts), _WIDTH)) + "\n"
        os.pwrite(self._fd, text.encode("ascii"), 0)

    def close(self) -> None:
        os.close(self._fd)


def read_clock(path: Path) -> ClockState | None:
    """The recorded state, or None for a fresh directory; a damaged record is a one-line error."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    parts = raw.decode("ascii", "replace").split()
    if len(raw) != _SIZE or len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{path} is not an envserver clock record; remove it to start the run afresh")
    t, env_step, starts = (int(p) for p in parts)
    return ClockState(t, env_step, starts)
