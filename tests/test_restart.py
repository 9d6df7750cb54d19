"""Restart and rejoin pieces with real processes and sockets, quick enough for every test run:
a late agent is handed the current STEP, a restarted envserver continues its clock, and the
supervisor restarts with backoff up to its limit."""
import json
import signal
import subprocess
import sys
import time

import pytest
from test_envserver import E, act_frames, dealer, join_all, recv, server  # noqa: F401  (server: fixture)

from compose.run.launcher import free_ports
from compose.run.supervisor import RestartPolicy, Supervisor
from envserver.clock import read_clock


def events(run_dir):
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def test_a_late_agent_is_readmitted_with_the_current_step_and_stays_up(server):  # noqa: F811
    endpoint, ctx, _proc, tmp_path = server
    socks = join_all(ctx, endpoint)
    for i, s in enumerate(socks):
        assert recv(s)["t"] == 0
        if i != 3:
            s.send_multipart(act_frames(i, 0))
    for i, s in enumerate(socks):  # agent 3 misses the 3 s deadline; the others get step 1
        if i != 3:
            assert recv(s)["t"] == 1
    socks[3].send_multipart(act_frames(3, 0))  # it wakes up and answers step 0
    assert "stale step counter" in recv(socks[3])["reason"]
    step = recv(socks[3], timeout_ms=2000)
    assert step.type == "STEP" and step["t"] == 1  # the current step, at once: no second deadline
    for t in (1, 2):
        for i, s in enumerate(socks):
            s.send_multipart(act_frames(i, t))
        assert all(recv(s, timeout_ms=2500)["t"] == t + 1 for s in socks)
    evs = events(tmp_path / "envserver")
    assert [(e["event"], e["agent"]) for e in evs if e["event"] in ("agent_down", "agent_rejoin")] == [
        ("agent_down", 3), ("agent_rejoin", 3)]


def start_server(endpoint, run_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "envserver.main", "--task", "coop-game", "--bind", endpoint,
                             "--envs", str(E), "--steps", "1000000", "--deadline", "3", "--run-dir", str(run_dir),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_restarted_envserver_continues_its_clock_and_cuts_the_episodes(tmp_path):
    import zmq

    endpoint = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    run_dir = tmp_path / "envserver"
    ctx = zmq.Context()
    procs = [start_server(endpoint, run_dir)]
    try:
        socks = join_all(ctx, endpoint)
        for t in range(5):
            for i, s in enumerate(socks):
                assert recv(s)["t"] == t
                s.send_multipart(act_frames(i, t))
        assert all(recv(s)["t"] == 5 for s in socks)  # STEP 5 went out, nobody answered it
        procs[0].kill()
        procs[0].wait()
        assert read_clock(run_dir / "clock").t == 5
        procs.append(start_server(endpoint, run_dir))
        socks = join_all(ctx, endpoint)  # new connections, as agents make after a reconnect
        first = [recv(s) for s in socks]
        assert {m["t"] for m in first} == {6}  # past anything the killed server may have sent
        assert all(m.arrays["truncated"].all() for m in first)  # the old episodes ended with it
        for i, s in enumerate(socks):
            s.send_multipart(act_frames(i, 6))
        assert all(recv(s)["t"] == 7 for s in socks)
        starts = [e for e in events(run_dir) if e["event"] == "server_start"]
        assert starts[-1]["detail"] == f"incarnation 2, resumed at env_step {5 * E}, t 6"
        procs[1].terminate()
        procs[1].wait(timeout=20)
        procs.append(start_server(endpoint, run_dir, "--fresh"))  # --fresh: a new run on the same directory
        socks = join_all(ctx, endpoint)
        assert {recv(s)["t"] for s in socks} == {0}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=20)
        ctx.destroy(linger=0)


def test_a_damaged_clock_is_a_one_line_error(tmp_path):
    run_dir = tmp_path / "envserver"
    run_dir.mkdir()
    (run_dir / "clock").write_text("garbage\n")
    p = start_server(f"tcp://127.0.0.1:{free_ports(1)[0]}", run_dir)
    out = p.communicate(timeout=60)[0].decode().strip().splitlines()
    assert p.returncode == 2
    assert "is not an envserver clock record" in out[-1] and out[-1].startswith("envserver: error:")


@pytest.mark.parametrize("enabled", [True, False])
def test_supervisor_restarts_with_backoff_up_to_its_limit(tmp_path, enabled):
    commands = {"crasher": [sys.executable, "-c", "import sys; sys.exit(3)"],
                "finisher": [sys.executable, "-c", "pass"]}
    started = []

    def spawn(name):
        started.append((name, time.monotonic()))
        return subprocess.Popen(commands[name])
    procs = {name: spawn(name) for name in commands}
    lines = []
    sup = Supervisor(procs, spawn, RestartPolicy(enabled, max_restarts=2, backoff_s=0.2), tmp_path / "events.jsonl",
                     echo=lines.append)
    end = time.monotonic() + 60
    while not sup.down_for_good("crasher") and time.monotonic() < end:
        sup.check()
        time.sleep(0.02)
    sup.close()
    restarts = [t for name, t in started if name == "crasher"]
    assert len(restarts) == (3 if enabled else 1)
    assert [name for name, _ in started].count("finisher") == 1  # exit 0 means finished
    if enabled:
        assert restarts[2] - restarts[1] >= restarts[1] - restarts[0] >= 0.2  # exponential backoff
        assert lines[:2] == ["crasher exited with 3; restarting in 0.2 s (restart 1 of 2)",
                             "crasher exited with 3; restarting in 0.4 s (restart 2 of 2)"]
        assert lines[2] == "crasher exited with 3; restart limit reached"
    evs = events(tmp_path)
    assert [e["event"] for e in evs] == (["process_exit", "process_restarted"] * 2 + ["process_exit"]
                                         if enabled else ["process_exit"])


def test_a_process_the_launcher_stops_is_not_restarted(tmp_path):
    """The launcher SIGTERMs the envserver when no agent is left to serve; under --restart that exit
    is its own doing, recorded and never answered by a restart (a race seen with forked agents)."""
    procs = {"envserver": subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])}

    def spawn(name):
        raise AssertionError(f"{name} was restarted")
    sup = Supervisor(procs, spawn, RestartPolicy(True, max_restarts=5, backoff_s=0.01), tmp_path / "events.jsonl",
                     echo=lambda line: None)
    sup.stopping("envserver")
    procs["envserver"].send_signal(signal.SIGTERM)
    end = time.monotonic() + 60
    while not sup.down_for_good("envserver") and time.monotonic() < end:
        sup.check()
        time.sleep(0.02)
    sup.close()
    (row,) = events(tmp_path)
    assert row["event"] == "process_exit" and row["detail"] == "stopped by the launcher" and row["code"] == -15


def supervise(tmp_path, scripts: dict[str, list[str]], policy: RestartPolicy):
    """A Supervisor with start-up markers over real processes; ``scripts[name]`` are the Python
    sources of its successive starts, run in tmp_path/name (writing learner_config.json is the
    agent's start-up done, compose/run/children.py)."""
    from compose.run.children import ChildFiles

    def spawn(name):
        (tmp_path / name).mkdir(exist_ok=True)
        source = scripts[name].pop(0) if len(scripts[name]) > 1 else scripts[name][0]
        with open(tmp_path / name / "log.txt", "ab") as log:
            return subprocess.Popen([sys.executable, "-c", source], cwd=tmp_path / name, stdout=log, stderr=log)
    lines = []
    sup = Supervisor({}, spawn, policy, tmp_path / "events.jsonl", echo=lines.append, files=ChildFiles(tmp_path))
    for name in scripts:
        sup.start(name)
    return sup, lines


def wait_until(condition, sup, timeout=60):
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        sup.check()
        time.sleep(0.05)
    assert condition()


UP = "import pathlib, time; pathlib.Path('learner_config.json').write_text('{}'); time.sleep(120)"
BAD = "import sys; print('agentd: error: topology file not found: /x.json', file=sys.stderr); sys.exit(2)"
FULL = ("import pathlib, sys; pathlib.Path('learner_config.json').write_text('{}'); "
        "print('agentd: error: disk full at /d/m.jsonl: No space left on device', file=sys.stderr); sys.exit(75)")


def test_a_process_killed_by_sigkill_is_restarted_and_the_row_names_the_signal(tmp_path):
    sup, lines = supervise(tmp_path, {"agent-0": [UP]}, RestartPolicy(True, backoff_s=0.1))
    wait_until(lambda: (tmp_path / "agent-0" / "learner_config.json").exists(), sup)
    first = sup.procs["agent-0"]
    first.send_signal(signal.SIGKILL)  # what the kernel's OOM killer sends
    wait_until(lambda: sup.procs["agent-0"] is not first, sup)
    sup.procs["agent-0"].kill()
    sup.procs["agent-0"].wait()
    sup.close()
    assert lines == ["agent-0 exited with -9 (killed by SIGKILL); restarting in 0.1 s (restart 1 of 5)"]
    assert sup.failure is None
    exit_row = events(tmp_path)[0]
    assert (exit_row["event"], exit_row["code"], exit_row["signal"]) == ("process_exit", -9, "SIGKILL")


@pytest.mark.parametrize("restart", [False, True])
def test_a_failure_at_start_up_or_a_resource_run_out_ends_the_run_unrestarted(tmp_path, restart):
    sup, _ = supervise(tmp_path, {"agent-0": [BAD], "agent-1": [FULL], "agent-2": [UP]}, RestartPolicy(restart))
    wait_until(lambda: {"agent-0", "agent-1"} <= sup.gone, sup)
    sup.procs["agent-2"].kill()
    sup.procs["agent-2"].wait()
    sup.close()
    assert not sup.due  # nothing restarted, --restart or not
    assert sup.failure.process in ("agent-0", "agent-1")  # whichever the supervisor saw first
    assert sup.failure.exit_code == (2 if sup.failure.process == "agent-0" else 1)
    details = {e["process"]: (e["detail"], e["error"]) for e in events(tmp_path)}
    assert details["agent-0"] == ("failed at start-up; the run stops", "topology file not found: /x.json")
    assert details["agent-1"] == ("ran out of a resource; the run stops",
                                  "disk full at /d/m.jsonl: No space left on device")


def test_a_restart_that_fails_at_start_up_is_not_restarted_again(tmp_path):
    sup, lines = supervise(tmp_path, {"agent-0": [UP, BAD]}, RestartPolicy(True, max_restarts=5, backoff_s=0.1))
    wait_until(lambda: (tmp_path / "agent-0" / "learner_config.json").exists(), sup)
    sup.procs["agent-0"].send_signal(signal.SIGKILL)
    wait_until(lambda: sup.down_for_good("agent-0"), sup)
    sup.close()
    assert lines[1] == ("agent-0 failed at start-up again after restart 1 (exit 2): topology file not found: "
                        "/x.json; not restarted again")
    assert sup.failure is None  # the run goes on without it
    assert [e["event"] for e in events(tmp_path)] == ["process_exit", "process_restarted", "process_exit"]
