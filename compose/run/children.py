"""What the launcher reads of a child process's files in the run directory: whether it got past
its start-up, and its last words (the last line of its log.txt).

Past start-up means the child has done everything that can fail for a bad option, a missing file,
a taken port or a resource that is not there, and is about to step:
- an agent has written ``agent-<i>/learner_config.json`` — after its WELCOME, its inbox bind, its
  learner and its checkpoint load (agentd/core.py);
- the envserver has written ``envserver/status.json`` with ``started_at`` — after every agent
  joined and its first step.
"Has written" is "the file changed since this process was spawned" (inode, mtime, size), not a
comparison of clocks, so a run directory on NFS whose server's clock differs cannot mislead it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path

_PREFIX = re.compile(r"^\S+: error: ")  # "agentd: error: ", "envserver: error: ", "agentd[3]: error: "


class ChildFiles:
    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        self._at_spawn: dict[str, tuple | None] = {}

    def _marker(self, name: str) -> Path:
        return self.dir / name / ("status.json" if name == "envserver" else "learner_config.json")

    def spawned(self, name: str) -> None:
        """Call when ``name`` is (re)started: its marker must change from here on."""
        self._at_spawn[name] = _signature(self._marker(name))

    def past_startup(self, name: str) -> bool:
        now = _signature(self._marker(name))
        if now is None or now == self._at_spawn.get(name):
            return False
        if name != "envserver":
            return True
        try:
            return json.loads(self._marker(name).read_text()).get("started_at") is not None
        except (OSError, ValueError):
            return False

    def log(self, name: str) -> Path:
        return self.dir / name / "log.txt"

    def last_words(self, name: str) -> str:
        """The last non-empty line of the child's log.txt, without its ``prog: error:`` prefix; if
        there is none — a disk too full to take it — the free space, which then says why."""
        try:
            with open(self.log(name), "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
                tail = f.read().decode("utf-8", errors="replace")
        except OSError:
            tail = ""
        lines = [line.strip() for line in tail.splitlines() if line.strip()]
        if lines:
            return _PREFIX.sub("", lines[-1])
        return f"its log.txt has no last line; {shutil.disk_usage(self.dir).free / 1024:.0f} KiB free at {self.dir}"


def _signature(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def how_it_ended(code: int) -> str:
    """``exit 2``, or ``killed by SIGKILL`` for a negative Popen return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"
