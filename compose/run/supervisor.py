"""`khop run --restart`: bring back any child process that dies, with backoff and a limit.

Why a restart is all it takes: an agent resumes from its newest checkpoint by default and says
HELLO{resume}; the envserver re-admits it at the current step. A restarted envserver continues the
run's step counter and budget from its clock file, and the agents notice the new connection and
say HELLO again. So the supervisor only has to notice a death, wait (exponential backoff, so a
process that dies at once does not spin), start the same command again and say so — on the
console and in the run's ``events.jsonl``. A process that exits 0 has finished and stays down; one
that has used up its restarts stays down too (the run goes on without it).

Two exits end the whole run instead (:attr:`Supervisor.failure`), restart or not, because starting
the same command again cannot help: a process that fails during its start-up (compose/run/children.py
says when that is over) — a bad option, a missing file, a taken port — and one that ran out of a
resource (exit 75, envserver/faults.py: a full disk, too many open files), which the other
processes are about to run into too. A process that fails during its start-up *after* a restart is
not restarted again: whatever killed it keeps it from starting.
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from envserver.faults import EXIT_BAD_INPUT, EXIT_EXHAUSTED, EXIT_FAILED
from envserver.jsonl import JsonlWriter

from .children import ChildFiles, how_it_ended


@dataclass(frozen=True)
class RestartPolicy:
    enabled: bool = False
    max_restarts: int = 5  # per process
    backoff_s: float = 1.0  # delay before the first restart, doubled for each further one
    backoff_max_s: float = 30.0

    def delay(self, restarts_so_far: int) -> float:
        return min(self.backoff_s * 2 ** restarts_so_far, self.backoff_max_s)


@dataclass(frozen=True)
class RunFailure:
    """A child's exit that ends the run: the line the user sees and the launcher's exit code."""
    line: str
    exit_code: int
    process: str
    ran_out: bool  # a resource ran out: `khop run --resume` continues the run once it is back


class Supervisor:
    """Watches ``procs`` (name -> Popen, replaced in place on restart); call :meth:`check` often."""

    def __init__(self, procs: dict[str, subprocess.Popen], spawn: Callable[[str], subprocess.Popen],
                 policy: RestartPolicy, events_path: Path, echo: Callable[[str], None] | None = None,
                 files: ChildFiles | None = None) -> None:
        """``files``: the children's start-up markers and logs; None: no start-up phase (every exit
        is a death of a running process)."""
        self.procs, self.spawn, self.policy, self.files = procs, spawn, policy, files
        self.events = JsonlWriter(events_path)
        self.echo = echo or (lambda line: print(f"khop run: {line}", file=sys.stderr, flush=True))
        self.restarts: dict[str, int] = {}
        self.due: dict[str, float] = {}  # name -> when to start it again
        self.gone: set[str] = set()  # died and will not be restarted
        self.stopped: set[str] = set()  # told to stop by the launcher: its exit is the launcher's doing
        self.failure: RunFailure | None = None  # set once: an exit that ends the run

    def event(self, event: str, name: str, **detail: object) -> None:
        """One row of the run's events.jsonl (also the launcher's, for what it does beside supervising)."""
        self.events.write({"time": time.time(), "event": event, "process": name, **detail})

    def start(self, name: str) -> subprocess.Popen:
        if self.files is not None:
            self.files.spawned(name)
        self.procs[name] = self.spawn(name)
        return self.procs[name]

    def check(self, restarting: bool = True) -> None:
        """Notice deaths and start what is due; with ``restarting`` False (the run is ending) only
        record deaths."""
        now = time.monotonic()
        for name, proc in list(self.procs.items()):
            if name in self.due:
                if restarting and now >= self.due[name]:
                    del self.due[name]
                    self.event("process_restarted", name, pid=self.start(name).pid, restart=self.restarts[name])
                continue
            code = proc.poll()
            if code is None or code == 0 or name in self.gone:
                continue
            if name in self.stopped:  # the launcher's SIGTERM, not a crash: recorded, never restarted
                self.gone.add(name)
                self.event("process_exit", name, **_exit_detail(code), detail="stopped by the launcher")
                continue
            if self._ends_the_run(name, code, restarting):
                continue
            n = self.restarts.get(name, 0)
            how = "" if code >= 0 else f" ({how_it_ended(code)})"
            died = _exit_detail(code)
            if restarting and self.policy.enabled and n < self.policy.max_restarts:
                delay = self.policy.delay(n)
                self.restarts[name] = n + 1
                self.due[name] = now + delay
                self.event("process_exit", name, **died, restart_in_s=delay, restart=n + 1)
                self.echo(f"{name} exited with {code}{how}; restarting in {delay:g} s "
                          f"(restart {n + 1} of {self.policy.max_restarts})")
            else:
                self.gone.add(name)
                why = "restart limit reached" if self.policy.enabled and restarting else "not restarted"
                self.event("process_exit", name, **died, detail=why)
                if self.policy.enabled:
                    self.echo(f"{name} exited with {code}{how}; {why}")

    def _ends_the_run(self, name: str, code: int, running: bool) -> bool:
        """True when the exit of ``name`` is one of the two kinds this module's docstring lists:
        then it is recorded (as the run's failure, or as a start-up failing after a restart) and
        the process stays down. Once the run is ending (not ``running``) a process stopped while
        starting up is no failure of its own; one that ran out of a resource still is."""
        exhausted = code == EXIT_EXHAUSTED
        in_startup = running and self.files is not None and not self.files.past_startup(name)
        if not (exhausted or in_startup):
            return False
        self.gone.add(name)
        how = how_it_ended(code)
        words = self.files.last_words(name) if self.files is not None else ""
        n = self.restarts.get(name, 0)
        if not exhausted and n:
            self.event("process_exit", name, **_exit_detail(code), error=words,
                        detail=f"failed at start-up after restart {n}; not restarted again")
            self.echo(f"{name} failed at start-up again after restart {n} ({how}): {words}; not restarted again")
            return True
        what = "ran out of a resource" if exhausted else "failed at start-up"
        if self.failure is None:  # before the event row, which a full disk may refuse
            self.failure = RunFailure(f"{name} {what} ({how}): {words}",
                                      EXIT_BAD_INPUT if code == EXIT_BAD_INPUT else EXIT_FAILED, name, exhausted)
        self.event("process_exit", name, **_exit_detail(code), error=words, detail=f"{what}; the run stops")
        return True

    def stopping(self, name: str) -> None:
        """The launcher is stopping ``name`` on purpose (nobody left to serve): do not restart it."""
        self.stopped.add(name)

    def pending(self, name: str) -> bool:
        """Dead and due to be started again."""
        return name in self.due

    def down_for_good(self, name: str) -> bool:
        return name in self.gone

    def close(self) -> None:
        self.events.close()


def _exit_detail(code: int) -> dict[str, object]:
    """An event row's account of an exit: the code, and the signal's name when a signal ended it
    (SIGKILL is what the kernel's OOM killer sends)."""
    return {"code": code, **({"signal": how_it_ended(code).removeprefix("killed by ")} if code < 0 else {})}
