"""CurveZMQ for every khop socket: key files, who may connect where, and the ZAP handler that decides.

Why: without it anyone who can reach a port can say HELLO as agent 3 or inject STATE rows into a
critic. With ``--curve DIR`` every connection is encrypted and authenticated, and a server socket
admits a client only if the client's public key is listed for it:

* the envserver admits every agent key listed in ``DIR/authorized_keys``;
* agent i's inbox admits only its direct neighbours' keys (``agent-<j>`` listed there), so a
  compromised agent can talk to its neighbours and the envserver, and to nobody else.

Key files (``khop keys``, compose/run/keys.py): ``DIR/<name>.key`` (public certificate) and
``DIR/<name>.key_secret`` (both keys) in ZeroMQ's ZPL certificate format, names ``envserver`` and
``agent-<i>``, all mode 0600; ``DIR/authorized_keys``: one ``<name> <z85 public key>`` per line.

Decisions are taken by our own ZAP handler (one thread per process context): a refused client
never completes the handshake, so no frame of it reaches the application, and the refusal is
counted (``auth_denied``). A plaintext client fails the handshake before ZAP is asked; the socket
monitor counts that (envserver/sockwatch.py).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Iterable

import zmq
import zmq.auth
from zmq.utils import z85

log = logging.getLogger("khop.curve")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
AUTHORIZED = "authorized_keys"
SERVER_NAME = "envserver"


def agent_name(i: int) -> str:
    return f"agent-{i}"


def read_authorized(path: Path) -> dict[bytes, str]:
    """``authorized_keys``: {z85 public key: name}; blank lines and lines starting with ``#`` ignored
    (only whole lines: ``#`` is a z85 character)."""
    out: dict[bytes, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[1]) != 40:
            raise ValueError(f"{path}:{n}: expected '<name> <40-character z85 public key>'")
        try:
            z85.decode(parts[1].encode())
        except ValueError:
            raise ValueError(f"{path}:{n}: {parts[1]!r} is not a z85 key") from None
        out[parts[1].encode()] = parts[0]
    return out


class ZapHandler:
    """Answers ZeroMQ's authentication requests for every server socket of one context.

    ``domains`` maps a socket's ZAP domain to the keys it admits ({z85 key: name}); the name
    becomes the connection's User-Id."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.ctx = ctx
        self.domains: dict[str, dict[bytes, str]] = {}
        self.denied = 0
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="zap", daemon=True)
        self._thread.start()
        self._bound.wait(10)
        if self._error is not None:
            raise RuntimeError(f"cannot start the ZAP handler: {self._error}")

    def _run(self) -> None:
        sock = self.ctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as err:
            self._error = err
            self._bound.set()
            sock.close()
            return
        self._bound.set()
        try:
            while not self._stop.is_set():
                if sock.poll(200):
                    sock.send_multipart(self._answer(sock.recv_multipart()))
        except zmq.ZMQError:  # context terminated under us at shutdown
            pass
        finally:
            sock.close(linger=0)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        version, request_id, domain, address, _identity, mechanism, *credentials = request
        name = None
        key = b"?"
        if mechanism == b"CURVE" and credentials and len(credentials[0]) == 32:
            key = z85.encode(credentials[0])
            name = self.domains.get(domain.decode(errors="replace"), {}).get(key)
        if name is None:
            self.denied += 1
            if self.denied <= 100:
                log.warning("refused a %s connection from %s to %s: key %s is not authorised there",
                            mechanism.decode(errors="replace"), address.decode(errors="replace"),
                            domain.decode(errors="replace"), key.decode())
            return [version, request_id, b"400", b"key not authorised", b"", b""]
        return [version, request_id, b"200", b"OK", name.encode(), b""]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


class Curve:
    """One process's keys: makes its server sockets CURVE servers that admit only listed keys, and
    its client sockets CURVE clients of a named server."""

    def __init__(self, keys_dir: Path, me: str) -> None:
        self.dir = Path(keys_dir)
        self.me = me
        if not self.dir.is_dir():
            raise ValueError(f"--curve {keys_dir}: no such directory (make one with `khop keys`)")
        self.public, self.secret = self._load(f"{me}.key_secret", secret=True)
        auth = self.dir / AUTHORIZED
        if not auth.exists():
            raise ValueError(f"--curve {keys_dir}: {AUTHORIZED} is missing")
        self.authorized = read_authorized(auth)
        self._zap: ZapHandler | None = None

    def _load(self, filename: str, secret: bool) -> tuple[bytes, bytes | None]:
        path = self.dir / filename
        if not path.exists():
            raise ValueError(f"--curve {self.dir}: key file {filename} is missing")
        try:
            public, sec = zmq.auth.load_certificate(path)
        except (ValueError, OSError) as err:
            raise ValueError(f"--curve {self.dir}: cannot read {filename}: {err}") from None
        if secret and sec is None:
            raise ValueError(f"--curve {self.dir}: {filename} holds no secret key")
        return public, sec

    def public_key(self, name: str) -> bytes:
        return self._load(f"{name}.key", secret=False)[0]

    def serve(self, sock: zmq.Socket, admit: Iterable[str] | None = None) -> None:
        """Make ``sock`` a CURVE server (before bind) admitting the authorised keys whose names are in
        ``admit`` (None: every authorised key)."""
        names = None if admit is None else set(admit)
        allowed = {k: n for k, n in self.authorized.items() if names is None or n in names}
        if self._zap is None:
            self._zap = ZapHandler(sock.context)
        self._zap.domains[self.me] = allowed
        sock.setsockopt(zmq.ZAP_DOMAIN, self.me.encode())
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SERVER, 1)

    def connect_to(self, sock: zmq.Socket, server: str) -> None:
        """Make ``sock`` a CURVE client (before connect) of the server whose key file is ``server``."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.public_key(server))
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)

    def close(self) -> None:
        if self._zap is not None:
            self._zap.close()
