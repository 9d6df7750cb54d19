"""When a resource runs out — the disk, file descriptors — every khop process ends with one line
naming what ran out and where; JSONL files keep whole rows, no temporary checkpoint is left, the
older checkpoints stay, and `khop run --resume` continues the run once the resource is back with no
metric row lost. The full disk is a real tmpfs mounted by the test (root only: skipped otherwise)."""
import errno
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import zmq

from agentd.learner import checkpoint
from envserver.faults import EXIT_EXHAUSTED, exhausted
from envserver.jsonl import JsonlWriter


@pytest.fixture()
def small_disk(tmp_path):
    """A 16 MiB tmpfs at tmp_path/disk, unmounted whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves ``leave`` bytes free on ``disk``."""
    ballast = disk / "ballast"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(ballast, "ab") as f:
        os.posix_fallocate(f.fileno(), 0, free - leave)
    return ballast


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]  # every line whole: no torn rows


def test_exhausted_names_what_ran_out_and_where():
    assert exhausted(OSError(errno.ENOSPC, "No space left on device", "/d/m.jsonl")) == (
        "disk full at /d/m.jsonl: No space left on device")
    assert exhausted(OSError(errno.EDQUOT, "Disk quota exceeded")) == "disk quota exceeded: Disk quota exceeded"
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert exhausted(zmq.ZMQError(errno.EMFILE)) == f"too many open files: the limit is {limit} per process (ulimit -n)"
    assert exhausted(MemoryError()) == "out of memory"
    try:  # a full disk that surfaces as a second error in clean-up code
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/d/ckpt.pt")
        except OSError:
            raise RuntimeError("close failed")
    except RuntimeError as err:
        assert exhausted(err) == "disk full at /d/ckpt.pt: No space left on device"
    assert exhausted(ValueError("bad option")) is None
    assert exhausted(OSError(errno.ENOENT, "No such file or directory", "/x")) is None


@pytest.mark.parametrize("error, code, line", [
    ("OSError(errno.ENOSPC, 'No space left on device', '/d/x')", EXIT_EXHAUSTED,
     "prog: error: disk full at /d/x: No space left on device"),
    ("KeyError('oops')", 1, "prog: error: KeyError: 'oops'"),
])
def test_what_escapes_a_main_is_its_traceback_then_one_line(error, code, line):
    script = ("import errno, sys\nfrom envserver.faults import one_line_errors\n"
              f"@one_line_errors('prog')\ndef main():\n    raise {error}\nsys.exit(main())\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == code
    lines = res.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):" and lines[-1] == line, res.stderr


def test_a_row_the_disk_has_no_room_for_is_cut_back_off(small_disk):
    path = small_disk / "metrics.jsonl"
    writer = JsonlWriter(path)
    writer.write({"update": 0})
    ballast = fill(small_disk, 4096)  # one page: a row that crosses into the next page is written in part
    row = {"update": 1, "pad": "x" * 1000}
    with pytest.raises(OSError) as err:
        for _ in range(100):
            writer.write(row)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(path)
    written = rows(path)
    assert written[0] == {"update": 0} and written[1:] == [row] * (len(written) - 1) and len(written) > 1
    ballast.unlink()
    writer.write({"update": 2})  # space is back: the file goes on, whole rows only
    writer.close()
    assert rows(path)[-1] == {"update": 2} and len(rows(path)) == len(written) + 1


def state(step: int) -> dict:
    return {"weights": torch.full((256 << 10,), float(step)), "step": step}  # 1 MiB of float32


@pytest.mark.parametrize("checked", [True, False], ids=["free-space-check", "write-fails"])
def test_a_checkpoint_the_disk_has_no_room_for_leaves_the_older_ones_and_no_temp_file(small_disk, monkeypatch,
                                                                                      checked):
    """With too little space the checkpoint is not written at all (the free-space check); and if
    the disk fills between the check and the write, the temp file is removed."""
    ckpts = small_disk / "checkpoints"
    for step in (1, 2):
        checkpoint.save(state(step), ckpts, step, keep=2)
    if checked:
        ballast = fill(small_disk, 1 << 20)  # room for one more, not for the free-space margin
    else:
        ballast = fill(small_disk, 512 << 10)  # room for half of one, and no check to stop the write
        monkeypatch.setattr(checkpoint, "check_free_space", lambda *_: None)
    with pytest.raises(OSError) as err:
        checkpoint.save(state(3), ckpts, 3, keep=2)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(ckpts / "ckpt-000000000003.pt")
    if checked:
        assert "needs" in err.value.strerror and "MiB free" in err.value.strerror
    assert sorted(p.name for p in ckpts.iterdir()) == ["ckpt-000000000001.pt", "ckpt-000000000002.pt"]
    assert checkpoint.load(checkpoint.latest(ckpts))["step"] == 2
    ballast.unlink()
    checkpoint.save(state(3), ckpts, 3, keep=2)
    assert sorted(p.name for p in ckpts.iterdir()) == ["ckpt-000000000002.pt", "ckpt-000000000003.pt"]


def khop_run(run_dir: Path, *args: str, **popen: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "compose.cli", "run", "--run-dir", str(run_dir), "--no-progress",
                             "--task", "matrix-game-1", "--envs", "4", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_too_few_file_descriptors_end_the_run_with_one_line(tmp_path):
    """RLIMIT_NOFILE = 16, inherited by every process: one of them cannot open what it needs."""
    run_dir = tmp_path / "run"

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    proc = khop_run(run_dir, "--steps", "4000", preexec_fn=low_limit)
    out, err = proc.communicate(timeout=300)
    errors = [line for line in err.splitlines() if line.startswith("khop run: error:")]
    assert proc.returncode == 1, out + err
    assert len(errors) == 1 and "too many open files" in errors[0], err
    assert "the limit is 16 per process (ulimit -n)" in errors[0] and "khop run --resume" in errors[0]
    assert "Traceback" not in err
    status = json.loads((run_dir / "run_status.json").read_text())
    assert status["state"] == "failed" and "too many open files" in status["reason"]


def test_a_disk_full_before_the_run_is_recorded_is_one_line_and_no_half_run(small_disk):
    """The launcher itself runs out: it says so in one line and leaves no config.json, so the same
    command works once there is room."""
    run_dir = small_disk / "run"
    ballast = fill(small_disk, 0)
    proc = khop_run(run_dir, "--steps", "2000")
    out, err = proc.communicate(timeout=300)
    errors = [line for line in err.splitlines() if line.startswith("khop run: error:")]
    assert proc.returncode == 1, out + err
    assert len(errors) == 1 and errors[0].startswith(f"khop run: error: disk full at {run_dir}"), err
    assert errors[0].endswith("when it is back, start it again") and "Traceback" not in err
    assert not (run_dir / "config.json").exists() and not list(run_dir.rglob("*.tmp"))
    ballast.unlink()
    proc = khop_run(run_dir, "--steps", "2000")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err


@pytest.mark.slow
@pytest.mark.parametrize("leave", [64 << 10, 0], ids=["nearly-full", "full"])
def test_a_disk_that_fills_up_mid_run_loses_nothing_and_the_run_resumes_after(small_disk, leave):
    """Nearly full: the next checkpoint or row does not fit. Full: not even the line a process
    ends with fits in its log.txt, and the launcher says what it can."""
    run_dir, steps = small_disk / "run", 6000
    proc = khop_run(run_dir, "--steps", str(steps), "--checkpoint-every", "2", "--set", "rollout_len=16",
                    "--set", "keep_checkpoints=2")
    try:
        end = time.monotonic() + 300
        while len(list(run_dir.glob("agent-*/checkpoints/ckpt-*.pt"))) < 4:
            assert proc.poll() is None and time.monotonic() < end, "no checkpoints"
            time.sleep(0.2)
        ballast = fill(small_disk, leave)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    errors = [line for line in err.splitlines() if line.startswith("khop run: error:")]
    assert proc.returncode == 1, out + err
    where = re.escape(str(run_dir))
    said = re.compile(rf"ran out of a resource \(exit 75\): (disk full at {where}/\S+: "
                      rf"|its log\.txt has no last line; \d+ KiB free at {where}$)")
    assert len(errors) == 1 and said.search(errors[0].split("; every process")[0]), err
    assert errors[0].endswith(f"when it is back, continue with: khop run --resume {run_dir}") and "Traceback" not in err
    status = json.loads((run_dir / "run_status.json").read_text())  # the launcher's reserve made room for it
    assert status["state"] == "failed" and said.search(status["reason"])
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp") or p.name == ".space-reserve"]
    for jsonl in run_dir.rglob("*.jsonl"):
        rows(jsonl)  # whole rows, every one
    before = {a: (run_dir / f"agent-{a}" / "metrics.jsonl").read_bytes() for a in (0, 1)}
    for a in (0, 1):  # every checkpoint left loads
        for ckpt in checkpoint.list_checkpoints(run_dir / f"agent-{a}" / "checkpoints"):
            checkpoint.load(ckpt)

    ballast.unlink()
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--resume", str(run_dir), "--no-progress"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert json.loads((run_dir / "run_status.json").read_text())["state"] == "finished"
    server = json.loads((run_dir / "envserver" / "status.json").read_text())
    assert server["env_step"] == steps and server["done"]
    for a in (0, 1):
        text = (run_dir / f"agent-{a}" / "metrics.jsonl").read_bytes()
        assert text.startswith(before[a]), "rows written before the disk filled were changed"
        metrics = rows(run_dir / f"agent-{a}" / "metrics.jsonl")
        first, second = list(dict.fromkeys(r["incarnation"] for r in metrics))
        old, new = ([r["update"] for r in metrics if r["incarnation"] == i] for i in (first, second))
        (resume,) = rows(run_dir / f"agent-{a}" / "resume.jsonl")
        assert old == list(range(1, len(old) + 1))
        assert resume["update"] <= old[-1]  # the checkpoint it resumed from was written before the disk filled
        assert new == list(range(resume["update"] + 1, resume["update"] + 1 + len(new))) and len(new) >= 3
