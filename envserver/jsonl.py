"""Append-only JSON Lines, the format of every metrics and event file khop writes."""
from __future__ import annotations

import json
from pathlib import Path


class JsonlWriter:
    """One row per line, flushed per row, never rewritten: a killed process loses at most the row
    it was writing, and readers skip a torn last line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8")
        if self._f.tell() and not _ends_with_newline(path):
            self._f.write("\n")  # a predecessor killed mid-row: end its torn row, never glue ours to it
            self._f.flush()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def write(self, row: dict) -> None:
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return f.read(1) == b"\n"
