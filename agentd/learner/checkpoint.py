"""Crash-safe checkpoint files: ``ckpt-{step:012d}.pt`` in one directory per agent.

A checkpoint is serialised in memory first, so its size is known before the disk is touched:
with too little free space it is not written at all (ENOSPC, naming the file and the numbers).
Otherwise it is written to ``.tmp``, flushed and fsynced, renamed over the final name with
``os.replace`` (atomic on POSIX) and the directory is fsynced so the rename itself survives a power
cut; the temp file is removed on any failure, and older checkpoints are pruned only after the new
one is complete. A reader therefore sees either the old set of files or the new one; a file damaged
some other way (copied half-way) is detected at load time and skipped by :func:`latest`.
Files are read with ``weights_only=True``: a checkpoint directory is data, never code.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from envserver.faults import exhausted

_NAME = re.compile(r"^ckpt-(\d{12})\.pt$")
_TMP = re.compile(r"^ckpt-(\d{12})\.pt\.tmp$")
# Free space a checkpoint write leaves for the run's other writes (metrics and episode rows, the
# other agents' checkpoints of the same update, the next checkpoint before pruning frees the
# oldest): one more checkpoint of the same size and this much; our choice, not a published value.
FREE_MARGIN_BYTES = 1 << 20


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:012d}.pt"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files in ``directory``, newest (highest step) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def save(state: dict[str, Any], directory: Path, step: int, keep: int) -> Path:
    """Atomically write ``state`` as step ``step``; keep the newest ``keep`` files."""
    if step < 0:
        raise ValueError(f"checkpoint step must be >= 0, got {step}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(step)
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getbuffer()
    check_free_space(final, len(data))
    tmp = final.with_name(final.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not err.filename:  # a write or fsync: name the file it was for
            raise OSError(err.errno, err.strerror, str(final)) from err
        raise
    _fsync_dir(directory)
    _prune(directory, keep)
    return final


def check_free_space(path: Path, size: int) -> None:
    """Raise ENOSPC naming ``path`` unless its file system has room for ``size`` bytes and still
    keeps ``size + FREE_MARGIN_BYTES`` free afterwards (see FREE_MARGIN_BYTES)."""
    free = shutil.disk_usage(path.parent).free
    need = 2 * size + FREE_MARGIN_BYTES
    if free < need:
        mib = 1 << 20
        raise OSError(errno.ENOSPC, f"a checkpoint of {size / mib:.2f} MiB needs {need / mib:.2f} MiB free "
                                    f"(twice its size and 1 MiB for the run's other files), {free / mib:.2f} MiB "
                                    "are; not written, the previous checkpoints are kept", str(path))


def _prune(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints, and temp files a crash left behind."""
    for old in list_checkpoints(directory)[keep:]:
        old.unlink(missing_ok=True)
    for p in directory.iterdir():
        if _TMP.match(p.name):
            p.unlink(missing_ok=True)


def load(path: Path, required: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Load one checkpoint; raise ValueError if it is unreadable or lacks a required key."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, I/O error: all mean "not usable"
        if exhausted(e):  # too many open files, no memory: the file may be fine, so it is not skipped
            raise
        raise ValueError(f"checkpoint {path} is unreadable: {e}") from e
    if not isinstance(state, dict) or not required <= set(state):
        missing = sorted(required - set(state)) if isinstance(state, dict) else ["<not a dict>"]
        raise ValueError(f"checkpoint {path} lacks keys {missing}")
    return state


def latest(directory: Path, required: frozenset[str] = frozenset()) -> Path | None:
    """Newest checkpoint that loads and has the required keys; damaged newer ones are skipped."""
    for path in list_checkpoints(directory):
        try:
            load(path, required)
        except ValueError:
            continue
        return path
    return None


def state_digest(state: Any) -> str:
    """SHA-256 of a (nested) state: dict keys in sorted order, tensors and arrays by dtype, shape and
    bytes, anything else by repr. Why: a restarted agent records the digest of the weights it holds
    right after loading, so anyone can check them against the checkpoint file itself."""
    h = hashlib.sha256()
    _feed(h, state)
    return h.hexdigest()


def _feed(h: Any, x: Any) -> None:
    if isinstance(x, dict):
        h.update(b"{")
        for k in sorted(x, key=repr):
            h.update(repr(k).encode())
            _feed(h, x[k])
        h.update(b"}")
    elif isinstance(x, (list, tuple)):
        h.update(b"[")
        for v in x:
            _feed(h, v)
        h.update(b"]")
    elif isinstance(x, torch.Tensor):
        t = x.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif hasattr(x, "dtype") and hasattr(x, "tobytes"):  # numpy array or scalar
        h.update(f"A{x.dtype}{getattr(x, 'shape', ())}".encode())
        h.update(x.tobytes())
    else:
        h.update(repr(x).encode())
