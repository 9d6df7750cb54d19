"""The launcher's side of the zygote (compose/run/forkserver.py): start it, ask it for agents, and
hold each forked agent as a Popen-like handle the supervisor can poll, signal and wait for.

Why a subreaper and a double fork rather than agents that stay the zygote's children: the launcher
then is each agent's real parent, so ``waitpid`` gives it the exit status directly (what the
supervisor's restart and start-up-failure rules read), PR_SET_PDEATHSIG ties each agent to the
launcher as for a spawned one, and a zygote that dies takes nothing with it — the agents keep
running and later starts fall back to spawning. The alternative (the zygote reports exits over its
socket) puts a second process between the supervisor and every exit status.

Where forking is impossible — not Linux, no subreaper, a zygote that cannot preload or dies — the
launcher spawns agents as before (:func:`start_zygote` says why in one line).
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
READY_TIMEOUT_S = 120.0  # preloading torch takes 2–4 s on an idle 2-core machine, 10× that when loaded
REPLY_TIMEOUT_S = 60.0  # one fork request (a fork of a ~300 MB process takes milliseconds)


class ZygoteError(RuntimeError):
    """The zygote cannot fork (any more); the message says why in one line."""


class ForkedProcess:
    """Popen's interface (pid, args, returncode, poll, wait, send_signal, terminate, kill) over an
    agent the zygote forked and the kernel re-parented to this process."""

    def __init__(self, pid: int, args: list[str]) -> None:
        self.pid, self.args = pid, args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: its status is lost (Popen.poll does the same)
                self.returncode = 0
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)  # -N for signal N, as Popen
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while self.poll() is None:
            if end is not None and time.monotonic() >= end:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(delay)
            delay = min(2 * delay, 0.05)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # never signal a pid that was reaped and may be someone else's now
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def set_subreaper(on: bool) -> None:
    """Make orphaned descendants of this process its children (PR_SET_CHILD_SUBREAPER)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


class Zygote:
    """A running zygote: :meth:`fork` starts one agent from it, :meth:`close` ends it."""

    def __init__(self, run_dir: Path, room: int, spawn: Callable[..., subprocess.Popen]) -> None:
        """Start the zygote process (it preloads in the background; :meth:`fork` waits for it).
        ``room``: bytes its argument area must hold (compose/run/proctitle.py room_for)."""
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.log = Path(run_dir) / "zygote" / "log.txt"
        try:
            cmd = [sys.executable, "-m", "compose.run.forkserver", str(theirs.fileno()), str(os.getpid()), " " * room]
            self.proc = spawn(cmd, self.log, pass_fds=(theirs.fileno(),))
        except BaseException:
            self.sock.close()
            raise
        finally:
            theirs.close()
        self.ready: dict | None = None

    def _receive(self, timeout: float, what: str) -> dict:
        end = time.monotonic() + timeout
        while True:
            self.sock.settimeout(min(1.0, max(0.01, end - time.monotonic())))
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                if self.proc.poll() is not None:
                    raise ZygoteError(f"the zygote exited with {self.proc.returncode} {what}; see {self.log}") from None
                if time.monotonic() >= end:
                    raise ZygoteError(f"the zygote did not answer within {timeout:g} s {what}") from None
                continue
            except OSError as err:
                raise ZygoteError(f"the zygote's socket failed {what}: {err}") from None
            if not data:
                raise ZygoteError(f"the zygote closed its socket {what}; see {self.log}")
            reply = json.loads(data)
            if "error" in reply:
                raise ZygoteError(f"{reply['error']} ({what})")
            return reply

    def wait_ready(self) -> dict:
        """Block until the zygote has preloaded; its ready message (pid, preload_s)."""
        if self.ready is None:
            self.ready = self._receive(READY_TIMEOUT_S, "while preloading")
        return self.ready

    def fork(self, name: str, cmd: list[str], log_path: Path) -> ForkedProcess:
        """Start ``cmd`` (``python -m MODULE ARGS…``) as a child forked from the zygote, its
        stdout and stderr appended to ``log_path``. Raises ZygoteError if the zygote cannot."""
        if cmd[1:2] != ["-m"] or len(cmd) < 3:
            raise ValueError(f"the zygote runs `python -m MODULE …` commands, not {cmd[:3]}")
        self.wait_ready()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # opened here: errors are ours
        try:
            request = {"name": name, "module": cmd[2], "argv": cmd[3:], "title": cmd}
            socket.send_fds(self.sock, [json.dumps(request).encode()], [fd])
        except OSError as err:
            raise ZygoteError(f"the zygote's socket failed while forking {name}: {err}") from None
        finally:
            os.close(fd)
        return ForkedProcess(self._receive(REPLY_TIMEOUT_S, f"while forking {name}")["pid"], cmd)

    def close(self, grace_s: float = 5.0) -> None:
        """End the zygote (end of file on its socket); agents already forked are not affected."""
        self.sock.close()
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_zygote(run_dir: Path, commands: list[list[str]],
                 spawn: Callable[..., subprocess.Popen]) -> tuple[Zygote | None, str]:
    """A zygote for this run and "" — or None and the reason agents must be spawned instead.
    On success this process is a subreaper until :func:`set_subreaper` (False) is called."""
    from .proctitle import room_for

    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return None, f"forking agents needs Linux (this is {sys.platform})"
    try:
        set_subreaper(True)
    except OSError as err:
        return None, str(err)
    try:
        return Zygote(run_dir, room_for(commands), spawn), ""
    except OSError as err:
        set_subreaper(False)
        return None, f"the zygote could not start: {err}"
