"""A child that fails during its start-up ends `khop run` at once, with that child's one line, every
other process stopped, run_status.json failed with the reason, and exit 2 for bad input, 1 for
anything else; under --restart it is not restarted. Real processes throughout: the faults are
injected into the real commands `khop run` spawns (an envserver option it rejects, a topology
file that is not there) or into the world around them (the envserver's port taken by another
program between the launcher choosing it and the envserver binding it)."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

# `khop run` with one fault injected into what Launch spawns; argv[1] names the fault
DRIVER = """
import socket, sys
import compose.run.launcher as launcher
from compose.cli import main

fault, commands, held = sys.argv[1], launcher.Launch._commands, []

def with_fault(self):
    cmds = commands(self)
    if fault == "envserver-bad-argument":
        cmds["envserver"] += ["--envs", "0"]
    elif fault == "agent-missing-topology":
        cmds["agent-1"][cmds["agent-1"].index("--topology") + 1] = str(self.dir / "no-such-topology.json")
    elif fault == "port-taken":  # another program listens there now
        taker = socket.socket()
        taker.bind(("127.0.0.1", int(self.env_endpoint.rsplit(":", 1)[1])))
        taker.listen()
        held.append(taker)
    return cmds

launcher.Launch._commands = with_fault
sys.exit(main(["run", *sys.argv[2:]]))
"""

RUN = ["--task", "matrix-game-1", "--steps", "20000", "--envs", "4", "--no-progress"]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_with_fault(fault: str, run_dir: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-c", DRIVER, fault, "--run-dir", str(run_dir), *RUN, *extra],
                         capture_output=True, text=True, timeout=300)
    return res, time.monotonic() - started


@pytest.mark.parametrize("fault, process, code, line", [
    ("envserver-bad-argument", "envserver", 2, "envserver failed at start-up (exit 2): --envs must be >= 1, got 0"),
    ("agent-missing-topology", "agent-1", 2, "agent-1 failed at start-up (exit 2): topology file not found: "),
    ("port-taken", "envserver", 1, "envserver failed at start-up (exit 1): cannot bind tcp://127.0.0.1:"),
], ids=["envserver-bad-argument", "agent-missing-topology", "port-taken"])
@pytest.mark.parametrize("restart", [False, True], ids=["", "restart"])
def test_a_child_failing_at_start_up_ends_the_run_at_once(tmp_path, fault, process, code, line, restart):
    run_dir = tmp_path / "run"
    res, took = run_with_fault(fault, run_dir, *(["--restart"] if restart else []))
    errors = [x for x in res.stderr.splitlines() if x.startswith("khop run: error:")]
    assert res.returncode == code, res.stdout + res.stderr
    assert len(errors) == 1 and errors[0].startswith(f"khop run: error: {line}"), res.stderr
    assert "every process stopped" in errors[0] and f"{run_dir / process / 'log.txt'}" in errors[0]
    assert "Traceback" not in res.stderr
    assert took < 120, f"{took:.0f} s to give up"  # the agents alone would wait 300 s for a WELCOME
    status = json.loads((run_dir / "run_status.json").read_text())
    assert status["state"] == "failed" and status["exit_code"] == code and status["reason"].startswith(line)
    events = rows(run_dir / "events.jsonl")
    (failed,) = [e for e in events if e["process"] == process]
    assert failed["detail"] == "failed at start-up; the run stops" and failed["code"] == code
    assert status["time"] - failed["time"] < 30  # generous: the children get a grace period to stop
    assert not [e for e in events if e["event"] == "process_restarted"]  # not even under --restart
    assert not (run_dir / ".space-reserve").exists()
    for child in psutil.process_iter(["cmdline"]):
        assert str(run_dir) not in " ".join(child.info["cmdline"] or []), "a child outlived its launcher"


@pytest.mark.slow
def test_a_restarted_agent_that_fails_at_start_up_again_is_not_restarted_again(tmp_path):
    """SIGKILL an agent of a --restart run and take away what it needs to start (the run's
    topology file): its restart fails during start-up, and the supervisor gives up on it at once
    instead of spending all its restarts; the run finishes without it and exits 1."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "compose.cli", "run", "--run-dir", str(run_dir), *RUN,
                             "--deadline", "5", "--set", "rollout_len=16", "--restart", "--max-restarts", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 300
        metrics = run_dir / "agent-1" / "metrics.jsonl"
        while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
            assert proc.poll() is None and time.monotonic() < end, "the run did not get going"
            time.sleep(0.5)
        (agent,) = [c for c in psutil.Process(proc.pid).children() if "--id" in c.cmdline()
                    and c.cmdline()[c.cmdline().index("--id") + 1] == "1"]
        (run_dir / "topology.json").unlink()
        agent.send_signal(signal.SIGKILL)
        out = proc.communicate(timeout=600)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out[-3000:]
    assert "agent-1 exited with -9 (killed by SIGKILL); restarting in 1 s (restart 1 of 5)" in out, out[-3000:]
    assert ("agent-1 failed at start-up again after restart 1 (exit 2): topology file not found: "
            f"{run_dir / 'topology.json'}; not restarted again") in out, out[-3000:]
    events = rows(run_dir / "events.jsonl")
    assert [e["process"] for e in events if e["event"] == "process_restarted"] == ["agent-1"]
    final = rows(run_dir / "envserver" / "events.jsonl")[-1]
    assert final["event"] == "server_stop" and final["detail"] == "run complete"  # agent 0 carried on
