"""Agents forked from the zygote (compose/run/zygote.py, compose/run/forkserver.py) are real,
separate processes: their own PIDs, sockets and random streams, children of the launcher, restarted
by --restart as forked agents that resume, gone with a SIGKILLed launcher; a run gives the same
episodes as the in-process reference and as spawned agents; and where the zygote cannot preload,
agents are spawned and the run says why. Real processes, real sockets, no timing asserts."""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from test_e2e import children_by_role, khop_run, tcp_peers, wait_started
from test_inprocess import episodes

from compose.run.launcher import spawn
from compose.run.zygote import ZygoteError, set_subreaper, start_zygote
from topologies import load_topology, neighbours

PROBE = '''"""What a forked child knows about itself, as one JSON line on stdout."""
import ctypes, json, os, random
import numpy as np
import torch
from pathlib import Path

libc = ctypes.CDLL("libc.so.6", use_errno=True)
pdeathsig = ctypes.c_int(0)
libc.prctl(2, ctypes.byref(pdeathsig), 0, 0, 0)  # PR_GET_PDEATHSIG
print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "pdeathsig": pdeathsig.value,
                  "threads": len(os.listdir("/proc/self/task")), "random": random.random(),
                  "numpy": float(np.random.random()), "torch": float(torch.rand(1)),
                  "cmdline": Path("/proc/self/cmdline").read_bytes().decode().rstrip("\\0").split("\\0")}))
'''


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def agents_of(proc):
    return {k: v for k, v in children_by_role(proc).items() if k != "envserver"}


def test_forked_children_are_their_own_processes_with_their_own_random_streams(tmp_path, monkeypatch):
    (tmp_path / "zygote_probe.py").write_text(PROBE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "zygote_probe", "--id", "7"]
    zygote, why = start_zygote(tmp_path, [cmd], spawn)
    assert zygote is not None, why
    try:
        kids = [zygote.fork(f"probe-{i}", cmd, tmp_path / f"probe-{i}" / "log.txt") for i in range(3)]
        assert [k.wait(timeout=120) for k in kids] == [0, 0, 0]
    finally:
        zygote.close()
        set_subreaper(False)
    seen = [json.loads((tmp_path / f"probe-{i}" / "log.txt").read_text().splitlines()[-1]) for i in range(3)]
    assert len({s["pid"] for s in seen} | {zygote.ready["pid"], os.getpid()}) == 5
    for s, kid in zip(seen, kids):
        assert s["pid"] == kid.pid and s["ppid"] == os.getpid()  # re-parented to us: we waited for it
        assert s["pdeathsig"] == signal.SIGTERM and s["threads"] == 1
        assert s["cmdline"][:5] == cmd[:3] + ["--id", "7"]  # ps shows the command it runs
    for stream in ("random", "numpy", "torch"):  # reseeded: no two children draw the same numbers
        assert len({s[stream] for s in seen}) == 3, stream


def test_a_dead_zygote_is_a_one_line_error_and_its_children_live_on(tmp_path):
    """What the launcher falls back to spawning on: the zygote killed (the OOM killer's pick, say)."""
    zygote, why = start_zygote(tmp_path, [[sys.executable, "-m", "http.server"]], spawn)
    assert zygote is not None, why
    try:
        kid = zygote.fork("server", [sys.executable, "-m", "http.server", "0"], tmp_path / "server" / "log.txt")
        zygote.proc.kill()
        zygote.proc.wait()
        with pytest.raises(ZygoteError, match="the zygote('s socket failed| closed its socket| exited with -9)"):
            zygote.fork("again", [sys.executable, "-m", "http.server", "0"], tmp_path / "again" / "log.txt")
        assert kid.poll() is None  # re-parented to us, not the zygote's: it outlives it
        kid.terminate()
        assert kid.wait(timeout=60) == -signal.SIGTERM
    finally:
        zygote.close()
        set_subreaper(False)


@pytest.mark.slow
def test_forked_agents_have_distinct_pids_and_only_their_own_sockets(tmp_path):
    """The socket-table test of tests/test_e2e.py, with the agents forked from the zygote."""
    run_dir = tmp_path / "run"
    proc = khop_run(run_dir, "--task", "coop-game", "--topology", "line", "--kappa", "2", "--steps",
                    "10000000", "--envs", "4")
    try:
        wait_started(run_dir, proc)
        time.sleep(2)
        roles = children_by_role(proc)
        peers = tcp_peers(roles)
        names = {role: p.name() for role, p in roles.items()}
        zygote = [c for c in psutil.Process(proc.pid).children() if c.name() == "khop-zygote"]
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 130, out
    assert set(roles) == {"envserver", *range(6)}
    assert len({p.pid for p in roles.values()} | {z.pid for z in zygote}) == 8
    assert {names[i] for i in range(6)} == {f"agent-{i}" for i in range(6)}  # forked, not spawned
    graph = load_topology(run_dir / "topology.json")
    for agent in range(6):
        assert peers[agent] == {"envserver", *neighbours(graph, agent)}, (agent, peers[agent])
    assert [e["event"] for e in rows(run_dir / "events.jsonl")] == ["zygote_ready"]


@pytest.mark.slow
def test_a_sigkilled_forked_agent_is_forked_again_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    proc = khop_run(run_dir, "--task", "coop-game", "--steps", "10000000", "--envs", "4", "--restart",
                    "--checkpoint-every", "1", "--set", "rollout_len=16")
    try:
        wait_started(run_dir, proc)
        end = time.monotonic() + 300
        while not list((run_dir / "agent-2" / "checkpoints").glob("ckpt-*.pt")):
            assert proc.poll() is None and time.monotonic() < end, "agent 2 wrote no checkpoint"
            time.sleep(0.2)
        first = agents_of(proc)[2]
        first.send_signal(signal.SIGKILL)
        while not (run_dir / "agent-2" / "resume.jsonl").exists():
            assert proc.poll() is None and time.monotonic() < end, "agent 2 did not resume"
            time.sleep(0.2)
        second = agents_of(proc)[2]
        second_name = second.name()
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 130, out
    assert "agent-2 exited with -9 (killed by SIGKILL); restarting in 1 s (restart 1 of 5)" in out, out
    assert second.pid != first.pid and second_name == "agent-2"  # forked again from the zygote
    events = rows(run_dir / "events.jsonl")
    assert [e["pid"] for e in events if e["event"] == "process_restarted"] == [second.pid]
    assert not [e for e in events if e["event"] == "zygote_unavailable"]
    (resumed,) = rows(run_dir / "agent-2" / "resume.jsonl")
    assert resumed["checkpoint"].startswith("ckpt-") and resumed["update"] >= 1


@pytest.mark.slow
def test_a_sigkilled_launcher_leaves_no_forked_agent_alive(tmp_path):
    run_dir = tmp_path / "run"
    proc = khop_run(run_dir, "--task", "coop-game", "--steps", "10000000", "--envs", "2")
    wait_started(run_dir, proc)
    kids = psutil.Process(proc.pid).children()
    assert sorted(k.name() for k in kids if k.name().startswith("agent-")) == [f"agent-{i}" for i in range(6)]
    proc.kill()
    proc.wait()
    _, alive = psutil.wait_procs(kids, timeout=30)  # agents, envserver and the zygote
    assert not alive


def test_zygote_spawned_and_inprocess_runs_give_identical_episodes(tmp_path):
    """The identity of tests/test_inprocess.py, with forked and with spawned agents."""
    args = ["--task", "coop-game", "--steps", "400", "--envs", "4", "--kappa", "1", "--seed", "3"]
    for mode, extra in (("forked", []), ("spawned", ["--no-zygote"]), ("inprocess", ["--inprocess"])):
        res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--run-dir", str(tmp_path / mode),
                              "--no-progress", *args, *extra], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
    assert [e["event"] for e in rows(tmp_path / "forked" / "events.jsonl")] == ["zygote_ready"]
    assert not (tmp_path / "spawned" / "zygote").exists()
    forked = episodes(tmp_path / "forked")
    assert len(forked) >= 4 and forked == episodes(tmp_path / "spawned") == episodes(tmp_path / "inprocess")


def test_a_zygote_that_cannot_preload_leaves_the_agents_spawned(tmp_path):
    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "mujoco.py").write_text("raise ImportError('no MuJoCo in this test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--run-dir", str(tmp_path / "run"),
                          "--no-progress", "--task", "coop-game", "--steps", "200", "--envs", "2"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    line = ("khop run: warning: agents start as separate Python processes: preloading failed: ImportError: "
            "no MuJoCo in this test (while preloading)")
    assert line in res.stderr.splitlines()
    (event,) = rows(tmp_path / "run" / "events.jsonl")
    assert event["event"] == "zygote_unavailable" and "no MuJoCo in this test" in event["reason"]
