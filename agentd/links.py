"""The only way an agent talks to other agents: one link object over its direct neighbours.

Each agent binds one ROUTER (its inbox) and connects one DEALER to each neighbour's inbox — and
to nobody else, so the socket table of an agent process is exactly {envserver, neighbours}.
Every send and receive passes through here, which is why the byte and message counters (per
peer and per phase) are the run's communication metrics and cannot miss a message.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

import zmq

from envserver import protocol as P

log = logging.getLogger("agentd.links")


def _nbytes(frames: list) -> int:
    return sum(len(f) if not isinstance(f, memoryview) else f.nbytes for f in frames)


@dataclass
class LinkCounters:
    """Cumulative traffic, keyed by (peer, phase)."""

    bytes_sent: dict = field(default_factory=lambda: defaultdict(int))
    bytes_received: dict = field(default_factory=lambda: defaultdict(int))
    msgs_sent: dict = field(default_factory=lambda: defaultdict(int))
    msgs_received: dict = field(default_factory=lambda: defaultdict(int))
    rejected: int = 0

    def totals(self) -> dict[str, int]:
        out = {name: sum(getattr(self, name).values())
               for name in ("bytes_sent", "bytes_received", "msgs_sent", "msgs_received")}
        out["rejected_frames"] = self.rejected
        return out

    def by_phase(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for name in ("bytes_sent", "bytes_received"):
            for (_, phase), n in getattr(self, name).items():
                out[f"{name}_{phase}"] += n
        return dict(out)


class NeighbourLinks:
    def __init__(self, ctx: zmq.Context, me: int, listen: str, peers: dict[int, str],
                 max_message_bytes: int = P.DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.me = me
        self.peers = dict(peers)
        self.counters = LinkCounters()
        self.inbox = ctx.socket(zmq.ROUTER)
        self.inbox.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.inbox.setsockopt(zmq.LINGER, 0)
        self.inbox.bind(listen)
        self.out: dict[int, zmq.Socket] = {}
        for peer, address in sorted(self.peers.items()):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.IDENTITY, str(me).encode())
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 1000)
            s.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
            s.connect(address)
            self.out[peer] = s

    def send(self, peer: int, frames: list, phase: str = "rollout") -> None:
        """Queue one message to a neighbour; never blocks (a full queue drops and is logged)."""
        try:
            self.out[peer].send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.warning("link to %d is full; message dropped", peer)
            return
        self.counters.bytes_sent[(peer, phase)] += _nbytes(frames)
        self.counters.msgs_sent[(peer, phase)] += 1

    def recv(self, timeout_ms: int, phase: str = "rollout") -> tuple[int, P.Message] | None:
        """One validated message from a neighbour, or None on timeout or a refused frame."""
        if not self.inbox.poll(timeout_ms):
            return None
        frames = self.inbox.recv_multipart(copy=True)
        ident, body = frames[0], frames[1:]
        try:
            peer = int(ident.decode())
            if peer not in self.peers:
                raise P.ProtocolError(f"message from {ident[:16]!r}, which is not a neighbour")
            msg = P.decode(body)
            if msg.type != "STATE" or msg["from"] != peer:
                raise P.ProtocolError(f"neighbour {peer} sent {msg.type} claiming to be {msg.fields.get('from')}")
        except (ValueError, UnicodeDecodeError) as err:  # ProtocolError is a ValueError
            self.counters.rejected += 1
            log.warning("refused a neighbour frame: %s", err)
            return None
        self.counters.bytes_received[(peer, phase)] += _nbytes(body)
        self.counters.msgs_received[(peer, phase)] += 1
        return peer, msg

    def close(self) -> None:
        for s in self.out.values():
            s.close(linger=0)
        self.inbox.close(linger=0)
