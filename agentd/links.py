"""The only way an agent talks to other agents: one link object over its direct neighbours.

Each agent binds one ROUTER (its inbox) and connects one DEALER to each neighbour's inbox — and
to nobody else, so the socket table of an agent process is exactly {envserver, neighbours}.
Every send and receive passes through here, which is why the byte and message counters (per
peer and per phase) are the run's communication metrics and cannot miss a message.

Three more things live here because they must see every message:

* **Wire bytes.** Every counter counts :func:`envserver.protocol.wire_size`: msgpack header plus
  raw buffers plus ZMTP frame headers — what the application puts on the stream.
* **Budget.** An optional :class:`TokenBucket` is checked before each send; a message that does
  not fit is not sent (counted in ``budget_blocked``), so the budget is a hard guarantee however
  the caller behaves. The relay's plan (agentd/relay.py) chooses what to send so that this never
  has to happen.
* **Link emulation.** The kernel has no netem, so delay, jitter, loss and bandwidth are emulated
  in user space on the *receive* side: a frame read off the socket is (seeded) dropped or held in
  a scheduled-delivery queue until its delivery time, and :meth:`NeighbourLinks.recv` only hands
  out messages that are due. The sender's bytes go out at once and are counted when sent (a lost
  message was still transmitted). Delivery times are taken from the moment a frame is read, so
  the emulated delay is a lower bound; callers that may be busy keep reading through
  :meth:`NeighbourLinks.pump` (the agent does while it waits for the next STEP).
* **Liveness** (agentd/liveness.py). A HEARTBEAT goes to any neighbour nothing was sent to for a
  heartbeat interval, and every valid frame read is stamped as proof of life. Heartbeats bypass
  the emulator (they are about the real link; passing them through it would shift the seeded loss
  stream away from the in-process reference). The DEALERs also run ZMTP heartbeats, so libzmq
  closes a connection whose peer stopped answering and reconnects by itself when the link heals;
  the inbox drops its end of a dead connection sooner, by TCP keepalive, so the neighbour's
  identity is free again when it reconnects; a short send queue bounds the stale frames delivered
  after a heal (the relay drops them by their step counter).
* **Security.** Optional CurveZMQ (envserver/curve.py): the inbox admits only the neighbours'
  keys; a socket monitor (envserver/sockwatch.py) counts connections libzmq dropped — an
  oversized frame among them — and refused handshakes.
"""
from __future__ import annotations

import heapq
import logging
import math
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import zmq

from envserver import protocol as P
from envserver.curve import Curve, agent_name
from envserver.sockwatch import SocketWatch

from .liveness import DEFAULT_TIMEOUT_S, Liveness

log = logging.getLogger("agentd.links")

PHASES = ("rollout", "update", "control")
#: message types an agent accepts from a neighbour: the relay's STATE and the update-phase
#: TOKEN (agentd/token_walk.py) and QVALS (shadow-PG)
AGENT_MESSAGE_TYPES = {"STATE", "TOKEN", "QVALS"}
#: per-neighbour send queue (messages): enough for a few steps of κ rounds, few enough that a healed
#: partition delivers only a short burst of stale frames
SEND_QUEUE = 100
#: seconds between drains of the inbox's socket monitor in :meth:`NeighbourLinks.pump` (every lockstep
#: before: ~4 % of an agent's Python time, bench/NOTES.md §12). Its queue holds 1,000 events (the
#: monitor PAIR's default high-water mark), so only >20,000 connection events a second could overflow it
WATCH_EVERY_S = 0.05


def phase_of(msg_type: str, n_entries: int) -> str:
    """The accounting phase of a relay message: a STATE carrying rows is rollout traffic, an empty
    STATE is a control marker; anything else is learner traffic exchanged around updates."""
    if msg_type == "STATE":
        return "rollout" if n_entries else "control"
    return "update"


# --------------------------------------------------------------------------- link model


@dataclass(frozen=True)
class LinkSpec:
    """One direction of one edge: what the emulator does to each message.

    delay_ms / jitter_ms: delivery after delay + U(−jitter, +jitter) ms (never negative), in order
    (a link never reorders, as a ZMQ/TCP stream would not); loss: probability that a message is
    dropped, independently per message; bandwidth_bps: serialisation at this rate, messages
    queueing behind each other (0 = unlimited).
    """

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    bandwidth_bps: float = 0.0

    FIELDS = ("delay_ms", "jitter_ms", "loss", "bandwidth_bps")

    @property
    def ideal(self) -> bool:
        return not (self.delay_ms or self.jitter_ms or self.loss or self.bandwidth_bps)

    @property
    def timed(self) -> bool:
        """Whether delivery depends on the clock (needs real time, unlike loss alone)."""
        return bool(self.delay_ms or self.jitter_ms or self.bandwidth_bps)

    def validate(self, where: str = "link") -> "LinkSpec":
        for name in self.FIELDS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{where}: {name} must be a finite number >= 0, got {v!r}")
        if self.loss >= 1:
            raise ValueError(f"{where}: loss must be in [0, 1), got {self.loss}")
        return self

    def worst_latency_s(self, nbytes: int = 0) -> float:
        """Upper bound on one message's time on the link when the link is otherwise idle."""
        ser = nbytes * 8 / self.bandwidth_bps if self.bandwidth_bps else 0.0
        return (self.delay_ms + self.jitter_ms) / 1000 + ser


def link_specs(graph: Any, me: int, default: LinkSpec = LinkSpec()) -> dict[int, LinkSpec]:
    """The emulated link from each neighbour to ``me``: the CLI defaults, overridden field by field
    by the edge's attributes in the topology file (``delay_ms``, ``jitter_ms``, ``loss``,
    ``bandwidth_bps``). Both directions of an edge get the same parameters."""
    out = {}
    for peer in sorted(graph.adj[me]):
        attrs = graph.edges[me, peer]
        values = {}
        for name in LinkSpec.FIELDS:
            v = attrs.get(name, getattr(default, name))
            try:
                values[name] = float(v)  # GraphML hands strings through
            except (TypeError, ValueError):
                raise ValueError(f"edge {min(me, peer)}-{max(me, peer)}: {name} must be a number, "
                                 f"got {v!r}") from None
        out[peer] = LinkSpec(**values).validate(f"edge {min(me, peer)}-{max(me, peer)}")
    return out


class LinkEmulator:
    """The receive side of one directed link: decides each message's fate with its own seeded RNG
    (a stream per (seed, sender, receiver), so a run's losses are reproducible and independent of
    every other link's traffic)."""

    def __init__(self, spec: LinkSpec, seed: int, src: int, dst: int) -> None:
        self.spec = spec
        self.rng = np.random.default_rng([seed & 0xFFFFFFFF, src, dst, 0x6C696E6B])
        self.busy_until = -math.inf
        self.last_delivery = -math.inf

    def admit(self, nbytes: int, now: float) -> float | None:
        """Delivery time of a message read at ``now``, or None if the link drops it."""
        s = self.spec
        start = max(now, self.busy_until)  # queue behind what is still being serialised
        self.busy_until = start + (nbytes * 8 / s.bandwidth_bps if s.bandwidth_bps else 0.0)
        if s.loss and self.rng.random() < s.loss:
            return None  # transmitted (it used the link) but never arrives
        jitter = self.rng.uniform(-s.jitter_ms, s.jitter_ms) if s.jitter_ms else 0.0
        at = self.busy_until + max(0.0, s.delay_ms + jitter) / 1000
        at = max(at, self.last_delivery)  # in order
        self.last_delivery = at
        return at


# --------------------------------------------------------------------------- budget


class TokenBucket:
    """Hard budget: ``rate`` bytes per env lockstep, at most ``depth`` saved up.

    :meth:`refill` is called once per lockstep t; tokens accrue for the steps elapsed since the last
    refill (a fresh bucket counts from the start of the current sending period, so a restarted
    agent can keep the shared schedule). For a run that starts at t = 0 this guarantees, for every
    t, bytes sent in steps 0..t ≤ rate·(t+1), and no single step sends more than ``depth``.
    """

    def __init__(self, rate: float, depth: float, period: int = 1) -> None:
        if rate <= 0 or depth < rate or period < 1:
            raise ValueError(f"bad token bucket: rate {rate}, depth {depth}, period {period}")
        self.rate, self.depth, self.period = float(rate), float(depth), period
        self.tokens = 0.0
        self.last_t: int | None = None

    def refill(self, t: int) -> None:
        if self.last_t is None:
            self.last_t = t - t % self.period - 1
        if t > self.last_t:
            self.tokens = min(self.depth, self.tokens + self.rate * (t - self.last_t))
            self.last_t = t

    def try_spend(self, n: int) -> bool:
        if n > self.tokens + 1e-9:
            return False
        self.tokens -= n
        return True


# --------------------------------------------------------------------------- counters


@dataclass
class LinkCounters:
    """Cumulative traffic, keyed by (peer, phase); losses and budget refusals keyed by peer."""

    bytes_sent: dict = field(default_factory=lambda: defaultdict(int))
    bytes_received: dict = field(default_factory=lambda: defaultdict(int))
    msgs_sent: dict = field(default_factory=lambda: defaultdict(int))
    msgs_received: dict = field(default_factory=lambda: defaultdict(int))
    msgs_lost: dict = field(default_factory=lambda: defaultdict(int))  # dropped by the emulated link
    bytes_lost: dict = field(default_factory=lambda: defaultdict(int))
    budget_blocked: dict = field(default_factory=lambda: defaultdict(int))  # refused by the bucket
    msgs_unsent: dict = field(default_factory=lambda: defaultdict(int))  # send queue full (peer unreachable)
    rejected: int = 0
    bytes_sent_all: int = 0  # Σ bytes_sent, kept as it grows: the relay reads it twice per exchange

    def totals(self) -> dict[str, int]:
        out = {name: sum(getattr(self, name).values())
               for name in ("bytes_sent", "bytes_received", "msgs_sent", "msgs_received", "msgs_lost",
                            "bytes_lost", "budget_blocked", "msgs_unsent")}
        out["rejected_frames"] = self.rejected
        return out

    def by_phase(self) -> dict[str, int]:
        """bytes_sent_<phase>, bytes_received_<phase>, msgs_sent_<phase> for every phase (zeros
        included, so metric rows always carry the same keys)."""
        out: dict[str, int] = {f"{name}_{ph}": 0 for name in ("bytes_sent", "bytes_received", "msgs_sent")
                               for ph in PHASES}
        for name in ("bytes_sent", "bytes_received", "msgs_sent"):
            for (_, phase), n in getattr(self, name).items():
                out[f"{name}_{phase}"] = out.get(f"{name}_{phase}", 0) + n
        return out

    def sent_to(self, phase: str) -> dict[str, int]:
        """Messages sent to each peer in one phase ({"peer id": count}), e.g. where the update-phase
        TOKEN / QVALS messages went."""
        return {str(p): n for (p, ph), n in sorted(self.msgs_sent.items()) if ph == phase}

    def count_sent(self, peer: int, phase: str, nbytes: int) -> None:
        self.bytes_sent[(peer, phase)] += nbytes
        self.bytes_sent_all += nbytes
        self.msgs_sent[(peer, phase)] += 1

    def count_received(self, peer: int, phase: str, nbytes: int) -> None:
        self.bytes_received[(peer, phase)] += nbytes
        self.msgs_received[(peer, phase)] += 1


# --------------------------------------------------------------------------- the links


class NeighbourLinks:
    def __init__(self, ctx: zmq.Context, me: int, listen: str, peers: dict[int, str],
                 max_message_bytes: int = P.DEFAULT_MAX_MESSAGE_BYTES,
                 emulation: Mapping[int, LinkSpec] | None = None, seed: int = 0,
                 budget: TokenBucket | None = None, clock: Callable[[], float] = time.monotonic,
                 heartbeat_timeout_s: float = DEFAULT_TIMEOUT_S, curve: Curve | None = None) -> None:
        self.me = me
        self.peers = dict(peers)
        self.counters = LinkCounters()
        self.liveness = Liveness(self.peers, heartbeat_timeout_s)
        # the last relay round (step, round) this agent has sent, which its heartbeats carry, and the
        # same as last told by each neighbour: see :meth:`has_sent`
        self.progress: tuple[int, int] = (0, 0)
        self.peer_progress: dict[int, tuple[int, int]] = {}
        self.budget = budget
        self.clock = clock
        self.emulators = {p: LinkEmulator(spec, seed, p, me) for p, spec in (emulation or {}).items()
                          if p in self.peers and not spec.ideal}
        self.timed = any(e.spec.timed for e in self.emulators.values())
        self._held: list[tuple[float, int, int, P.Message, int]] = []  # (due, seq, peer, msg, bytes)
        # the one inbox, sorted by kind: delivered messages that their consumer has not taken yet
        self.states: deque[tuple[int, P.Message]] = deque()  # STATE frames, for the relay
        self.updates: list[tuple[int, P.Message]] = []  # TOKEN / QVALS, for the update phase
        self._seq = 0
        self.curve = curve
        self.inbox = ctx.socket(zmq.ROUTER)
        self.inbox.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.inbox.setsockopt(zmq.LINGER, 0)
        self._receiver = P.TimedReceiver(self.inbox)  # waits in a blocking receive, not a Poller
        # A ROUTER ignores a connection whose identity is still held by an older one (and later reads
        # its data frames as identities), so the inbox must drop a dead connection before the
        # neighbour's DEALER gives up on it and reconnects. Not ROUTER_HANDOVER: without CurveZMQ
        # anyone could then claim a neighbour's id and cut its link (tests/test_security.py). TCP
        # keepalive, probing after timeout/5 of silence, gives up after about 3/5 of the heartbeat
        # timeout. Not a ZMTP heartbeat timer: libzmq 4.3.5 aborts (!_io_error in
        # stream_engine_base.cpp) when that timer fires on a connection flooded past the receive
        # high-water mark, and anyone who can connect can flood an inbox.
        probe_s = max(1, round(heartbeat_timeout_s / 5))
        self.inbox.setsockopt(zmq.TCP_KEEPALIVE, 1)
        self.inbox.setsockopt(zmq.TCP_KEEPALIVE_IDLE, probe_s)
        self.inbox.setsockopt(zmq.TCP_KEEPALIVE_INTVL, probe_s)
        self.inbox.setsockopt(zmq.TCP_KEEPALIVE_CNT, 2)
        if curve is not None:
            curve.serve(self.inbox, admit=[agent_name(p) for p in self.peers])
        self.watch = SocketWatch(self.inbox)
        self._watch_at = -math.inf  # when pump() drains the monitor next
        self.inbox.bind(listen)
        self.out: dict[int, zmq.Socket] = {}
        for peer, address in sorted(self.peers.items()):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.IDENTITY, str(me).encode())
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, SEND_QUEUE)
            s.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
            # reconnect within about a second of a healed link (the kernel's SYN backoff would take minutes)
            s.setsockopt(zmq.RECONNECT_IVL, 100)
            s.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            s.setsockopt(zmq.CONNECT_TIMEOUT, 1000)
            self._zmtp_heartbeats(s, heartbeat_timeout_s)
            if curve is not None:
                curve.connect_to(s, agent_name(peer))
            s.connect(address)
            self.out[peer] = s
        self._unsent_logged: set[int] = set()

    @staticmethod
    def _zmtp_heartbeats(sock: zmq.Socket, timeout_s: float) -> None:
        """libzmq pings the peer and closes the connection when it stops answering, and the TTL makes
        the peer close its end too: a partitioned TCP connection would otherwise stay up for minutes
        and flush its backlog on heal."""
        ms = max(1, int(timeout_s * 1000))
        sock.setsockopt(zmq.HEARTBEAT_IVL, max(1, ms // 5))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, ms)
        sock.setsockopt(zmq.HEARTBEAT_TTL, ms)

    # ------------------------------------------------------------------ send
    def send(self, peer: int, frames: list, phase: str = "rollout") -> bool:
        """Queue one message to a neighbour; never blocks. False if the budget refused it or the
        socket queue was full (both logged and counted)."""
        n = P.wire_size(frames)
        if self.budget is not None and not self.budget.try_spend(n):
            self.counters.budget_blocked[peer] += 1
            log.warning("budget: %d bytes to %d do not fit (%.0f tokens left); message not sent",
                        n, peer, self.budget.tokens)
            return False
        try:
            P.send(self.out[peer], frames)
        except zmq.Again:
            self.counters.msgs_unsent[peer] += 1
            if peer not in self._unsent_logged:  # once per outage, not once per message
                self._unsent_logged.add(peer)
                log.warning("link to %d is full (neighbour unreachable?); messages dropped", peer)
            return False
        self._unsent_logged.discard(peer)
        self.counters.count_sent(peer, phase, n)
        self.liveness.sent(peer, self.clock())
        return True

    def tick(self) -> None:
        """Send the heartbeats that are due. Under a budget a heartbeat is only sent from a full token
        bucket, which the next lockstep's refill fills again, so it never takes bytes a planned
        message needs (a skipped heartbeat costs nothing: data traffic is proof of life too)."""
        due = self.liveness.heartbeats_due(self.clock())
        if not due:
            return
        t, rnd = self.progress
        heartbeat = P.encode("HEARTBEAT", {"from": self.me, "t": t, "round": rnd})
        n = P.wire_size(heartbeat)
        for peer in due:
            b = self.budget
            if b is not None and not (b.tokens >= b.depth and b.rate >= n):
                continue
            self.send(peer, heartbeat, "control")

    def has_sent(self, peer: int, key: tuple[int, int]) -> bool:
        """Has ``peer`` told us (in a heartbeat) that it already sent its relay round ``key``, with
        nothing of it still held by our link emulator? Then a message of that round we are waiting
        for is lost: TCP loses what was in flight when a connection is torn down and rebuilt (a
        partition, a reconnect), and waiting out the round slot would stall the lockstep for it."""
        if self.peer_progress.get(peer, (0, 0)) < key:
            return False
        return not any(held[2] == peer for held in self._held)

    def link_stats(self) -> dict[str, int]:
        """Liveness and socket-monitor counters for the metric rows."""
        return {**self.liveness.stats(), **self.watch.poll()}

    # ------------------------------------------------------------------ receive
    def _read_one(self, frames: list[zmq.Frame] | None = None) -> tuple[int, P.Message, int] | None:
        """Validate one frame set off the inbox (read here if not given: the caller knows one is there)."""
        if frames is None:
            frames = P.recv(self.inbox)  # zmq.Frames: the identity frame carries the key's name under CurveZMQ
        ident, body = frames[0].bytes, frames[1:]
        try:
            peer = int(ident.decode())
            if peer not in self.peers:
                raise P.ProtocolError(f"message from {ident[:16]!r}, which is not a neighbour")
            if self.curve is not None and frames[0].get("User-Id") != agent_name(peer):
                raise P.ProtocolError(f"{frames[0].get('User-Id')}'s key claims to be neighbour {peer}")
            msg = P.decode(body)
            if (msg.type not in AGENT_MESSAGE_TYPES and msg.type != "HEARTBEAT") or msg.fields.get("from") != peer:
                raise P.ProtocolError(f"neighbour {peer} sent {msg.type} claiming to be {msg.fields.get('from')}")
        except (ValueError, UnicodeDecodeError) as err:  # ProtocolError is a ValueError
            self.counters.rejected += 1
            log.warning("refused a neighbour frame: %s", err)
            return None
        self.liveness.heard(peer, self.clock())
        if msg.type == "HEARTBEAT":  # proof of life and progress only; never delivered, never emulated
            self.peer_progress[peer] = (msg["t"], msg["round"])
            self.counters.count_received(peer, "control", P.wire_size(body))
            return None
        return peer, msg, P.wire_size(body)

    def _admit(self, peer: int, msg: P.Message, n: int, now: float) -> None:
        """Pass a read message through its link's emulator into the delivery queue."""
        emu = self.emulators.get(peer)
        due = now if emu is None else emu.admit(n, now)
        if due is None:
            self.counters.msgs_lost[peer] += 1
            self.counters.bytes_lost[peer] += n
            return
        self._seq += 1
        heapq.heappush(self._held, (due, self._seq, peer, msg, n))

    def pump(self) -> int:
        """Read everything waiting on the socket into the delivery queue without blocking (so that
        emulated delays run from the moment a frame arrived, even while the caller was busy)."""
        got = 0
        self.tick()
        now = self.clock()
        if now >= self._watch_at:  # drain the monitor often: its queue is bounded, a flood would be undercounted
            self.watch.drain()
            self._watch_at = now + WATCH_EVERY_S
        while P.readable(self.inbox):
            item = self._read_one()
            if item is not None:
                self._admit(*item, now=self.clock())
                got += 1
        return got

    def recv(self, timeout_ms: float, phase: str | None = None) -> tuple[int, P.Message] | None:
        """One validated, delivered message from a neighbour, or None when none is due within the
        timeout. ``phase`` overrides the accounting phase (default: :func:`phase_of`)."""
        end = self.clock() + max(0.0, timeout_ms) / 1000
        while True:
            self.tick()
            now = self.clock()
            if self._held and self._held[0][0] <= now:
                _, _, peer, msg, n = heapq.heappop(self._held)
                entries = len(msg.fields.get("origins", ())) if msg.type == "STATE" else 0
                self.counters.count_received(peer, phase or phase_of(msg.type, entries), n)
                return peer, msg
            wake = min(end, self._held[0][0]) if self._held else end
            wait_ms = min(max(0.0, (wake - now) * 1000), self.liveness.interval_s * 1000)
            # one blocking receive, which returns at once when a frame is queued (no readiness question first)
            frames = (self._receiver.recv(math.ceil(wait_ms)) if wait_ms > 0
                      else P.recv(self.inbox) if P.readable(self.inbox) else None)
            if frames is not None:
                item = self._read_one(frames)
                if item is not None:
                    self._admit(*item, now=self.clock())
                continue
            if self.clock() >= end and not (self._held and self._held[0][0] <= self.clock()):
                return None

    def pull(self, timeout_ms: float) -> bool:
        """Take one delivered message into the queue of its kind (:attr:`states` for the relay,
        :attr:`updates` for the update phase); False when none is due within the timeout. Whoever
        reads the wire sorts what it reads, so neither consumer loses the other's messages."""
        item = self.recv(timeout_ms)
        if item is None:
            return False
        (self.states if item[1].type == "STATE" else self.updates).append(item)
        return True

    def next_state(self, timeout_ms: float) -> tuple[int, P.Message] | None:
        """The next STATE frame (queued, or read within the timeout), or None."""
        end = self.clock() + max(0.0, timeout_ms) / 1000
        while not self.states:
            if not self.pull(max(0.0, end - self.clock()) * 1000):
                return None
        return self.states.popleft()

    @property
    def pending(self) -> int:
        """Messages read but not yet due."""
        return len(self._held)

    def close(self) -> None:
        self.watch.close()
        for s in self.out.values():
            s.close(linger=0)
        self.inbox.close(linger=0)
