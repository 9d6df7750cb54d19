"""`khop run --restart`: bring back any child process that dies, with backoff and a limit.

Why a restart is all it takes: an agent resumes from its newest checkpoint by default and says
HELLO{resume}; the envserver re-admits it at the current step. A restarted envserver continues the
run's step counter and budget from its clock file, and the agents notice the new connection and
say HELLO again. So the supervisor only has to notice a death, wait (exponential backoff, so a
process that dies at once does not spin), start the same command again and say so — on the
console and in the run's ``events.jsonl``. A process that exits 0 has finished and stays down; one
that has used up its restarts stays down too (the run goes on without it).
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from envserver.jsonl import JsonlWriter


@dataclass(frozen=True)
class RestartPolicy:
    enabled: bool = False
    max_restarts: int = 5  # per process
    backoff_s: float = 1.0  # delay before the first restart, doubled for each further one
    backoff_max_s: float = 30.0

    def delay(self, restarts_so_far: int) -> float:
        return min(self.backoff_s * 2 ** restarts_so_far, self.backoff_max_s)


class Supervisor:
    """Watches ``procs`` (name -> Popen, replaced in place on restart); call :meth:`check` often."""

    def __init__(self, procs: dict[str, subprocess.Popen], spawn: Callable[[str], subprocess.Popen],
                 policy: RestartPolicy, events_path: Path, echo: Callable[[str], None] | None = None) -> None:
        self.procs, self.spawn, self.policy = procs, spawn, policy
        self.events = JsonlWriter(events_path)
        self.echo = echo or (lambda line: print(f"khop run: {line}", file=sys.stderr, flush=True))
        self.restarts: dict[str, int] = {}
        self.due: dict[str, float] = {}  # name -> when to start it again
        self.gone: set[str] = set()  # died and will not be restarted

    def _event(self, event: str, name: str, **detail: object) -> None:
        self.events.write({"time": time.time(), "event": event, "process": name, **detail})

    def check(self, restarting: bool = True) -> None:
        """Notice deaths and start what is due; with ``restarting`` False (the run is ending) only
        record deaths."""
        now = time.monotonic()
        for name, proc in list(self.procs.items()):
            if name in self.due:
                if restarting and now >= self.due[name]:
                    del self.due[name]
                    self.procs[name] = self.spawn(name)
                    self._event("process_restarted", name, pid=self.procs[name].pid,
                                restart=self.restarts[name])
                continue
            code = proc.poll()
            if code is None or code == 0 or name in self.gone:
                continue
            n = self.restarts.get(name, 0)
            if restarting and self.policy.enabled and n < self.policy.max_restarts:
                delay = self.policy.delay(n)
                self.restarts[name] = n + 1
                self.due[name] = now + delay
                self._event("process_exit", name, code=code, restart_in_s=delay, restart=n + 1)
                self.echo(f"{name} exited with {code}; restarting in {delay:g} s "
                          f"(restart {n + 1} of {self.policy.max_restarts})")
            else:
                self.gone.add(name)
                why = "restart limit reached" if self.policy.enabled and restarting else "not restarted"
                self._event("process_exit", name, code=code, detail=why)
                if self.policy.enabled:
                    self.echo(f"{name} exited with {code}; {why}")

    def pending(self, name: str) -> bool:
        """Dead and due to be started again."""
        return name in self.due

    def down_for_good(self, name: str) -> bool:
        return name in self.gone

    def close(self) -> None:
        self.events.close()
