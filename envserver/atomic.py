"""Small files that are rewritten whole (status.json, config.json, run_status.json): written to a
temp file and renamed over the name, so a reader sees the old text or the new one, never half; on
any failure — a full disk — the temp file is removed and the error names the file."""
from __future__ import annotations

from pathlib import Path


def write_whole(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.filename:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err
