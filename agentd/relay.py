"""κ-hop state, relayed hop by hop: after κ exchange rounds an agent holds the observation rows
of every agent within κ hops of it, and nothing from farther away.

Round r sends each neighbour the entries first learned in round r−1 (round 1: the agent's own
rows), so an origin d hops away arrives in round d, over the shortest path, and no entry is sent
twice by the same agent within a step. A round waits for every neighbour still believed alive; a
neighbour silent past the timeout is absent for the rest of the step and its entries (and whatever
only it could have relayed) are zeros with presence 0 — the policy and critic see the mask.
"""
from __future__ import annotations

import time
from collections import defaultdict

import numpy as np

from envserver import protocol as P

from .links import NeighbourLinks


class KHopRelay:
    def __init__(self, me: int, kappa: int, ball: dict[int, int], obs_dims: dict[int, int],
                 links: NeighbourLinks, n_envs: int, timeout_s: float = 30.0) -> None:
        self.me, self.kappa, self.links, self.E = me, kappa, links, n_envs
        self.ball = dict(sorted(ball.items()))  # origin -> hop distance, origins in id order
        self.dims = {o: obs_dims[o] for o in self.ball}
        self.timeout_s = timeout_s
        self.critic_dim = sum(self.dims.values()) + len(self.ball)  # rows + one presence bit per origin
        self._early: dict[tuple[int, int], dict[int, P.Message]] = defaultdict(dict)
        self.silent: set[int] = set()  # neighbours that timed out; not awaited until they speak again
        self.known: dict[int, tuple[int, np.ndarray]] = {}

    def exchange(self, t: int, own_obs: np.ndarray) -> np.ndarray:
        """Run κ rounds for step t and return the critic input [E, critic_dim]."""
        self.known = {self.me: (0, own_obs)}
        frontier = [self.me]
        for rnd in range(1, self.kappa + 1):
            frames = P.encode("STATE", {"from": self.me, "t": t, "round": rnd, "origins": frontier,
                                        "hops": [self.known[o][0] for o in frontier]},
                              entries=[self.known[o][1] for o in frontier])
            for peer in self.links.peers:
                self.links.send(peer, frames)
            frontier = []
            for msg in self._gather(t, rnd):
                for origin, hop, rows in zip(msg["origins"], msg["hops"], msg.entries):
                    if origin in self.known or origin not in self.ball or hop + 1 > self.kappa:
                        continue  # already known, or a neighbour relaying past our horizon
                    if rows.shape != (self.E, self.dims[origin]):
                        continue  # malformed relay: treat the origin as absent
                    self.known[origin] = (hop + 1, rows)
                    frontier.append(origin)
            frontier.sort()
        return self.critic_input()

    def _gather(self, t: int, rnd: int) -> list[P.Message]:
        """Round (t, rnd)'s messages: wait for the neighbours believed alive, and take whatever the
        silent ones have already delivered — any message from a silent neighbour revives it."""
        got = self._early.pop((t, rnd), {})
        deadline = time.monotonic() + self.timeout_s
        while True:
            waiting = set(self.links.peers) - self.silent - set(got)
            remaining = deadline - time.monotonic()
            if waiting and remaining <= 0:
                self.silent |= waiting
                break
            item = self.links.recv(int(min(remaining, 0.2) * 1000) if waiting else 0)
            if item is None:
                if not waiting:
                    break  # nothing more queued and nobody left to wait for
                continue
            peer, msg = item
            self.silent.discard(peer)
            key = (msg["t"], msg["round"])
            if key == (t, rnd):
                got[peer] = msg
            elif (t, rnd) < key and msg["t"] <= t + 1:
                self._early[key][peer] = msg  # a faster neighbour is already in a later round
            # older rounds are stale and dropped
        return list(got.values())

    def critic_input(self) -> np.ndarray:
        return assemble_critic_input(self.dims, {o: rows for o, (_, rows) in self.known.items()}, self.E)


def assemble_critic_input(dims: dict[int, int], rows: dict[int, np.ndarray], n_envs: int) -> np.ndarray:
    """The critic's κ-hop input: each ball origin's rows in id order (zeros if missing), then one
    presence bit per origin. One function, so the relay and the in-process reference agree."""
    parts, mask = [], []
    for origin, dim in sorted(dims.items()):
        entry = rows.get(origin)
        parts.append(entry if entry is not None else np.zeros((n_envs, dim), dtype=np.float32))
        mask.append(1.0 if entry is not None else 0.0)
    presence = np.broadcast_to(np.asarray(mask, dtype=np.float32), (n_envs, len(mask)))
    return np.concatenate(parts + [presence], axis=1).astype(np.float32, copy=False)
