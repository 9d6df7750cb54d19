"""Fuzzing a live run: 100k random and mutated frames at the envserver and at an agent's
neighbour inbox, plus raw garbage on both TCP ports. Nothing crashes or hangs, and the honest
agents finish their training with every episode and update accounted for."""
import json
import socket
import subprocess
import sys
import time

import msgpack
import numpy as np
import psutil
import pytest
import zmq

from envserver import protocol as P

pytestmark = pytest.mark.slow

FRAMES_PER_TARGET = 50_000
STEPS, ENVS = 16_000, 8


def templates(rng):
    """Well-formed messages to mutate: ACTs for the envserver, STATEs for an agent inbox."""
    act = [bytes(f) for f in P.encode("ACT", {"agent": int(rng.integers(0, 6)), "t": int(rng.integers(0, 3000))},
                                       {"action": rng.integers(0, 5, ENVS)})]
    state = [bytes(f) for f in P.encode("STATE", {"from": 1, "t": int(rng.integers(0, 3000)), "round": 1,
                                                  "origins": [1], "hops": [0]},
                                         entries=[rng.standard_normal((ENVS, 101)).astype(np.float32)])]
    return act, state


def mutate(frames, rng):
    frames = [bytearray(f) for f in frames]
    kind = rng.integers(0, 6)
    if kind == 0:  # flip bytes anywhere
        for _ in range(rng.integers(1, 8)):
            f = frames[rng.integers(0, len(frames))]
            if f:
                f[rng.integers(0, len(f))] = rng.integers(0, 256)
    elif kind == 1:  # truncate or extend a frame
        i = rng.integers(0, len(frames))
        frames[i] = frames[i][: rng.integers(0, len(frames[i]) + 1)] + bytes(rng.integers(0, 256, rng.integers(0, 16),
                                                                                          dtype=np.uint8))
    elif kind == 2:  # drop or duplicate frames
        frames = frames[:1] if rng.random() < 0.5 else frames + frames[1:]
    elif kind == 3:  # rewrite a header field with a hostile value
        head = msgpack.unpackb(bytes(frames[0]))  # positional, as khop sends it
        if rng.random() < 0.5:
            head = P.header_map(head)  # or the readable map form
        key = list(head)[rng.integers(0, len(head))] if isinstance(head, dict) else rng.integers(0, len(head))
        head[key] = [None, -1, 2**62, "x" * 100, [1] * 50, {"a": 1}, True, 1.5][rng.integers(0, 8)]
        frames[0] = bytearray(msgpack.packb(head))
    elif kind == 4:  # random frames
        frames = [bytearray(rng.integers(0, 256, rng.integers(0, 200), dtype=np.uint8))
                  for _ in range(rng.integers(1, 4))]
    else:  # NaN in the payload
        if len(frames) > 1 and len(frames[1]) >= 4:
            frames[1][:4] = np.array([np.nan], np.float32).tobytes()
    return [bytes(f) for f in frames]


def blast(endpoint, identity, template, rng, n):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 100_000)
    if identity:
        s.setsockopt(zmq.IDENTITY, identity)
    s.connect(endpoint)
    for _ in range(n):
        s.send_multipart(mutate(template, rng), copy=True)
        while s.poll(0):  # read (and ignore) whatever ERRORs come back
            s.recv_multipart()
    s.close(linger=1000)


def raw_garbage(port, rng, n=100):
    for _ in range(n):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                c.sendall(bytes(rng.integers(0, 256, rng.integers(1, 4096), dtype=np.uint8)))
        except OSError:
            pass


def test_fuzzing_a_live_run_breaks_nothing(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "compose.cli", "run", "--run-dir", str(run_dir), "--no-progress",
                             "--task", "coop-game", "--steps", str(STEPS), "--envs", str(ENVS)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    status = run_dir / "envserver" / "status.json"
    end = time.monotonic() + 120
    while time.monotonic() < end:
        try:
            if json.loads(status.read_text()).get("started_at"):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    env_cmd = next(c.cmdline() for c in psutil.Process(proc.pid).children() if "envserver.main" in c.cmdline())
    env_endpoint = env_cmd[env_cmd.index("--bind") + 1]
    topo = json.loads((run_dir / "topology.json").read_text())
    inbox = next(n["address"] for n in topo["nodes"] if n["id"] == 0)
    rng = np.random.default_rng(0)
    act, state = templates(rng)
    blast(env_endpoint, b"", act, rng, FRAMES_PER_TARGET)
    blast(inbox, b"1", state, rng, FRAMES_PER_TARGET // 2)  # claims to be a neighbour
    blast(inbox, b"", state, rng, FRAMES_PER_TARGET // 2)  # a stranger
    for endpoint in (env_endpoint, inbox):
        raw_garbage(int(endpoint.rsplit(":", 1)[1]), rng)
    out = proc.communicate(timeout=900)[0].decode()
    assert proc.returncode == 0, out
    final = json.loads(status.read_text())
    assert final["env_step"] == STEPS and final["errors"] > 1000  # the server saw and refused the flood
    episodes = (run_dir / "envserver" / "episodes.jsonl").read_text().splitlines()
    assert len(episodes) == STEPS // 50
    for agent in range(6):
        rows = [json.loads(x) for x in (run_dir / f"agent-{agent}" / "metrics.jsonl").read_text().splitlines()]
        assert [r["update"] for r in rows] == list(range(1, len(rows) + 1))
        assert len(rows) == (STEPS // ENVS - 1) // 32  # every rollout of 32 steps was trained on
    rejected = [json.loads(x)["rejected_frames"] for x in
                (run_dir / "agent-0" / "metrics.jsonl").read_text().splitlines()][-1]
    assert rejected > 100
