"""Faults with real processes: a paused agent comes back and stays, its neighbours keep their step;
supervised restarts (`khop run --restart`) of killed agents and of the envserver lose nothing; a
killed run continues in its directory (`khop run --resume`)."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from test_e2e import children_by_role, khop_run, wait_started

from agentd.learner.checkpoint import state_digest

pytestmark = pytest.mark.slow


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def events(run_dir: Path) -> list[dict]:
    return rows(run_dir / "envserver" / "events.jsonl")


def wait_for(what: str, check, timeout: float, proc: subprocess.Popen) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended before {what}: {proc.stdout.read().decode()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def metric_rows(run_dir: Path, agent: int) -> list[dict]:
    path = run_dir / f"agent-{agent}" / "metrics.jsonl"
    return rows(path) if path.exists() else []


def test_paused_agent_rejoins_stays_up_and_its_neighbours_keep_their_step(tmp_path):
    """SIGSTOP an agent for longer than the envserver's deadline, then SIGCONT it: it is marked down,
    comes back (agent_rejoin), keeps writing metric rows and is never marked down again; its
    neighbours, whose relay waited for it, never miss the deadline themselves."""
    run_dir, paused, deadline, steps = tmp_path / "run", 2, 6.0, 24000
    # long enough that the others are far from done when the paused agent comes back: without it they
    # step ~120 locksteps/s here (6000 steps ended 12 s after the agent was marked down)
    proc = khop_run(run_dir, "--task", "coop-game", "--steps", str(steps), "--envs", "4", "--deadline",
                    str(deadline), "--set", "rollout_len=16")
    try:
        wait_started(run_dir, proc)
        wait_for("agent rows", lambda: len(metric_rows(run_dir, paused)) >= 3, 300, proc)
        agent = children_by_role(proc)[paused]
        agent.suspend()
        wait_for("agent_down", lambda: any(e["event"] == "agent_down" and e["agent"] == paused
                                           for e in events(run_dir)), 120, proc)
        time.sleep(2.0)
        agent.resume()
        resumed_at = time.time()
        at = json.loads((run_dir / "envserver" / "status.json").read_text())["env_step"]
        assert at < steps // 2, f"the run was at env step {at} of {steps} when the agent came back: make it longer"
        out = proc.communicate(timeout=600)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    evs = [e for e in events(run_dir) if e["event"] in ("agent_down", "agent_up", "agent_rejoin")]
    downs = [e for e in evs if e["event"] == "agent_down"]
    assert [e["agent"] for e in downs] == [paused], downs  # the neighbours never missed a deadline
    back = [e for e in evs if e["event"] == "agent_rejoin" and e["agent"] == paused]
    assert back and back[0]["time"] >= downs[0]["time"], evs
    after = [r for r in metric_rows(run_dir, paused) if r["time"] > resumed_at]
    assert len(after) >= 3, "the paused agent wrote no updates after it came back"
    all_rows = metric_rows(run_dir, paused)
    assert len({r["incarnation"] for r in all_rows}) == 1  # the same process, not a restart
    assert [r["update"] for r in all_rows] == list(range(1, len(all_rows) + 1))
    final = rows(run_dir / "envserver" / "events.jsonl")[-1]
    assert final["event"] == "server_stop" and final["detail"] == "run complete"
    status = json.loads((run_dir / "envserver" / "status.json").read_text())
    assert paused in status["live"], status  # up at the end


def launcher_events(run_dir: Path) -> list[dict]:
    return rows(run_dir / "events.jsonl")


def test_supervised_run_restarts_killed_agents_from_their_checkpoints(tmp_path):
    """`khop run --restart`: SIGKILL half of the agents at random moments; each comes back, loads its
    newest checkpoint (the weights it holds right after loading hash like the file's), keeps
    training, and metrics.jsonl keeps every row ever written, byte for byte, with no update of one
    incarnation written twice."""
    run_dir = tmp_path / "run"
    rng = random.Random(int(os.environ.get("KHOP_FAULT_SEED", "6")))
    victims = sorted(rng.sample(range(6), 3))
    proc = khop_run(run_dir, "--task", "coop-game", "--steps", "8000", "--envs", "4", "--deadline", "10",
                    "--checkpoint-every", "2", "--set", "rollout_len=16", "--set", "keep_checkpoints=1000",
                    "--restart", "--max-restarts", "3")
    before_kill: dict[int, bytes] = {}
    try:
        wait_started(run_dir, proc)
        for v in victims:
            wait_for(f"a checkpoint of agent {v}",
                     lambda v=v: list((run_dir / f"agent-{v}" / "checkpoints").glob("ckpt-*.pt")), 300, proc)
            time.sleep(rng.uniform(0.5, 5.0))
            victim = children_by_role(proc)[v]
            before_kill[v] = (run_dir / f"agent-{v}" / "metrics.jsonl").read_bytes()
            victim.send_signal(signal.SIGKILL)
        out = proc.communicate(timeout=900)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    for v in victims:
        assert f"agent-{v} exited with -9 (killed by SIGKILL); restarting" in out, out[-3000:]
    evs = launcher_events(run_dir)
    exits = [e for e in evs if e["event"] == "process_exit" and e["process"] in {f"agent-{v}" for v in victims}]
    assert [(e["code"], e["signal"]) for e in exits] == [(-9, "SIGKILL")] * len(victims)  # as the OOM killer does
    assert sorted(e["process"] for e in evs if e["event"] == "process_restarted") == [f"agent-{v}" for v in victims]
    for agent in range(6):
        text = (run_dir / f"agent-{agent}" / "metrics.jsonl").read_text()
        metrics = [json.loads(line) for line in text.splitlines()]
        incarnations = list(dict.fromkeys(r["incarnation"] for r in metrics))
        assert len(incarnations) == (2 if agent in victims else 1), (agent, incarnations)
        keys = [(r["incarnation"], r["update"]) for r in metrics]
        assert len(keys) == len(set(keys)), f"agent {agent} wrote an update twice"
        if agent not in victims:
            assert [r["update"] for r in metrics] == list(range(1, len(metrics) + 1))
            continue
        assert text.encode().startswith(before_kill[agent]), "rows written before the kill were changed"
        first, second = ([r["update"] for r in metrics if r["incarnation"] == i] for i in incarnations)
        assert first == list(range(1, len(first) + 1))
        (resume,) = rows(run_dir / f"agent-{agent}" / "resume.jsonl")
        assert resume["incarnation"] == incarnations[1]
        ckpt = run_dir / f"agent-{agent}" / "checkpoints" / resume["checkpoint"]
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        assert resume["modules_sha256"] == state_digest(saved["modules"]), "weights after load != checkpoint"
        assert resume["update"] == saved["counters"]["n_updates"] <= first[-1]
        # training goes on from the checkpoint's update count
        assert second and second == list(range(resume["update"] + 1, resume["update"] + 1 + len(second)))
        assert len(second) >= 3, f"agent {agent} hardly trained after its restart"
    final = events(run_dir)[-1]
    assert final["event"] == "server_stop" and final["detail"] == "run complete"


def test_envserver_killed_and_restarted_agents_carry_on(tmp_path):
    """SIGKILL the envserver of a supervised run: it is restarted on the same port, resumes the run's
    step counter (the budget is honoured, not restarted), the agents notice, say HELLO again and
    carry on — the same agent processes, their metric rows continuing."""
    run_dir, steps = tmp_path / "run", 6000
    proc = khop_run(run_dir, "--task", "coop-game", "--steps", str(steps), "--envs", "4", "--deadline", "10",
                    "--set", "rollout_len=16", "--restart")
    try:
        wait_started(run_dir, proc)
        wait_for("agent rows", lambda: all(len(metric_rows(run_dir, a)) >= 3 for a in range(6)), 300, proc)
        children_by_role(proc)["envserver"].send_signal(signal.SIGKILL)
        killed_at = time.time()
        out = proc.communicate(timeout=900)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert "envserver exited with -9 (killed by SIGKILL); restarting" in out
    assert [e["process"] for e in launcher_events(run_dir) if e["event"] == "process_restarted"] == ["envserver"]
    starts = [e for e in events(run_dir) if e["event"] == "server_start"]
    assert [s["detail"].split(",")[0] for s in starts] == ["incarnation 1", "incarnation 2"]
    assert 0 < starts[1]["env_step"] < steps and "resumed" in starts[1]["detail"]
    status = json.loads((run_dir / "envserver" / "status.json").read_text())
    assert status["env_step"] == steps and status["incarnation"] == 2 and status["done"]
    final = events(run_dir)[-1]
    assert final["event"] == "server_stop" and final["detail"] == "run complete"
    episode_steps = [r["env_step"] for r in rows(run_dir / "envserver" / "episodes.jsonl")]
    assert episode_steps == sorted(episode_steps) and episode_steps[-1] > starts[1]["env_step"]
    for a in range(6):
        metrics = metric_rows(run_dir, a)
        assert len({r["incarnation"] for r in metrics}) == 1, f"agent {a} was restarted; it should have carried on"
        assert [r["update"] for r in metrics] == list(range(1, len(metrics) + 1))
        assert len([r for r in metrics if r["time"] > killed_at]) >= 3, f"agent {a} stopped training"
        assert "rejoined a restarted envserver" in (run_dir / f"agent-{a}" / "log.txt").read_text()


def test_a_killed_run_resumes_in_its_directory_from_checkpoints_and_clock(tmp_path):
    """SIGKILL the launcher and every process of a run at once (a session that ends), then
    `khop run --resume DIR`: the agents load their newest checkpoints and train on from their update
    count, the envserver continues its step counter, so the run ends at --steps (not --steps more),
    episodes keep their order, and the run is recorded finished; a second --resume is refused."""
    run_dir, steps = tmp_path / "run", 6000
    proc = khop_run(run_dir, "--task", "coop-game", "--steps", str(steps), "--envs", "4", "--deadline", "10",
                    "--checkpoint-every", "2", "--set", "rollout_len=16", "--set", "keep_checkpoints=1000")
    try:
        wait_started(run_dir, proc)
        wait_for("a checkpoint of every agent",
                 lambda: all(list((run_dir / f"agent-{a}" / "checkpoints").glob("ckpt-*.pt")) for a in range(6)),
                 300, proc)
        everyone = [psutil.Process(proc.pid), *children_by_role(proc).values()]
        for p in everyone:
            p.send_signal(signal.SIGKILL)
        psutil.wait_procs(everyone, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = time.time()
    assert not (run_dir / "run_status.json").exists()  # nobody lived to say how it ended
    before = {a: metric_rows(run_dir, a) for a in range(6)}
    clock_step = int((run_dir / "envserver" / "clock").read_text().split()[1])
    assert 0 < clock_step < steps

    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--resume", str(run_dir), "--no-progress"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert json.loads((run_dir / "run_status.json").read_text())["state"] == "finished"
    (resumed,) = [e for e in launcher_events(run_dir) if e["event"] == "run_resumed"]
    assert resumed["env_step"] == clock_step
    starts = [e for e in events(run_dir) if e["event"] == "server_start"]
    assert len(starts) == 2 and starts[1]["env_step"] == clock_step and "resumed" in starts[1]["detail"]
    status = json.loads((run_dir / "envserver" / "status.json").read_text())
    assert status["env_step"] == steps and status["done"]
    episode_steps = [r["env_step"] for r in rows(run_dir / "envserver" / "episodes.jsonl")]
    assert episode_steps == sorted(episode_steps) and episode_steps[-1] > clock_step
    for a in range(6):
        (resume,) = rows(run_dir / f"agent-{a}" / "resume.jsonl")
        ckpt = run_dir / f"agent-{a}" / "checkpoints" / resume["checkpoint"]
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        assert resume["modules_sha256"] == state_digest(saved["modules"]), "weights after load != checkpoint"
        assert 0 < resume["update"] <= before[a][-1]["update"]
        after = [r for r in metric_rows(run_dir, a) if r["time"] > killed_at]
        assert [r["update"] for r in after] == list(range(resume["update"] + 1, resume["update"] + 1 + len(after)))
        assert len(after) >= 3, f"agent {a} hardly trained after the resume"
    again = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--resume", str(run_dir)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "is finished; nothing to resume" in again.stderr
