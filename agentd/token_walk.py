"""The sequential token walk: agents update one after another along graph edges, with no central
process (HAPPO, MAFOCOPS Alg. 1, MACPO, MAPPO-L with ``update_order="sequential"``).

The order of update u is a random depth-first walk over the topology, derived by every agent from
the common randomness (run seed, u) — a random root and, at each node, a random neighbour order —
so every agent knows the whole plan without asking anyone. The token (the ratio product
M = Π_{j before i} π_j^new/π_j^old, float32 per sample, sample n = t·E + e) travels only along
the DFS tree's edges, backtracking hops included: position p of the walk receives TOKEN
{from, update, pos = p} from position p − 1 (the root starts with ones). At an agent's *first*
visit it updates with the token it received and forwards ``learner.token_out(token)``; at a
revisit (backtracking) it forwards what it received unchanged. The first visits are therefore a
random permutation of the agents and every hop is an edge.

Waiting never deadlocks: position p waits until ``start + p · slot`` (slot = the link timeout,
anchored to the agent's update start so that one late agent does not make every later position
time out as well), or not at all once the relay has marked the predecessor silent. On a timeout
the agent goes on with what it has — ones at a first visit, its own last token at a revisit — logs
it, counts ``token_timeouts`` and forwards, so the rest of the walk proceeds. A token that shows up
after its position has given up is discarded.

:class:`TokenWalker` holds one agent's part and talks through a mailbox of
agentd/update_phase.py (sockets for the distributed agent, memory for ``--inprocess``, with the
same frames, counters and seeded loss), so both modes compute the same tokens.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

import numpy as np

from envserver import protocol as P

from .update_phase import Mailbox

log = logging.getLogger("agentd.token")

_WALK_STREAM = 0x746F6B6E  # "tokn": keeps the walk's random stream apart from every other use of the seed


def plan_walk(graph: Any, seed: int, update: int) -> list[int]:
    """The visit sequence of update ``update``: a random DFS over ``graph`` (random root, random
    neighbour order per node), including the backtracking hops, ending at the last first visit.
    Identical in every agent for the same (seed, update)."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, update, _WALK_STREAM])
    nodes = sorted(graph.nodes)
    root = nodes[int(rng.integers(len(nodes)))]

    def shuffled(v: int) -> list[int]:
        adj = sorted(graph.adj[v])
        return [adj[k] for k in rng.permutation(len(adj))]

    walk, seen, stack = [root], {root}, [root]
    todo = {root: shuffled(root)}
    while len(seen) < len(nodes):
        if not stack:
            raise ValueError("the token walk needs a connected topology")
        top = stack[-1]
        while todo[top] and todo[top][0] in seen:
            todo[top].pop(0)
        if todo[top]:
            nxt = todo[top].pop(0)
            seen.add(nxt)
            stack.append(nxt)
            todo[nxt] = shuffled(nxt)
            walk.append(nxt)
        else:
            stack.pop()
            if stack:
                walk.append(stack[-1])  # backtrack along the tree edge
    return walk


def first_visits(walk: Sequence[int]) -> list[int]:
    """The update order: each agent at its first position in the walk."""
    seen: dict[int, None] = {}
    for a in walk:
        seen.setdefault(a, None)
    return list(seen)


class TokenWalker:
    """One agent's part of each update's walk: :meth:`run` (distributed: all of this agent's
    positions in order) or :meth:`drive` (in process: every agent's positions in walk order)."""

    def __init__(self, me: int, graph: Any, seed: int, mailbox: Mailbox, slot_s: float = 30.0,
                 is_silent: Callable[[int], bool] = lambda _peer: False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.me, self.graph, self.seed, self.mailbox = me, graph, seed, mailbox
        self.slot_s, self.is_silent, self.clock = slot_s, is_silent, clock
        self.timeouts = 0  # cumulative, logged as token_timeouts

    def begin(self, update: int, learner: Any, critic_in: np.ndarray) -> None:
        self.update, self.learner, self.critic_in = update, learner, critic_in
        self.walk = plan_walk(self.graph, self.seed, update)
        self.mailbox.discard(lambda m: m.type == "TOKEN" and m["update"] < update)  # late tokens of old walks
        self.mine = [p for p, a in enumerate(self.walk) if a == self.me]
        self.start = self.clock()
        self.token: np.ndarray | None = None
        self.stats: dict[str, Any] | None = None
        self.received_from: list[int] = []

    def visit(self, p: int) -> None:
        """Position p: take the token from position p − 1 (or time out), update at the first visit,
        hand the token to position p + 1."""
        if p > 0:
            prev = self.walk[p - 1]
            deadline = self.start if self.is_silent(prev) else self.start + p * self.slot_s
            msg = self.mailbox.wait(prev, lambda m: m.type == "TOKEN" and m["update"] == self.update
                                    and m["pos"] == p, deadline)
            token = self._checked(msg, prev)
            if token is None:
                self.timeouts += 1
                self.received_from.append(-1)
                log.warning("token walk %d: no usable token from agent %d for position %d; going on with %s",
                            self.update, prev, p, "ones" if self.stats is None else "my own")
            else:
                self.token = token
                self.received_from.append(prev)
        if self.stats is None:
            self.stats = self.learner.update(self.critic_in, self.token)
            self.token = self.learner.token_out(self.token)
        if p + 1 < len(self.walk):
            assert self.token is not None
            self.mailbox.send(self.walk[p + 1], P.encode(
                "TOKEN", {"from": self.me, "update": self.update, "pos": p + 1}, {"token": self.token}))

    def _checked(self, msg: P.Message | None, peer: int) -> np.ndarray | None:
        """The token a TOKEN carries, or None (logged) when it is not one this learner can take: a
        neighbour's bad frame must not stop this agent."""
        if msg is None:
            return None
        n = self.learner.cfg.rollout_len * self.learner.n_envs
        try:
            token = P.check_array(msg, "token", (n,), np.float32)
        except P.ProtocolError as err:
            log.warning("refused a TOKEN from agent %d: %s", peer, err)
            return None
        if (token < 0).any():
            log.warning("refused a TOKEN from agent %d: negative entries", peer)
            return None
        return token

    def finish(self) -> dict[str, Any]:
        assert self.stats is not None, "finish() before this agent's first visit"
        return {**self.stats, "token_update": self.update, "token_rank": first_visits(self.walk).index(self.me),
                "token_positions": self.mine, "token_from": self.received_from, "token_timeouts": self.timeouts,
                "token_wait_s": self.clock() - self.start}

    def run(self, update: int, learner: Any, critic_in: np.ndarray) -> dict[str, Any]:
        """Update ``learner`` at this agent's turn of update ``update``'s walk; returns its metrics."""
        self.begin(update, learner, critic_in)
        for p in self.mine:
            self.visit(p)
        return self.finish()

    @staticmethod
    def drive(walkers: Sequence["TokenWalker"], learners: Sequence[Any], critic_ins: Sequence[np.ndarray],
              update: int) -> list[dict[str, Any]]:
        """Every agent's part of one walk in one process, position by position in walk order (in
        memory each message is delivered when sent, so no visit ever waits)."""
        for w, learner, c in zip(walkers, learners, critic_ins):
            w.begin(update, learner, c)
        for p, agent in enumerate(walkers[0].walk):
            walkers[agent].visit(p)
        return [w.finish() for w in walkers]


