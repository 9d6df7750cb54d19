"""What `ps`, `top` and psutil show for a process forked from the zygote (compose/run/forkserver.py).

A forked agent would otherwise show the zygote's command line. Each one rewrites its own: the
kernel reads /proc/PID/cmdline from the process's original argument area ([arg_start, arg_end) in
/proc/PID/stat, fields 48–49), so writing the agent's command there — what `python -m agentd.main
…` would have had — makes `ps`, `pgrep -f` and every tool that finds agents by their command line
work as with spawned agents. The zygote is started with a blank argument that makes this area
large enough (:func:`room_for`); what does not fit is cut. The short name in /proc/PID/comm (what
`top` shows) becomes the agent's name ("agent-3"). This is setproctitle's technique, without its
dependency.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

PR_SET_NAME = 15  # linux/prctl.h


def room_for(commands: list[list[str]]) -> int:
    """Bytes of argument area a zygote needs to show the longest of ``commands``, plus slack."""
    return max((len(_encode(c)) for c in commands), default=0) + 256


def _encode(argv: list[str]) -> bytes:
    return b"".join(a.encode() + b"\0" for a in argv)


def _arg_area() -> tuple[int, int] | None:
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # fields 48 and 49; fields[0] is field 3
    except (OSError, IndexError, ValueError):
        return None
    return (start, end) if 0 < start < end else None


def set_title(argv: list[str], name: str) -> None:
    """Show ``argv`` as this process's command line and ``name`` as its short name, as far as the
    argument area allows; nothing changes where /proc does not tell where that area is."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    area = _arg_area()
    if area is None:
        return
    start, end = area
    size = end - start
    with open("/proc/self/cmdline", "rb") as f:  # the area is ours only if it holds what the kernel shows
        if ctypes.string_at(start, size) != f.read():
            return
    text = _encode(argv)[:size - 1]
    ctypes.memmove(start, text, len(text))
    ctypes.memset(start + len(text), 0, size - len(text))
