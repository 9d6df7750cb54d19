"""A real envserver process on a real TCP port, driven by hand-written DEALER clients: every
malformed frame earns an ERROR, and the honest agents keep stepping through all of it."""
import json
import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest
import zmq

from compose.run.launcher import free_ports
from envserver import protocol as P

N_AGENTS, E = 6, 2


@pytest.fixture
def server(tmp_path):
    port = free_ports(1)[0]
    endpoint = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "envserver.main", "--task", "coop-game", "--bind", endpoint,
                             "--envs", str(E), "--steps", "1000000", "--deadline", "3",
                             "--run-dir", str(tmp_path / "envserver")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ctx = zmq.Context()
    yield endpoint, ctx, proc, tmp_path
    proc.terminate()
    out = proc.communicate(timeout=20)[0].decode()
    ctx.destroy(linger=0)
    assert proc.returncode == 0, out


def dealer(ctx, endpoint):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    return s


def recv(sock, timeout_ms=10_000):
    assert sock.poll(timeout_ms), "no reply from envserver"
    return P.decode(sock.recv_multipart())


def hello(sock, agent):
    sock.send_multipart(P.encode("HELLO", {"agent": agent, "version": P.PROTOCOL_VERSION, "resume": False,
                                           "incarnation": 1}))


def join_all(ctx, endpoint):
    socks = [dealer(ctx, endpoint) for _ in range(N_AGENTS)]
    for i, s in enumerate(socks):
        hello(s, i)
        welcome = recv(s)
        assert welcome.type == "WELCOME" and welcome["agent"] == i and welcome["n_envs"] == E
    return socks


def act_frames(agent, t, action=None):
    action = np.zeros(E, np.int64) if action is None else action
    return P.encode("ACT", {"agent": agent, "t": t}, {"action": action})


def malformed(t):
    """(description, frames) sent by agent 5 before its honest ACT at step t."""
    good = [bytes(f) for f in act_frames(5, t)]
    head = P.header_map(msgpack.unpackb(good[0]))
    return [
        ("wrong type", [bytes(f) for f in P.encode("STEP", {"t": t}, {
            "obs": np.zeros((E, 101), np.float32), "reward": np.zeros(E, np.float32),
            "cost": np.zeros((E, 0), np.float32), "terminated": np.zeros(E, np.uint8),
            "truncated": np.zeros(E, np.uint8)})], "unexpected STEP"),
        ("truncated", [good[0], good[1][:-3]], "bytes"),
        ("garbage", [b"\xff\x00garbage"], "not valid msgpack"),
        ("oversized", [good[0], good[1] + b"\0" * (2 << 20)], "exceeds the limit"),
        ("nan", [bytes(f) for f in P.encode("ACT", {"agent": 5, "t": t},
                                             {"action": np.full(E, np.nan, np.float32)})], "NaN"),
        ("wrong shape", [bytes(f) for f in act_frames(5, t, np.zeros(E + 1, np.int64))], "shape"),
        ("wrong dtype", [bytes(f) for f in P.encode("ACT", {"agent": 5, "t": t},
                                                     {"action": np.zeros(E, np.float32)})], "dtype"),
        ("out of range", [bytes(f) for f in act_frames(5, t, np.full(E, 9, np.int64))], "out of range"),
        ("unknown agent", [bytes(f) for f in act_frames(42, t)], "unknown agent 42"),
        ("stale step", [bytes(f) for f in act_frames(5, max(t - 1, 0) if t else 99)], "stale step counter"),
        ("missing field", [msgpack.packb({k: v for k, v in head.items() if k != "t"}), good[1]], "lacks field 't'"),
    ]


def test_every_malformed_frame_gets_an_error_and_others_keep_stepping(server):
    endpoint, ctx, proc, tmp_path = server
    socks = join_all(ctx, endpoint)
    seen_reasons = []
    n_bad = len(malformed(0))
    for t in range(n_bad):
        steps = [recv(s) for s in socks]
        assert all(m.type == "STEP" and m["t"] == t for m in steps)
        desc, frames, reason = malformed(t)[t]
        socks[5].send_multipart(frames)
        err = recv(socks[5])
        assert err.type == "ERROR", desc
        assert reason in err["reason"], (desc, err["reason"])
        assert "\n" not in err["reason"]
        seen_reasons.append(err["reason"])
        for i, s in enumerate(socks):
            s.send_multipart(act_frames(i, t, np.full(E, i % 5, np.int64)))
    # the server is still stepping every agent after all of that
    assert all(recv(s)["t"] == n_bad for s in socks)
    assert proc.poll() is None


def test_unknown_agent_hello_is_refused_and_missing_agent_gets_fallback(server, tmp_path):
    endpoint, ctx, proc, _ = server
    stranger = dealer(ctx, endpoint)
    hello(stranger, 17)
    err = recv(stranger)
    assert err.type == "ERROR" and "unknown agent 17" in err["reason"]
    socks = join_all(ctx, endpoint)
    # agent 3 goes silent: after one deadline (3 s) the others step on without it
    for t in range(3):
        for i, s in enumerate(socks):
            if i == 3 and t > 0:
                continue
            msg = recv(s)
            assert msg["t"] == t
            s.send_multipart(act_frames(i, t))
    events = [json.loads(line) for line in (tmp_path / "envserver" / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "agent_down" and e["agent"] == 3 for e in events)


def test_episodes_are_logged_with_the_contract_fields(server):
    endpoint, ctx, proc, tmp_path = server
    socks = join_all(ctx, endpoint)
    for t in range(50):  # one coop-game episode is 50 steps
        for i, s in enumerate(socks):
            assert recv(s)["t"] == t
            s.send_multipart(act_frames(i, t))
    path = tmp_path / "envserver" / "episodes.jsonl"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not path.read_text().strip():
        time.sleep(0.05)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == E
    for row in rows:
        assert row["episode_length"] == 50 and row["env_step"] == 50 * E
        assert {"episode_return", "episode_cost"} <= set(row)
        assert 0 < row["episode_return"] < 50


def test_an_agent_that_restarts_mid_step_gets_the_current_step_at_once(server):
    endpoint, ctx, proc, tmp_path = server
    socks = join_all(ctx, endpoint)
    for i, s in enumerate(socks):
        assert recv(s)["t"] == 0
        if i != 2:
            s.send_multipart(act_frames(i, 0))
    socks[2].close(linger=0)  # agent 2 "dies" before acting; a new process takes its place
    socks[2] = dealer(ctx, endpoint)
    hello(socks[2], 2)
    assert recv(socks[2]).type == "WELCOME"
    step = recv(socks[2], timeout_ms=2000)  # well inside the 3 s deadline
    assert step.type == "STEP" and step["t"] == 0
    socks[2].send_multipart(act_frames(2, 0))
    assert all(recv(s, timeout_ms=2000)["t"] == 1 for s in socks)
    events = [json.loads(line) for line in (tmp_path / "envserver" / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "agent_rejoin" and e["agent"] == 2 for e in events)
    assert not any(e["event"] == "agent_down" for e in events)
