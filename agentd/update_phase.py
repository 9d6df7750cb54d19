"""The mailboxes through which agents exchange messages around an update (phase "update" in the
link counters); which exchange a learner takes part in is decided by agentd/assembly.py.

Two learners need their neighbours at update time: sequential ones pass the ratio-product token
along a walk over the graph (:class:`agentd.token_walk.TokenWalker`), shadow-PG shares its
truncated shadow Q-values with its κ-hop ball (:class:`agentd.qvals.QExchange`). Both talk through
a *mailbox*, so the same code runs in the distributed agent and in the in-process reference:

* :class:`LinkMailbox` — over the agent's NeighbourLinks. A relay STATE read while waiting (a
  neighbour already in the next step) goes back to the relay (``KHopRelay.stash``) so none is
  lost; an update message that is not wanted yet is kept until asked for.
* :class:`MemoryPost` — every agent in one process: the same frames, counted in the in-process
  network's counters and passed through its seeded link emulators, as the sockets would be.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

from envserver import protocol as P


class Mailbox(Protocol):
    """Where update-phase messages go out and come in (see the module docstring)."""

    def send(self, peer: int, frames: list) -> None: ...

    def wait(self, peer: int, match: Callable[[P.Message], bool], deadline: float) -> P.Message | None: ...

    def discard(self, stale: Callable[[P.Message], bool]) -> None: ...


class LinkMailbox:
    """Update-phase messages over an agent's :class:`~agentd.links.NeighbourLinks`, from its one
    inbox: relay STATE frames read while waiting stay queued there for the relay
    (``links.states``); update messages that are not (yet) wanted stay until asked for."""

    def __init__(self, links: Any) -> None:
        self.links = links

    def send(self, peer: int, frames: list) -> None:
        self.links.send(peer, frames, "update")

    def wait(self, peer: int, match: Callable[[P.Message], bool], deadline: float) -> P.Message | None:
        pending = self.links.updates
        while True:
            for k, (src, msg) in enumerate(pending):
                if src == peer and match(msg):
                    del pending[k]
                    return msg
            now = self.links.clock()
            if now >= deadline:
                return None
            self.links.pull(min(deadline - now, 0.2) * 1000)

    def discard(self, stale: Callable[[P.Message], bool]) -> None:
        self.links.updates[:] = [(src, m) for src, m in self.links.updates if not stale(m)]


class MemoryPost:
    """Update-phase messages between agents in one process, counted in the in-process network's
    counters (phase "update") and passed through its seeded link emulators, as the sockets would."""

    def __init__(self, net: Any) -> None:
        self.net = net
        self.inbox: dict[int, list[tuple[int, P.Message]]] = {i: [] for i in range(len(net.nodes))}

    def mailbox(self, me: int) -> "_MemoryMailbox":
        return _MemoryMailbox(self, me)


class _MemoryMailbox:
    def __init__(self, post: MemoryPost, me: int) -> None:
        self.post, self.me = post, me

    def send(self, peer: int, frames: list) -> None:
        net, n = self.post.net, P.wire_size(frames)
        net.counters[self.me].count_sent(peer, "update", n)
        emu = net.emulators.get((self.me, peer))
        if emu is not None and emu.admit(n, 0.0) is None:
            net.counters[peer].msgs_lost[self.me] += 1
            net.counters[peer].bytes_lost[self.me] += n
            return
        net.counters[peer].count_received(self.me, "update", n)
        self.post.inbox[peer].append((self.me, P.decode([bytes(f) for f in frames])))

    def wait(self, peer: int, match: Callable[[P.Message], bool], deadline: float) -> P.Message | None:
        box = self.post.inbox[self.me]
        for k, (src, msg) in enumerate(box):
            if src == peer and match(msg):
                del box[k]
                return msg
        return None

    def discard(self, stale: Callable[[P.Message], bool]) -> None:
        box = self.post.inbox[self.me]
        box[:] = [(src, m) for src, m in box if not stale(m)]
