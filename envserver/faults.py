"""How a khop process ends when something goes wrong: the full traceback on stderr (its log.txt
under `khop run`), then one line ``prog: error: …`` as the log's last line — the line `khop run`
shows — and an exit code that tells the launcher what kind of failure it was:

- 2, bad input (a bad option, a damaged file): the command must change (the console scripts'
  own ``main`` returns it);
- 75, a resource ran out (disk space or quota, file descriptors, memory): EX_TEMPFAIL of
  sysexits.h, "a temporary failure … the user is invited to retry"; the launcher stops the whole
  run rather than restart a process into the same wall, and ``khop run --resume`` continues it
  once the cause is gone;
- 1, anything else.
"""
from __future__ import annotations

import errno
import functools
import resource
import sys
import traceback
from typing import Callable

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_EXHAUSTED = 75  # EX_TEMPFAIL, sysexits.h

_DISK = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded"}


def exhausted(err: BaseException | None, where: object = None) -> str | None:
    """One line naming what ran out and where, if ``err`` — or an exception it was raised from or
    while handling — is a resource exhaustion; None otherwise. Why the whole chain: a full disk
    often surfaces as a second error in clean-up code (a final checkpoint, a close). ``where``
    names the place of a full disk whose error names no file."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        line = _describe(err, where)
        if line:
            return line
        err = err.__cause__ or err.__context__
    return None


def _describe(err: BaseException, where: object) -> str | None:
    if isinstance(err, MemoryError):
        return "out of memory"
    code = getattr(err, "errno", None)
    path = getattr(err, "filename", None)
    at = f" at {path}" if path else ""
    reason = getattr(err, "strerror", None) or str(err)
    if code in _DISK:
        return f"{_DISK[code]}{at or (f' at {where}' if where else '')}: {reason}"
    if code == errno.EMFILE:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return f"too many open files{at}: the limit is {limit} per process (ulimit -n)"
    if code == errno.ENFILE:
        return f"too many open files{at}: the system-wide limit is reached (fs.file-max)"
    if code == errno.ENOMEM:
        return f"out of memory{at}"
    return None


def one_line_errors(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a console script's ``main``: an exception that escapes it is printed as its
    traceback followed by one line ``prog: error: …``, and the exit code says whether a resource
    ran out (75) or something else failed (1)."""
    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args: object, **kwargs: object) -> int:
            try:
                return main(*args, **kwargs)
            except Exception as err:  # MemoryError included; KeyboardInterrupt and SystemExit are not ours
                ran_out = exhausted(err)
                try:
                    traceback.print_exc()
                    print(f"{prog}: error: {ran_out or f'{type(err).__name__}: {err}'}", file=sys.stderr, flush=True)
                except OSError:  # stderr itself on the full disk: the exit code still says it
                    pass
                return EXIT_EXHAUSTED if ran_out else EXIT_FAILED
        return run
    return wrap
