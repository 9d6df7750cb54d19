"""Counts what libzmq does to a server socket's connections behind the application's back.

Why: ZMQ_MAXMSGSIZE makes libzmq close a connection that announces a frame over the limit, and a
failed CURVE handshake never reaches the application either. Both are silent unless someone
listens to the socket monitor, so the envserver (status.json, events) and every agent inbox
(metric rows) count them here:

* ``conn_dropped`` — established connections that were closed: a peer leaving, a peer silent past
  a ZMTP heartbeat or TCP keepalive timeout, or **a frame over the maximum message size**. libzmq
  reports all of them as one DISCONNECTED event without a reason, so they cannot be told apart;
  on a server whose clients stay connected for the whole run, any increase is abuse or a fault.
* ``handshake_failed`` — connections refused before any frame: a plaintext client on a CURVE
  socket, a wrong server key, garbage instead of a ZMTP greeting.
* ``auth_denied`` — handshakes the ZAP handler refused (a key that is not authorised there).

Every failed handshake is followed by one DISCONNECTED event, which is therefore not counted as
a dropped connection.
"""
from __future__ import annotations

import zmq
from zmq.utils.monitor import parse_monitor_message

from . import protocol as P

_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)


class SocketWatch:
    """Drains a socket's monitor on demand (``poll``), so it needs no thread of its own."""

    def __init__(self, sock: zmq.Socket) -> None:
        events = zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        for e in _FAILED:
            events |= e
        self.monitor = sock.get_monitor_socket(events)
        self.disconnects = 0
        self.failed = 0
        self.denied = 0

    def poll(self) -> dict[str, int]:
        """Read the events queued so far and return the counters (cumulative)."""
        self.drain()
        return self.counters()

    def drain(self) -> None:
        """Read the events queued so far into the counters."""
        while P.readable(self.monitor):
            event = parse_monitor_message(self.monitor.recv_multipart())["event"]
            if event == zmq.EVENT_DISCONNECTED:
                self.disconnects += 1
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.denied += 1
            elif event in _FAILED:
                self.failed += 1

    def counters(self) -> dict[str, int]:
        return {"conn_dropped": max(0, self.disconnects - self.failed - self.denied),
                "handshake_failed": self.failed, "auth_denied": self.denied}

    def close(self) -> None:
        self.monitor.close(linger=0)
