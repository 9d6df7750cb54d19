"""Security with real processes and real sockets: `khop keys` writes 0600 key files; a `--curve` run
trains while clients with an unlisted key, no key (plaintext) or a borrowed key try to join the
envserver or inject into an agent's inbox — none gets a frame through, each refusal is counted,
and the run is unaffected; a frame over the maximum message size sent to the envserver and to an
agent inbox is dropped by libzmq and counted while the run goes on."""
import json
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth

from envserver import protocol as P
from topologies import load_topology


def khop(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compose.cli", *args], capture_output=True, text=True, timeout=120)


def test_keys_are_private_files_and_never_overwritten(tmp_path):
    keys = tmp_path / "keys"
    res = khop("keys", str(keys), "--agents", "3")
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in keys.iterdir())
    assert names == sorted([f"{n}.{ext}" for n in ("envserver", "agent-0", "agent-1", "agent-2")
                            for ext in ("key", "key_secret")] + ["authorized_keys"])
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in keys.iterdir())
    listed = [line.split()[0] for line in (keys / "authorized_keys").read_text().splitlines()
              if line and not line.startswith("#")]
    assert listed == ["agent-0", "agent-1", "agent-2"]  # agents connect; the envserver only serves
    again = khop("keys", str(keys), "--agents", "3")
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "not empty" in again.stderr


@pytest.fixture(scope="module")
def key_dirs(tmp_path_factory):
    from compose.run.keys import make_keys

    root = tmp_path_factory.mktemp("keys")
    make_keys(root / "KEYS", 6)
    make_keys(root / "KEYS2", 2)
    return root


@pytest.mark.parametrize("args, expect", [
    (["--curve", "/nonexistent/keys"], "no such directory"),
    (["--curve", "KEYS", "--inprocess"], "--inprocess"),
    (["--curve", "KEYS2"], "missing agent-2.key"),
    (["--heartbeat-timeout", "0"], "--heartbeat-timeout"),
])
def test_bad_security_options_exit_2_with_one_line(tmp_path, key_dirs, args, expect):
    args = [str(key_dirs / a) if a.startswith("KEYS") else a for a in args]
    res = khop("run", "--run-dir", str(tmp_path / "r"), "--steps", "64", *args)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and expect in res.stderr, res.stderr
    assert not (tmp_path / "r").exists()


def test_a_neighbour_key_cannot_speak_for_another_neighbour(tmp_path):
    """The inbox binds each connection's key to the agent id it claims: agent 2's key sending as agent
    1 (while agent 1 is not connected) is refused, agent 2's own frames are taken."""
    from agentd.links import NeighbourLinks
    from compose.run.keys import make_keys
    from compose.run.launcher import free_ports
    from envserver.curve import Curve

    keys = tmp_path / "keys"
    make_keys(keys, 3)
    ctx = zmq.Context()
    address = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    unused = {1: f"tcp://127.0.0.1:{free_ports(1)[0]}", 2: f"tcp://127.0.0.1:{free_ports(1)[0]}"}
    curve = Curve(keys, "agent-0")
    links = NeighbourLinks(ctx, 0, address, unused, curve=curve)
    try:
        posing = client(ctx, address, keys, key_name="agent-2", server="agent-0", identity=b"1")
        posing.send_multipart(P.encode("STATE", {"from": 1, "t": 0, "round": 1, "origins": [], "hops": []}))
        honest = client(ctx, address, keys, key_name="agent-2", server="agent-0", identity=b"2")
        honest.send_multipart(P.encode("STATE", {"from": 2, "t": 0, "round": 1, "origins": [], "hops": []}))
        got = links.recv(10_000)
        assert got is not None and got[0] == 2
        end = time.monotonic() + 10
        while links.counters.rejected == 0 and time.monotonic() < end:
            links.recv(100)
        assert links.counters.rejected == 1
    finally:
        links.close()
        curve.close()
        ctx.destroy(linger=0)


# --------------------------------------------------------------------------- real runs

def start_run(run_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "compose.cli", "run", "--run-dir", str(run_dir), "--no-progress",
                             "--envs", "4", "--set", "rollout_len=16", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def rows(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def wait_for_rows(run_dir: Path, proc: subprocess.Popen, timeout: float = 180) -> tuple[str, dict[int, str]]:
    """Once agent 0 has written a metric row: (envserver endpoint, {agent: inbox address})."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None and not rows(run_dir / "agent-0" / "metrics.jsonl"):
        time.sleep(0.2)
    assert proc.poll() is None and rows(run_dir / "agent-0" / "metrics.jsonl"), "run did not get going"
    endpoint = re.search(r" on (tcp://\S+)", (run_dir / "envserver" / "log.txt").read_text()).group(1)
    graph = load_topology(run_dir / "topology.json")
    return endpoint, {i: graph.nodes[i]["address"] for i in graph}


def client(ctx, endpoint: str, keys: Path | None = None, key_name: str | None = None, server: str = "",
           pair: tuple[bytes, bytes] | None = None, identity: bytes | None = None) -> zmq.Socket:
    """A DEALER: plaintext, with a named key from the run's key directory, or with an unlisted pair."""
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if identity is not None:
        s.setsockopt(zmq.IDENTITY, identity)
    if key_name is not None:
        pair = zmq.auth.load_certificate(keys / f"{key_name}.key_secret")
    if pair is not None:
        s.setsockopt(zmq.CURVE_PUBLICKEY, pair[0])
        s.setsockopt(zmq.CURVE_SECRETKEY, pair[1])
        s.setsockopt(zmq.CURVE_SERVERKEY, zmq.auth.load_certificate(keys / f"{server}.key")[0])
    s.connect(endpoint)
    return s


def hello(agent: int) -> list:
    return P.encode("HELLO", {"agent": agent, "version": P.PROTOCOL_VERSION, "resume": False, "incarnation": 7})


def finish(proc: subprocess.Popen, timeout: float = 400) -> str:
    out = proc.communicate(timeout=timeout)[0].decode()
    assert proc.returncode == 0, out[-3000:]
    return out


def finished_status(proc: subprocess.Popen, run_dir: Path) -> dict:
    """The envserver's final status once the 6000-step run has ended cleanly with every agent live."""
    finish(proc)
    status = json.loads((run_dir / "envserver" / "status.json").read_text())
    assert status["env_step"] == 6000 and status["live"] == list(range(6))
    return status


def events(run_dir: Path) -> list[dict]:
    return rows(run_dir / "envserver" / "events.jsonl")


@pytest.mark.slow
def test_only_listed_keys_get_through_and_the_curve_run_is_unaffected(tmp_path):
    keys = tmp_path / "keys"
    assert khop("keys", str(keys), "--agents", "6").returncode == 0
    run_dir = tmp_path / "run"
    proc = start_run(run_dir, "--curve", str(keys), "--steps", "6000")
    ctx = zmq.Context()
    try:
        endpoint, inbox = wait_for_rows(run_dir, proc)
        unlisted = zmq.curve_keypair()
        # the envserver: an unlisted key and a plaintext client say HELLO and try an ACT — no reply
        silent = [client(ctx, endpoint, keys, pair=unlisted, server="envserver"), client(ctx, endpoint)]
        for s in silent:
            s.send_multipart(hello(0))
            s.send_multipart(P.encode("ACT", {"agent": 0, "t": 1}, {"action": np.zeros(4, np.int64)}))
        # a listed key may connect, but only as its own agent
        borrowed = client(ctx, endpoint, keys, key_name="agent-3", server="envserver")
        borrowed.send_multipart(hello(0))
        assert borrowed.poll(30_000), "no ERROR for a HELLO under another agent's key"
        reply = P.decode(borrowed.recv_multipart())
        assert reply.type == "ERROR" and "agent-3's key cannot say HELLO as agent 0" in reply["reason"]
        # agent 0's inbox (neighbours 1 and 5): an unlisted key, a non-neighbour's key and plaintext
        # are refused in the handshake; a neighbour's key posing as agent 2 gets through the handshake
        # and is refused by the link layer (identities 1 and 5 are taken by the live neighbours)
        state = P.encode("STATE", {"from": 2, "t": 10**6, "round": 1, "origins": [], "hops": []})
        intruders = [client(ctx, inbox[0], keys, pair=unlisted, server="agent-0", identity=b"2"),
                     client(ctx, inbox[0], keys, key_name="agent-3", server="agent-0", identity=b"2"),
                     client(ctx, inbox[0], identity=b"2"),
                     client(ctx, inbox[0], keys, key_name="agent-5", server="agent-0", identity=b"2")]
        for s in intruders:
            s.send_multipart(state)
        time.sleep(3)
        assert not any(s.poll(0) for s in silent), "an unauthorised client got a reply"
        n_rows = len(rows(run_dir / "agent-0" / "metrics.jsonl"))
        assert proc.poll() is None, "the run ended before the attempts were made; give it more steps"
    finally:
        ctx.destroy(linger=0)
    status = finished_status(proc, run_dir)
    assert status["auth_denied"] >= 1 and status["handshake_failed"] >= 1
    assert status["errors"] == 1  # the borrowed key's HELLO; nothing from the unlisted or plaintext client
    ev = events(run_dir)
    assert sorted(e["agent"] for e in ev if e["event"] == "agent_up") == list(range(6))
    assert not [e for e in ev if e["event"] in ("agent_down", "agent_rejoin")]
    assert {"auth_denied", "handshake_failed"} <= {e["event"] for e in ev}
    last = rows(run_dir / "agent-0" / "metrics.jsonl")[-1]
    assert len(rows(run_dir / "agent-0" / "metrics.jsonl")) > n_rows  # kept training after the attempts
    assert last["auth_denied"] >= 2 and last["handshake_failed"] >= 1  # unlisted + agent-3; plaintext
    assert last["rejected_frames"] == 1  # agent-5's key posing as agent 2: refused by the link layer
    assert last["neighbour_down_events"] == 0 and last["presence_mean"] == 1.0


@pytest.mark.slow
def test_oversized_frames_are_dropped_and_counted_while_the_run_goes_on(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_run(run_dir, "--steps", "6000")
    ctx = zmq.Context()
    big = bytes(P.DEFAULT_MAX_MESSAGE_BYTES + 1)  # one frame over ZMQ_MAXMSGSIZE
    try:
        endpoint, inbox = wait_for_rows(run_dir, proc)
        first = rows(run_dir / "agent-0" / "metrics.jsonl")[0]
        for address in (endpoint, inbox[0]):
            s = client(ctx, address, identity=b"1")
            s.send(big)
            time.sleep(2)
            s.close(linger=0)
        n_rows = len(rows(run_dir / "agent-0" / "metrics.jsonl"))
        assert proc.poll() is None, "the run ended before the frames were sent; give it more steps"
    finally:
        ctx.destroy(linger=0)
    status = finished_status(proc, run_dir)
    assert status["conn_dropped"] >= 1
    ev = events(run_dir)
    assert "conn_dropped" in {e["event"] for e in ev} and not [e for e in ev if e["event"] == "agent_down"]
    all_rows = rows(run_dir / "agent-0" / "metrics.jsonl")
    assert first["conn_dropped"] == 0 and all_rows[-1]["conn_dropped"] >= 1
    assert len(all_rows) > n_rows and all_rows[-1]["rejected_frames"] == 0
    assert all_rows[-1]["neighbour_down_events"] == 0
