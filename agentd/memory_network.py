"""The relay without sockets: every agent's :class:`~agentd.relay.RelayNode` in one process.

This is what makes ``khop run --inprocess`` a fair yardstick: the nodes build and read the very
frames they would send over ZeroMQ, and the same counters, budgets and seeded losses apply, so the
only thing taken away is the transport.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from envserver import protocol as P

from .links import LinkCounters, LinkEmulator, LinkSpec
from .liveness import Liveness
from .relay import RelayNode, RelayPlan


class MemoryNetwork:
    """Every agent's relay in one process (``khop run --inprocess``): the same plan, nodes, frames,
    wire-byte counters, token buckets and seeded loss as over sockets, delivered in memory, so the
    in-process reference reports the traffic the distributed run would have. Link delay, jitter and
    bandwidth need a clock and are refused here; loss is supported."""

    def __init__(self, plan: RelayPlan, emulation: Mapping[tuple[int, int], LinkSpec] | None = None,
                 seed: int = 0) -> None:
        self.plan = plan
        self.nodes = [RelayNode(i, plan) for i in sorted(plan.adj)]
        self.counters = [LinkCounters() for _ in self.nodes]
        self.buckets = [plan.token_bucket() for _ in self.nodes]
        self.emulators: dict[tuple[int, int], LinkEmulator] = {}
        for (src, dst), spec in (emulation or {}).items():
            if spec.timed:
                raise ValueError("link delay, jitter and bandwidth need real time; run without --inprocess")
            if not spec.ideal:
                self.emulators[(src, dst)] = LinkEmulator(spec, seed, src, dst)
        self.step_bytes = [0] * len(self.nodes)
        self.step_bytes_max = [0] * len(self.nodes)

    def exchange(self, t: int, obs: Sequence[np.ndarray]) -> list[np.ndarray]:
        sent_before = [sum(c.bytes_sent.values()) for c in self.counters]
        for node, bucket, o in zip(self.nodes, self.buckets, obs):
            if bucket is not None:
                bucket.refill(t)
            node.begin(t, o)
        for rnd in range(1, max(n.rounds for n in self.nodes) + 1):
            inbox: dict[int, list[tuple[int, P.Message]]] = defaultdict(list)
            for node in self.nodes:
                if rnd > node.rounds:
                    continue
                src = node.me
                for peer, frames, phase in node.outgoing(rnd):
                    n = P.wire_size(frames)
                    bucket = self.buckets[src]
                    if bucket is not None and not bucket.try_spend(n):
                        self.counters[src].budget_blocked[peer] += 1
                        continue
                    self.counters[src].count_sent(peer, phase, n)
                    emu = self.emulators.get((src, peer))
                    if emu is not None and emu.admit(n, 0.0) is None:
                        self.counters[peer].msgs_lost[src] += 1
                        self.counters[peer].bytes_lost[src] += n
                        continue
                    self.counters[peer].count_received(src, phase, n)
                    inbox[peer].append((src, P.decode([bytes(f) for f in frames])))
            for dst, msgs in inbox.items():
                for src, msg in sorted(msgs, key=lambda m: m[0]):
                    self.nodes[dst].accept(rnd, src, msg)
        for i, c in enumerate(self.counters):
            self.step_bytes[i] = sum(c.bytes_sent.values()) - sent_before[i]
            self.step_bytes_max[i] = max(self.step_bytes_max[i], self.step_bytes[i])
        return [n.critic_input() for n in self.nodes]

    def comm_counters(self, i: int) -> dict[str, Any]:
        c = self.counters[i]
        return {**c.totals(), **c.by_phase(), **self.nodes[i].stats(), "round_timeouts": 0, "late_msgs": 0, "lost_msgs": 0,
                "step_bytes_max": self.step_bytes_max[i], **Liveness(self.plan.adj[i]).stats(),
                "conn_dropped": 0, "handshake_failed": 0, "auth_denied": 0,
                "msgs_sent_update_to": c.sent_to("update")}
