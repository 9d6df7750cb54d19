"""The agent's one connection to the envserver, and knowing when it must say HELLO again.

The envserver re-admits an agent that speaks (a HELLO, or a late ACT), but an agent that is
waiting for a STEP says nothing. Two things tell it that it has to speak first:

* its TCP connection dropped and came back (a socket monitor sees DISCONNECTED, then CONNECTED):
  the envserver restarted, or the network was cut. The ROUTER on the other side now knows this
  agent by a new routing id and cannot reach it until it says HELLO;
* nothing from the envserver for far longer than a step can take (two ACT deadlines and a margin,
  doubling after each try): the server hangs, or marked this agent down while a frame was lost.

ZeroMQ reconnects by itself, backing off from 100 ms to 5 s between attempts. A WELCOME carries
the server's incarnation, so the agent can tell a restarted server from a reconnected one.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from envserver import protocol as P

log = logging.getLogger("agentd.envlink")

RECONNECT_IVL_MS, RECONNECT_IVL_MAX_MS = 100, 5000
HELLO_RETRY_S, HELLO_RETRY_MAX_S = 2.0, 30.0  # while joining: HELLO again if no WELCOME, backing off
SILENCE_MARGIN_S = 10.0
MAX_SILENCE_FACTOR = 8


class EnvLink:
    """The DEALER to the envserver with its connection monitor (an in-process socket, no network)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, agent: int, incarnation: int,
                 secure: Callable[[zmq.Socket], None] | None = None) -> None:
        """``secure``: sets the socket's CURVE keys (envserver/curve.py) before it connects."""
        self.endpoint, self.agent, self.incarnation = endpoint, agent, incarnation
        self.sock = ctx.socket(zmq.DEALER)
        if secure is not None:
            secure(self.sock)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, P.DEFAULT_MAX_MESSAGE_BYTES)
        self.sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        self.sock.connect(endpoint)
        self._receiver = P.TimedReceiver(self.sock)
        self.first_welcome: P.Message | None = None
        self.server_incarnation: int | None = None
        self.deadline_s = 30.0
        self._dropped = False
        self._quiet_since = time.monotonic()
        self._silence_factor = 1

    def hello(self, resume: bool) -> None:
        self.sock.send_multipart(P.encode("HELLO", {"agent": self.agent, "version": P.PROTOCOL_VERSION,
                                                    "resume": resume, "incarnation": self.incarnation}))
        self._quiet_since = time.monotonic()

    def join(self, resume: bool, timeout_s: float, should_stop: Callable[[], bool]) -> P.Message:
        """HELLO until a WELCOME comes (the envserver may not be up yet); raise after timeout_s."""
        end = time.monotonic() + timeout_s
        retry = HELLO_RETRY_S
        self.hello(resume)
        next_hello = time.monotonic() + retry
        while time.monotonic() < end and not should_stop():
            if not self.sock.poll(200):
                if time.monotonic() >= next_hello:
                    retry = min(2 * retry, HELLO_RETRY_MAX_S)
                    next_hello = time.monotonic() + retry
                    self.hello(resume)
                continue
            msg = P.decode(self.sock.recv_multipart())
            if msg.type == "WELCOME":
                self.welcomed(msg)
                return msg
            if msg.type == "ERROR":
                raise RuntimeError(f"envserver refused HELLO: {msg['reason']}")
        raise TimeoutError(f"no WELCOME from {self.endpoint} within {timeout_s:.0f} s")

    def welcomed(self, msg: P.Message) -> bool:
        """Take note of a WELCOME; True if it comes from a restarted envserver. A restarted server
        that serves another task, team or number of env copies is refused with one line."""
        first = self.first_welcome
        if first is None:
            self.first_welcome = first = msg
        for key in ("task", "n_agents", "n_envs"):
            if msg[key] != first[key]:
                raise RuntimeError(f"the envserver at {self.endpoint} now serves {key}={msg[key]!r}, "
                                   f"this agent joined with {first[key]!r}")
        restarted = self.server_incarnation is not None and msg["incarnation"] != self.server_incarnation
        self.server_incarnation = msg["incarnation"]
        self.deadline_s = float(msg["deadline_s"])
        return restarted

    def recv(self, timeout_ms: int | None = None) -> P.Message | None:
        """The envserver's next message: waiting up to ``timeout_ms`` for it (None if none came), or,
        without a timeout, one already there. The wait is libzmq's own blocking receive, not a Python
        poll loop: one call per STEP instead of a poll, a readiness dict and a receive."""
        if timeout_ms is not None:
            frames = self._receiver.recv(timeout_ms)
        else:  # the caller polled: a message is there
            frames = P.recv(self.sock, zmq.NOBLOCK) if P.readable(self.sock) else None
        if frames is None:
            return None
        msg = P.decode(frames)
        self._quiet_since = time.monotonic()
        self._silence_factor = 1
        return msg

    def act(self, t: int, action: np.ndarray) -> None:
        """This agent's ACT for step ``t``; the next STEP may take up to a deadline."""
        P.send(self.sock, P.encode("ACT", {"agent": self.agent, "t": t}, {"action": action}), block=True)
        self._quiet_since = time.monotonic()

    def needs_hello(self) -> str | None:
        """Why this agent should say HELLO again now, or None. Call while idle."""
        while P.readable(self.monitor):
            event = recv_monitor_message(self.monitor)["event"]
            if event == zmq.EVENT_DISCONNECTED:
                self._dropped = True
            elif event == zmq.EVENT_CONNECTED and self._dropped:
                self._dropped = False
                return "the connection to the envserver dropped and came back"
        silence = self._silence_factor * (2 * self.deadline_s + SILENCE_MARGIN_S)
        if time.monotonic() - self._quiet_since > silence:
            self._silence_factor = min(2 * self._silence_factor, MAX_SILENCE_FACTOR)
            return f"nothing from the envserver for {silence:.0f} s"
        return None

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)
