"""How `khop run` leaves word of how a run ended, when the disk may be the thing that failed:
DIR/run_status.json (state, exit code, and the reason in one line unless it finished) is written
whole or not at all; a launcher traceback goes to DIR/log.txt, not to the console; a report the
disk has no room for is one line. While the run runs the launcher holds DIR/.space-reserve and
deletes it as the run ends, so its last words fit on a disk the run has filled."""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from envserver.atomic import write_whole
from envserver.faults import exhausted

from ..report import write_report
from .supervisor import RunFailure

# room for run_status.json, the launcher's last event rows and a traceback in log.txt; our choice
RESERVE_BYTES = 64 << 10
RESERVE = ".space-reserve"


def hold_reserve(run_dir: Path) -> None:
    """Allocate DIR/.space-reserve (posix_fallocate: blocks, not a sparse file)."""
    path = run_dir / RESERVE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, RESERVE_BYTES)
    except OSError as err:
        path.unlink()
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        os.close(fd)


def release_reserve(run_dir: Path) -> None:
    (run_dir / RESERVE).unlink(missing_ok=True)


def tell(run_dir: Path, failure: RunFailure) -> None:
    """The console line of a child's exit that ended the run, with what to do next."""
    hint = (f"when it is back, continue with: khop run --resume {run_dir}" if failure.ran_out
            else f"its log: {run_dir / failure.process / 'log.txt'}")
    print(f"khop run: error: {failure.line}; every process stopped; {hint}", file=sys.stderr)


def launcher_ran_out(run_dir: Path, err: Exception, failure: RunFailure | None) -> str | None:
    """When ``err`` — out of the launcher itself — is a resource that ran out: its traceback to
    DIR/log.txt, one line on the console, and the reason to record (a child's failure, if there is
    one, says it better: the launcher's events row failing is only its echo). None otherwise."""
    ran_out = exhausted(err, where=run_dir)
    if ran_out is None:
        return None
    log_traceback(run_dir)
    reason = failure.line if failure else ran_out
    then = (f"continue with: khop run --resume {run_dir}" if (run_dir / "config.json").exists()
            else "start it again")  # it ran out before the run was recorded: there is nothing to resume
    print(f"khop run: error: {reason}; every process stopped; when it is back, {then}", file=sys.stderr)
    return reason


def record_status(run_dir: Path, state: str, code: int, reason: str) -> None:
    """DIR/run_status.json, what `khop sweep` and `khop run --resume` read; a full disk is reported."""
    status = {"state": state, "exit_code": code, "time": time.time(),
              **({"reason": reason} if state != "finished" else {})}
    try:
        write_whole(run_dir / "run_status.json", json.dumps(status))
    except OSError as err:
        print(f"khop run: run_status.json not written: {exhausted(err) or err}", file=sys.stderr)


def log_traceback(run_dir: Path) -> None:
    """The exception being handled, appended to DIR/log.txt if the disk still takes it."""
    try:
        with open(run_dir / "log.txt", "a") as log:
            traceback.print_exc(file=log)
    except OSError:
        pass  # the disk is full: the one line on the console is all there is


def report(run_dir: Path) -> None:
    """DIR/report, or one line saying what kept it from being written."""
    try:
        write_report(run_dir)
    except OSError as err:
        ran_out = exhausted(err)
        if ran_out is None:
            raise
        print(f"khop run: report not written: {ran_out}", file=sys.stderr)
