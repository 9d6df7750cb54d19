"""Stepping a vectorised task's env copies on several threads.

Why it pays: ``mj_step`` releases the GIL, and in a lockstep the envserver's physics is the serial
phase — every agent waits for its STEP while the copies are stepped — so the other cores sit idle
unless the copies are split across them (bench/NOTES.md §21: 6x1 on two cores, +14 % env
steps/s at E = 16 and +26 % at E = 32, distributed and in-process alike). Each copy has its own ``MjData`` and its own rows of the state matrix, so what a copy
computes does not depend on the thread that stepped it: a run is bit-identical at any thread count
(tests/test_physics_threads.py).

The threads are persistent and handed their chunk through two locks each (no executor and no
future per step: a lockstep at E = 32 takes ~1 ms, a ThreadPoolExecutor round trip ~50 µs).
"""
from __future__ import annotations

import math
import os
import threading
from typing import Any, Callable

from ..options import at_least, option

#: env copies per physics thread when ``--physics-threads`` is 0 (auto). Measured on two cores,
#: safe-halfcheetah-6x1 acting (§21): two threads at E = 8 change nothing measurable (the hand-off
#: costs what the second core saves), at E = 16 +14 %, at E = 32 +26 %
COPIES_PER_THREAD = 8

#: ``advance(lo, hi, out)`` steps copies lo..hi-1 and appends to ``out`` the copies MuJoCo reset
Advance = Callable[[int, int, list], None]


def physics_threads_option() -> Any:
    """``--physics-threads``, declared once for the envserver and for `khop run` (which hands it on)."""
    return option(0, "threads stepping the env copies' physics (the safe-* and mamujoco-* MuJoCo tasks, whose "
                     "step releases the GIL; a run is bit-identical at any count); 0: one per "
                     f"{COPIES_PER_THREAD} copies, at most the CPUs this process may run on",
                  check=at_least(0), metavar="N")


def resolve_threads(requested: int, n_envs: int) -> int:
    """Threads to step ``n_envs`` copies with: ``requested`` when > 0, else one per
    :data:`COPIES_PER_THREAD` copies, at most the CPUs this process may run on; never more than
    the copies."""
    if requested < 0:
        raise ValueError(f"physics threads must be >= 0 (0: automatic), got {requested}")
    if requested == 0:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        requested = min(cpus, math.ceil(n_envs / COPIES_PER_THREAD))
    return max(1, min(requested, n_envs))


class _Worker:
    """One persistent thread stepping copies lo..hi-1 each time ``go`` is released."""

    def __init__(self, lo: int, hi: int, advance: Advance) -> None:
        self.lo, self.hi, self.advance = lo, hi, advance
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.reset: list[int] = []
        self.error: BaseException | None = None
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name=f"physics-{lo}-{hi}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            self.go.acquire()
            if self.stopping:
                return
            self.reset, self.error = [], None
            try:
                self.advance(self.lo, self.hi, self.reset)
            except BaseException as err:  # handed to the stepping thread, which raises it
                self.error = err
            finally:
                self.done.release()


class PhysicsPool:
    """Copies split into ``threads`` contiguous chunks (1 ≤ threads ≤ copies): the first stepped by
    the caller, each other by its own thread, all at once. One chunk is the serial loop: no thread,
    no lock, so a task steps through the pool at any count."""

    def __init__(self, n_envs: int, threads: int, advance: Advance) -> None:
        if not 1 <= threads <= n_envs:
            raise ValueError(f"a physics pool needs 1 to {n_envs} threads for {n_envs} copies, got {threads}")
        bounds = [n_envs * k // threads for k in range(threads + 1)]
        self.advance = advance
        self.own = (bounds[0], bounds[1])
        self.workers = [_Worker(lo, hi, advance) for lo, hi in zip(bounds[1:-1], bounds[2:])]

    def step(self) -> list[int]:
        """Step every copy; the copies MuJoCo reset, in ascending order."""
        for w in self.workers:
            w.go.release()
        reset: list[int] = []
        error: BaseException | None = None
        try:
            self.advance(*self.own, reset)
        except BaseException as err:
            error = err
        # whatever happened in our chunk (an error, Ctrl-C), every worker is waited for: their chunks
        # write the same arrays, and one still running when step() returns would race the next
        for w in self.workers:
            while True:
                try:
                    w.done.acquire()
                    break
                except BaseException as err:  # interrupted while waiting: wait on, raise it after
                    error = error or err
            error = error or w.error
            reset += w.reset
        if error is not None:
            raise error
        return reset

    def close(self) -> None:
        """Stop and join the threads; safe to call twice."""
        for w in self.workers:
            w.stopping = True
            if w.go.locked():  # unlocked: a release is pending, and the worker will see ``stopping``
                w.go.release()
        for w in self.workers:
            w.thread.join()
        self.workers = []
