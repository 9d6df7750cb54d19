"""Is each direct neighbour alive? Last-heard times, heartbeats due, and down/up events.

Why a module of its own: the relay must stop waiting for a dead or partitioned neighbour within
seconds, not after the 30 s link timeout, yet must never give up on a neighbour that is merely
slow. The two look the same from a socket (nothing arrives), so each agent tells its neighbours it
is alive: :class:`NeighbourLinks` sends a small HEARTBEAT on any link it has not used for
``interval_s``, and every valid frame from a neighbour (data or heartbeat) is proof of life.

A neighbour is declared *down* only while we wait for it in an exchange, when nothing has come
from it for ``timeout_s`` counted from the later of its last frame and the start of our exchange.
Counting from the exchange start matters because an agent cannot send heartbeats while it runs an
update: the lockstep envserver sends STEP t only once every agent has finished step t−1, so a live
neighbour starts its exchange when we start ours, whatever it did before. A neighbour never heard
at all (still starting up) gets the longer ``first_timeout_s``. A down neighbour is not waited for;
any frame from it brings it back up (zmq reconnects a healed link on its own).
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Iterable

log = logging.getLogger("agentd.liveness")

DEFAULT_TIMEOUT_S = 5.0
INTERVAL_FRACTION = 0.2  # heartbeat interval = timeout / 5: four heartbeats may be lost before a false down


class Liveness:
    """Per-neighbour last-heard / last-sent times and the down set, with cumulative event counters."""

    def __init__(self, peers: Iterable[int], timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"heartbeat timeout must be a positive number of seconds, got {timeout_s!r}")
        self.peers = sorted(peers)
        self.timeout_s = timeout_s
        self.interval_s = timeout_s * INTERVAL_FRACTION
        self.last_heard: dict[int, float | None] = {p: None for p in self.peers}
        self.last_sent: dict[int, float] = {p: -math.inf for p in self.peers}
        self._next_due = -math.inf
        self.down: set[int] = set()
        self.down_events: dict[int, int] = defaultdict(int)
        self.up_events: dict[int, int] = defaultdict(int)

    def heard(self, peer: int, now: float) -> None:
        self.last_heard[peer] = now
        if peer in self.down:
            self.down.discard(peer)
            self.up_events[peer] += 1
            log.info("neighbour %d is back", peer)

    def sent(self, peer: int, now: float) -> None:
        self.last_sent[peer] = now

    def heartbeats_due(self, now: float) -> list[int]:
        """Neighbours this agent has sent nothing to for a heartbeat interval. Asked before every
        receive, so the answer "none" costs one comparison: ``_next_due`` is the earliest time one can
        be due (``last_sent`` only grows, so it stays a lower bound until the next full look)."""
        if now < self._next_due:
            return []
        due = [p for p in self.peers if now - self.last_sent[p] >= self.interval_s]
        self._next_due = min(self.last_sent.values(), default=math.inf) + self.interval_s
        return due

    def expire(self, waiting: Iterable[int], since: float, now: float, first_timeout_s: float) -> set[int]:
        """Declare down (and return) the awaited neighbours silent for the timeout since ``since``
        (the start of the caller's exchange) — ``first_timeout_s`` for one never heard from."""
        gone = set()
        for p in waiting:
            last = self.last_heard[p]
            limit = self.timeout_s if last is not None else first_timeout_s
            if p not in self.down and now - max(last if last is not None else -math.inf, since) >= limit:
                self.down.add(p)
                self.down_events[p] += 1
                gone.add(p)
                log.warning("neighbour %d down: nothing heard for %.1f s", p, now - max(last or since, since))
        return gone

    def declare_down(self, peers: Iterable[int]) -> None:
        """Take neighbours down now: on a reliable link a missed round slot already proves it."""
        for p in peers:
            if p not in self.down:
                self.down.add(p)
                self.down_events[p] += 1
                log.warning("neighbour %d down: missed a round slot on a reliable link", p)

    def stats(self) -> dict[str, int]:
        """Metric-row keys: totals, then per neighbour j ``nbr<j>_down_events`` / ``nbr<j>_up_events``."""
        out = {"neighbours_down": len(self.down), "neighbour_down_events": sum(self.down_events.values()),
               "neighbour_up_events": sum(self.up_events.values())}
        for p in self.peers:
            out[f"nbr{p}_down_events"] = self.down_events[p]
            out[f"nbr{p}_up_events"] = self.up_events[p]
        return out
