"""Shadow-PG's Q-value exchange: each agent's truncated shadow Q-values reach every agent of its
κ-hop ball at update time, hop by hop through direct neighbours (scalable-general-utilities.md
Alg. 1 line 6: agent i's gradient needs Q̃_j for every j ∈ N_i^κ).

The schedule is the κ relay's (agentd/relay.py, sync mode): origin o at distance d from agent j
reaches j in round d, exactly once, from j's designated relay for o (its lowest-id neighbour at
distance d − 1 from o), which learned it in round d − 1. Every agent derives the same schedule from
the run's RelayPlan, so each knows which QVALS {from, update, origin, hops} + q[T·E] to expect.
Round r's messages are waited for until ``start + r · slot`` (slot = the link timeout), or not at all
from a neighbour the relay has marked silent; what is missing then is left out of the sum (counted
in ``qvals_missing``) and whatever only it would have relayed is missing downstream — the update
goes on.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any, Callable, Sequence

import numpy as np

from envserver import protocol as P

from .update_phase import Mailbox

log = logging.getLogger("agentd.qvals")


class QExchange:
    """One agent's part of the per-update Q-value exchange (see the module docstring)."""

    def __init__(self, me: int, plan: Any, mailbox: Mailbox, slot_s: float = 30.0,
                 is_silent: Callable[[int], bool] = lambda _peer: False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.me, self.mailbox, self.slot_s, self.is_silent, self.clock = me, mailbox, slot_s, is_silent, clock
        self.ball = plan.balls[me]  # origin -> distance, d ≤ κ
        # round r: {neighbour: origins I relay to it}; {neighbour: origins it relays to me}
        self.sends: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        self.expects: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for j in plan.adj[me]:
            for o, d in sorted(plan.balls[j].items()):
                if d >= 1 and plan.relay_of[(j, o)] == me:
                    self.sends[d][j].append(o)
        for o, d in sorted(self.ball.items()):
            if d >= 1:
                self.expects[d][plan.relay_of[(me, o)]].append(o)
        self.rounds = max([0, *self.sends, *self.expects])
        self.missing_total = 0  # cumulative, logged as qvals_missing

    def begin(self, update: int, learner: Any, critic_in: np.ndarray) -> None:
        self.update, self.learner = update, learner
        self.start = self.clock()
        self.known = {self.me: learner.shadow_q(critic_in)}  # origin -> Q̃_o at this rollout's samples
        self.mailbox.discard(lambda m: m.type == "QVALS" and m["update"] < update)

    def send_round(self, r: int) -> None:
        for peer, origins in sorted(self.sends.get(r, {}).items()):
            for o in origins:
                if o in self.known:  # lost upstream: nothing to relay
                    self.mailbox.send(peer, P.encode("QVALS", {"from": self.me, "update": self.update, "origin": o,
                                                               "hops": self.ball[o]}, {"q": self.known[o]}))

    def receive_round(self, r: int) -> None:
        n = self.known[self.me].shape[0]
        for peer, origins in sorted(self.expects.get(r, {}).items()):
            deadline = self.start if self.is_silent(peer) else self.start + r * self.slot_s
            for o in origins:
                msg = self.mailbox.wait(peer, lambda m, o=o: m.type == "QVALS" and m["update"] == self.update
                                        and m["origin"] == o, deadline)
                try:
                    if msg is None:
                        raise P.ProtocolError("none arrived")
                    self.known[o] = P.check_array(msg, "q", (n,), np.float32)
                except P.ProtocolError as err:
                    self.missing_total += 1
                    log.warning("update %d: Q-values of agent %d from agent %d left out: %s", self.update, o, peer, err)

    def finish(self) -> dict[str, Any]:
        total = np.sum([self.known[o] for o in sorted(self.known)], axis=0, dtype=np.float64)
        stats = self.learner.update_from_q(total.astype(np.float32))
        return {**stats, "qvals_origins": sorted(self.known), "qvals_missing": self.missing_total,
                "qvals_wait_s": self.clock() - self.start}

    def run(self, update: int, learner: Any, critic_in: np.ndarray) -> dict[str, Any]:
        """Share this agent's Q-values, collect its ball's, and update ``learner``."""
        self.begin(update, learner, critic_in)
        for r in range(1, self.rounds + 1):
            self.send_round(r)
            self.receive_round(r)
        return self.finish()

    @staticmethod
    def drive(exchanges: Sequence["QExchange"], learners: Sequence[Any], critic_ins: Sequence[np.ndarray],
              update: int) -> list[dict[str, Any]]:
        """Every agent's exchange in one process, round by round (all send, then all receive)."""
        for x, learner, c in zip(exchanges, learners, critic_ins):
            x.begin(update, learner, c)
        for r in range(1, max(x.rounds for x in exchanges) + 1):
            for x in exchanges:
                x.send_round(r)
            for x in exchanges:
                x.receive_round(r)
        return [x.finish() for x in exchanges]
