"""Append-only JSON Lines, the format of every metrics and event file khop writes."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path


class JsonlWriter:
    """One row per line, one ``write`` system call per row, never rewritten: a killed process
    loses at most the row it was writing, and readers skip a torn last line. A row the disk has
    no room for (ENOSPC, EDQUOT) is cut back off the file, so the file stays whole rows; the error
    names the file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.lseek(self._fd, 0, os.SEEK_END)
        if self._size and not _ends_with_newline(path):
            self._append(b"\n")  # a predecessor killed mid-row: end its torn row, never glue ours to it

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def write(self, row: dict) -> None:
        self._append((json.dumps(row) + "\n").encode("utf-8"))

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:  # a short write (the disk filling up) leaves the rest to the next call, which raises
                view = view[os.write(self._fd, view):]
        except OSError as err:
            with contextlib.suppress(OSError):  # the part that fit: off again (shrinking needs no space)
                os.ftruncate(self._fd, self._size)
            raise OSError(err.errno, err.strerror, str(self.path)) from err
        self._size += len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return f.read(1) == b"\n"
