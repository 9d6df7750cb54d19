"""A real network partition: every agent in its own network namespace with its own address on a
bridge (the envserver on the bridge's namespace), one link cut with iptables DROP rules for a
while. Both ends carry on with presence 0 for each other (declared down after the heartbeat
timeout, not waited for again), nobody is marked down by the envserver, and when the rules are
removed the link reconnects by itself: both ends see each other up, rows from the other side
arrive again, and the run completes. Needs root, `ip` and `iptables`; namespaces, veths and rules
are removed whatever happens. Traffic never leaves the namespaces this test creates."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compose.run.launcher import spawn
from compose.run.config import RunConfig, process_args
from topologies import generate, save_topology

pytestmark = pytest.mark.slow

N, E, STEPS = 6, 4, 8_000  # coop-game's ring of 6; 2,000 locksteps
TAG = f"khp{os.getpid() % 100_000}"  # unique namespace names per test process
NET = f"10.251.{os.getpid() % 250}"  # a /24 that exists only on this test's bridge


def sh(*args: str) -> None:
    res = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip()}")


@pytest.fixture
def namespaces():
    """{"hub": ns, 0: ns, …}: a bridge namespace holding the envserver's address NET.1, and one
    namespace per agent i at NET.(10+i), joined by veth pairs."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces and iptables need root")
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed")
    names = {"hub": f"{TAG}h", **{i: f"{TAG}a{i}" for i in range(N)}}
    try:
        hub = names["hub"]
        sh("ip", "netns", "add", hub)
        sh("ip", "-n", hub, "link", "set", "lo", "up")
        sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", hub, "addr", "add", f"{NET}.1/24", "dev", "br0")
        sh("ip", "-n", hub, "link", "set", "br0", "up")
        for i in range(N):
            ns = names[i]
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", hub, "link", "add", f"b{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", hub, "link", "set", f"b{i}", "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{NET}.{10 + i}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "netns", "exec", names[0], "iptables", "-L", "INPUT", "-n")  # iptables usable in a namespace?
    except RuntimeError as err:
        _delete(names)
        pytest.skip(f"cannot build the namespaces: {err}")
    try:
        yield names
    finally:
        _delete(names)


def _delete(names: dict) -> None:
    for ns in names.values():  # deleting a namespace removes its veth end and its iptables rules
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def cut(ns: str, peer: str, action: str) -> None:
    """Add (-A) or delete (-D) silent DROP rules for all traffic between ns and the address peer."""
    sh("ip", "netns", "exec", ns, "iptables", action, "INPUT", "-s", peer, "-j", "DROP")
    sh("ip", "netns", "exec", ns, "iptables", action, "OUTPUT", "-d", peer, "-j", "DROP")


def rows(run_dir: Path, agent: int) -> list[dict]:
    try:
        text = (run_dir / f"agent-{agent}" / "metrics.jsonl").read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a torn last line while the agent writes
            pass
    return out


def wait_until(what: str, cond, procs: dict, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        dead = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
        assert not dead, f"processes ended while waiting for {what}: {dead}"
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_partitioned_link_goes_presence_zero_and_heals(namespaces, tmp_path):
    run_dir = tmp_path / "run"
    graph = generate("ring", N)
    for i in graph:
        graph.nodes[i]["address"] = f"tcp://{NET}.{10 + i}:7000"
    topology = tmp_path / "topology.json"
    save_topology(graph, topology)
    env = f"tcp://{NET}.1:5555"
    cfg = RunConfig(envs=E, steps=STEPS, kappa=1, overrides=["rollout_len=16"])
    procs = {}
    try:
        for name, args in process_args(cfg, N, env, env, topology, run_dir).items():
            ns = namespaces["hub" if name == "envserver" else int(name.split("-")[1])]
            module = "envserver.main" if name == "envserver" else "agentd.main"
            procs[name] = spawn(["ip", "netns", "exec", ns, sys.executable, "-m", module, *args],
                                run_dir / name / "log.txt")
        wait_until("the first metric rows", lambda: rows(run_dir, 0) and rows(run_dir, 1), procs)

        a1 = f"{NET}.11"
        cut(namespaces[0], a1, "-A")  # agents 0 and 1 can no longer reach each other; both reach the rest
        try:
            def both_down():
                r0, r1 = rows(run_dir, 0), rows(run_dir, 1)
                return (r0 and r1 and r0[-1]["nbr1_down_events"] >= 1 and r1[-1]["nbr0_down_events"] >= 1
                        and r0[-1]["neighbours_down"] == 1 and r1[-1]["neighbours_down"] == 1)
            wait_until("both ends to declare the other down", both_down, procs)
            during = len(rows(run_dir, 0)), len(rows(run_dir, 1))
            wait_until("more rows during the partition",
                       lambda: len(rows(run_dir, 0)) >= during[0] + 2 and len(rows(run_dir, 1)) >= during[1] + 2, procs)
            r0, r1 = rows(run_dir, 0), rows(run_dir, 1)
            # while cut: no rows from the other end, while the other neighbour keeps delivering
            assert r0[-1]["nbr1_present_steps"] == r0[during[0] - 1]["nbr1_present_steps"]
            assert r0[-1]["nbr5_present_steps"] > r0[during[0] - 1]["nbr5_present_steps"]
            assert r1[-1]["nbr0_present_steps"] == r1[during[1] - 1]["nbr0_present_steps"]
            assert r1[-1]["nbr2_present_steps"] > r1[during[1] - 1]["nbr2_present_steps"]
            cut_at = r0[-1]["nbr1_present_steps"], r1[-1]["nbr0_present_steps"]
        finally:
            cut(namespaces[0], a1, "-D")

        def healed():
            r0, r1 = rows(run_dir, 0), rows(run_dir, 1)
            return (r0[-1]["nbr1_up_events"] >= 1 and r1[-1]["nbr0_up_events"] >= 1
                    and r0[-1]["nbr1_present_steps"] > cut_at[0] + 16 and r1[-1]["nbr0_present_steps"] > cut_at[1] + 16)
        wait_until("the healed link to deliver rows again", healed, procs)

        end = time.monotonic() + 600
        while time.monotonic() < end and any(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
        codes = {n: p.poll() for n, p in procs.items()}
        assert codes == {n: 0 for n in procs}, codes
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    status = json.loads((run_dir / "envserver" / "status.json").read_text())
    assert status["env_step"] == STEPS
    events = [json.loads(line) for line in (run_dir / "envserver" / "events.jsonl").read_text().splitlines()]
    assert not [e for e in events if e["event"] == "agent_down"]  # the partition never stalled the lockstep
    for agent, peer in ((0, 1), (1, 0)):
        last = rows(run_dir, agent)[-1]
        # one cut, one down and one up: the reconnected link was not refused as a duplicate identity
        assert last["neighbours_down"] == 0 and last[f"nbr{peer}_down_events"] == last[f"nbr{peer}_up_events"] == 1
    for agent in range(2, N):  # the others never lost anybody
        assert rows(run_dir, agent)[-1]["neighbour_down_events"] == 0
