"""`khop run` end to end: real processes, real TCP, real learning, and the socket table proves
that each agent talks only to the envserver and its direct neighbours."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from compose.report import summarize
from topologies import load_topology, neighbours

pytestmark = pytest.mark.slow
PNG = b"\x89PNG\r\n\x1a\n"


def khop_run(run_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "compose.cli", "run", "--run-dir", str(run_dir), "--no-progress",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_started(run_dir: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    status = run_dir / "envserver" / "status.json"
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        try:
            if json.loads(status.read_text()).get("started_at"):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"run did not start: {proc.stdout.read().decode() if proc.poll() is not None else ''}")


def children_by_role(proc: subprocess.Popen) -> dict[str, psutil.Process]:
    roles = {}
    for child in psutil.Process(proc.pid).children(recursive=True):
        cmd = child.cmdline()
        if "envserver.main" in cmd:
            roles["envserver"] = child
        elif "agentd.main" in cmd:
            roles[int(cmd[cmd.index("--id") + 1])] = child
    return roles


def tcp_peers(roles: dict) -> dict:
    """For each process, the set of processes at the other end of its established TCP connections."""
    port_owner = {}
    conns = {}
    for role, p in roles.items():
        conns[role] = [c for c in p.net_connections(kind="tcp") if c.status == psutil.CONN_ESTABLISHED]
        for c in conns[role]:
            port_owner[c.laddr.port] = role
    return {role: {port_owner.get(c.raddr.port, f"foreign:{c.raddr}") for c in cs} for role, cs in conns.items()}


def test_agents_connect_only_to_envserver_and_direct_neighbours(tmp_path):
    run_dir = tmp_path / "run"
    # a line topology, so that direct neighbours and 2-hop nodes differ for every agent
    proc = khop_run(run_dir, "--task", "coop-game", "--topology", "line", "--kappa", "2", "--steps", "6000",
                    "--envs", "4")
    try:
        wait_started(run_dir, proc)
        time.sleep(2)
        roles = children_by_role(proc)
        assert set(roles) == {"envserver", *range(6)}
        peers = tcp_peers(roles)
    finally:
        out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, out
    graph = load_topology(run_dir / "topology.json")
    for agent in range(6):
        assert peers[agent] == {"envserver", *neighbours(graph, agent)}, (agent, peers[agent])
    # and yet κ = 2 reached every agent's 2-hop ball, relayed by the neighbours
    for agent in range(6):
        cfg = json.loads((run_dir / f"agent-{agent}" / "learner_config.json").read_text())
        assert {int(k) for k in cfg["khop_ball"]} == {j for j in range(6) if abs(j - agent) <= 2}


def test_khop_run_coop_game_dpo_learns_and_reports(tmp_path):
    run_dir = tmp_path / "run"
    proc = khop_run(run_dir, "--task", "coop-game", "--algo", "dpo", "--steps", "32000", "--envs", "16",
                    "--seed", "1")
    out = proc.communicate(timeout=900)[0].decode()
    assert proc.returncode == 0, out
    s = summarize(run_dir)
    assert s["episodes"] == 32000 // 50
    assert s["last_quarter_return"] > s["first_quarter_return"], (s["first_quarter_return"], s["last_quarter_return"])
    for name in ("reward.png", "cost.png", "comm.png"):
        assert (run_dir / "report" / name).read_bytes()[:8] == PNG
    assert "last quarter" in (run_dir / "report" / "summary.md").read_text().lower()
    for agent in range(6):
        rows = [json.loads(line) for line in (run_dir / f"agent-{agent}" / "metrics.jsonl").read_text().splitlines()]
        assert [r["update"] for r in rows] == list(range(1, len(rows) + 1))
        for key in ("env_step", "policy_loss", "value_loss", "entropy", "kl", "beta1", "beta2", "bytes_sent",
                    "bytes_received"):
            assert key in rows[-1], key
        assert rows[-1]["bytes_sent"] > 0
        assert list((run_dir / f"agent-{agent}" / "checkpoints").glob("ckpt-*.pt"))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["code_version"].startswith("khop") and config["seed"] == 1
    # khop report regenerates the report from the run's files alone
    shutil.rmtree(run_dir / "report")
    res = subprocess.run([sys.executable, "-m", "compose.cli", "report", str(run_dir)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert (run_dir / "report" / "reward.png").read_bytes()[:8] == PNG


def test_ctrl_c_stops_everything_and_leaves_no_orphans(tmp_path):
    run_dir = tmp_path / "run"
    proc = khop_run(run_dir, "--task", "safe-halfcheetah-2x3", "--steps", "10000000", "--envs", "2")
    wait_started(run_dir, proc)
    kids = list(children_by_role(proc).values())
    assert len(kids) == 3
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 130, out
    time.sleep(0.5)
    assert not [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
    assert (run_dir / "report" / "summary.md").exists()
    # the agents wrote a final checkpoint on SIGTERM
    for agent in range(2):
        assert list((run_dir / f"agent-{agent}" / "checkpoints").glob("ckpt-*.pt"))


def test_launcher_killed_hard_takes_its_children_with_it(tmp_path):
    run_dir = tmp_path / "run"
    proc = khop_run(run_dir, "--task", "coop-game", "--steps", "10000000", "--envs", "2")
    wait_started(run_dir, proc)
    kids = list(children_by_role(proc).values())
    proc.kill()
    proc.wait()
    _, alive = psutil.wait_procs(kids, timeout=30)
    assert not alive
