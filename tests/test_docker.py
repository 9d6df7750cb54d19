"""`khop compose` on a real Docker engine: a private dockerd in a network namespace of its own
(tests/docker_env.py), the image built from compose/containers/Dockerfile, then one training run of 6 agent
containers in which one agent container is killed (it restarts and resumes from its checkpoint),
one is paused (a hung node) and one is cut off the network, while the others carry on; the run
completes and `khop report` works on the volume's run directory from the host.

Skips, saying why, where no engine can be started (not root, packages missing — `python -m
tests/docker_env.py prepare` installs them — no network namespaces). Everything it starts is
removed and the host put back as it was (daemon stopped, namespace deleted, ip_forward restored).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import docker_env  # tests/docker_env.py: the test engine's setup, not part of the installed package
from docker_env import read_jsonl, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]
docker = pytest.importorskip("docker", reason="the docker SDK is in the test extra (pip install -e '.[test]')")

NAME = "khopdocker"  # compose project and run name
STEPS = 24_000
DEADLINE = 45  # > agentd's 30 s link timeout, so only the faulty agent itself is marked down
KILLED, PAUSED, CUT = 1, 3, 5  # ring 0-1-2-3-4-5-0: no two of them adjacent


def log(msg: str) -> None:
    print(f"[test_docker {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def engine(request):
    compose = docker_env.compose_binary()
    if compose is None:
        pytest.skip("no docker-compose v2 binary (python tests/docker_env.py prepare installs one)")
    eng, image = request.getfixturevalue("docker_engine")  # tests/conftest.py: one engine and image per session
    return eng, compose, image


@pytest.mark.timeout(1500)
def test_compose_run_survives_a_killed_a_paused_and_a_disconnected_agent(engine, tmp_path):
    eng, compose_bin, image = engine
    t_start = time.monotonic()
    compose_file = tmp_path / f"{NAME}.yaml"
    res = subprocess.run([sys.executable, "-m", "compose.cli", "compose", "-o", str(compose_file), "--name", NAME,
                          "--image", image, "--steps", str(STEPS), "--deadline", str(DEADLINE),
                          "--checkpoint-every", "2"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    compose = [str(compose_bin), "-f", str(compose_file), "-p", NAME]

    def dc(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        out = subprocess.run([*compose, *args], capture_output=True, text=True, timeout=timeout, env=eng.env())
        assert out.returncode == 0, f"docker compose {' '.join(args)}: {out.stdout}{out.stderr}"
        return out

    client = eng.client()

    def container(service: str):
        found = client.containers.list(all=True, filters={"label": [f"com.docker.compose.project={NAME}",
                                                                    f"com.docker.compose.service={service}"]})
        assert len(found) == 1, f"{service}: {found}"
        return found[0]

    dc("up", "-d")
    try:
        run_dir = Path(client.volumes.get(f"khop-{NAME}").attrs["Mountpoint"]) / NAME
        env_dir = run_dir / "envserver"

        def episodes() -> list[dict]:
            return read_jsonl(env_dir / "episodes.jsonl")

        def events() -> list[dict]:
            return read_jsonl(env_dir / "events.jsonl")

        def metrics(i: int) -> list[dict]:
            return read_jsonl(run_dir / f"agent-{i}" / "metrics.jsonl")

        # --- training starts: every agent has updated, the victim has a checkpoint ---------------
        wait_for("every agent's first update and a checkpoint of agent-1", lambda: all(metrics(i) for i in range(6))
                 and list((run_dir / f"agent-{KILLED}" / "checkpoints").glob("ckpt-*.pt")), timeout=300)
        assert (run_dir / "config.json").exists() and (run_dir / "topology.json").exists()
        log(f"training: {len(episodes())} episodes after {time.monotonic() - t_start:.0f} s")

        # --- kill agent-1's container (SIGKILL to its init: the whole container dies at once) -----
        # `container.kill()` would be an operator's stop, which by Docker's design disables the restart
        # policy until the next manual start; a crash or an OOM kill is what restart policies are for.
        victim = container(f"agent-{KILLED}")
        old_incarnation = metrics(KILLED)[-1]["incarnation"]
        rows_before = len(metrics(KILLED))
        os.kill(victim.attrs["State"]["Pid"], signal.SIGKILL)
        t_kill = time.monotonic()

        def restarted():
            victim.reload()
            return victim.attrs["RestartCount"] >= 1 and victim.status == "running"
        wait_for("agent-1's container to be restarted by its restart policy", restarted, timeout=60, every=0.5)
        log(f"agent-{KILLED} killed and restarted in {time.monotonic() - t_kill:.1f} s")
        wait_for("agent-1 to log that it resumed", lambda: b"resumed from ckpt-" in victim.logs(), timeout=120)
        new_rows = wait_for("rows of agent-1's new incarnation in metrics.jsonl",
                            lambda: [r for r in metrics(KILLED)[rows_before:] if r["incarnation"] != old_incarnation],
                            timeout=240)
        rows = metrics(KILLED)
        first_new = next(k for k, r in enumerate(rows) if r["incarnation"] != old_incarnation)
        assert all(r["incarnation"] == old_incarnation for r in rows[:first_new])  # new rows follow the old
        assert new_rows[0]["update"] > rows[first_new - 1]["update"] - 2 * 2  # resumed, not restarted from zero
        resumed = [e for e in events() if e["agent"] == KILLED and "resume=True" in e.get("detail", "")]
        assert resumed, events()
        log(f"agent-{KILLED} resumed: {victim.logs().decode(errors='replace').count('resumed from')} resume line(s), "
            f"update {rows[first_new - 1]['update']} -> {new_rows[0]['update']}, event {resumed[0]['event']}")

        # --- pause agent-3 (a hung node) and cut agent-5 off the network, together ----------------
        network = client.networks.get(f"{NAME}_khop")
        paused, cut = container(f"agent-{PAUSED}"), container(f"agent-{CUT}")
        for attempt in range(1, 6):  # runc's cgroup-v1 freezer can give up ("unable to freeze") when a
            try:                     # process (a healthcheck) joins the cgroup mid-freeze: try again
                paused.pause()
                break
            except docker.errors.APIError as err:
                log(f"pause of agent-{PAUSED}, attempt {attempt}: {err.explanation}")
                if attempt == 5:
                    raise
                time.sleep(2)
        network.disconnect(cut)
        t_fault, wall_fault = time.monotonic(), time.time()

        def down(agent: int) -> list[dict]:
            return [e for e in events() if e["event"] == "agent_down" and e["agent"] == agent
                    and e["time"] >= wall_fault]
        wait_for("agent_down for the paused and the cut agent", lambda: down(PAUSED) and down(CUT),
                 timeout=DEADLINE * 3)
        marked = max(down(PAUSED)[0]["env_step"], down(CUT)[0]["env_step"])
        wait_for("episodes written while agents 3 and 5 are out",
                 lambda: [e for e in episodes() if e["env_step"] > marked + 1600], timeout=180)
        progressed = max(e["env_step"] for e in episodes()) - marked
        log(f"agents {PAUSED} (paused) and {CUT} (cut) down at env step {marked} "
            f"({time.monotonic() - t_fault:.0f} s after the faults); the others went on {progressed} env steps")
        for i in set(range(6)) - {PAUSED, CUT}:
            assert container(f"agent-{i}").status == "running"

        paused.unpause()
        network.connect(cut, aliases=[f"agent-{CUT}"])

        # --- the run completes ------------------------------------------------------------------
        env_c = container("envserver")

        def env_exited():
            env_c.reload()
            return env_c.status == "exited"
        wait_for("the envserver to finish the run", env_exited, timeout=600, every=2)
        assert env_c.attrs["State"]["ExitCode"] == 0, env_c.logs()[-2000:]
        status = json.loads((env_dir / "status.json").read_text())
        assert status["done"] and status["env_step"] >= STEPS
        stop = [e for e in events() if e["event"] == "server_stop"]
        assert stop and stop[-1]["detail"] == "run complete"
        for i in (PAUSED, CUT):  # observed, not asserted: what the communication layer makes of a return
            back = [e for e in events() if e["event"] in ("agent_up", "agent_rejoin") and e["agent"] == i
                    and e["env_step"] >= marked]
            log(f"agent-{i} {'came back: ' + back[0]['detail'] if back else 'did not come back before the end'}")
        log(f"run complete after {time.monotonic() - t_start:.0f} s")

        # agents that were never cut off hear BYE and exit 0; the cut one may never hear it
        def agents_exited():
            cs = [container(f"agent-{i}") for i in range(6) if i != CUT]
            for c in cs:
                c.reload()
            return all(c.status == "exited" for c in cs)
        wait_for("the agents to exit after BYE", agents_exited, timeout=180, every=2)
        for i in set(range(6)) - {CUT}:
            c = container(f"agent-{i}")
            assert c.attrs["State"]["ExitCode"] == 0, (i, c.logs()[-2000:])
        cut.reload()
        log(f"agent-{CUT} after the run: {cut.status} (exit {cut.attrs['State']['ExitCode']})")
        for e in events():
            if e["event"] != "agent_up" or e["env_step"] > 0:
                log(f"  event at env step {e['env_step']}: {e['event']} {e['agent']} {e['detail']}")
        for i in (PAUSED, CUT):
            tail = container(f"agent-{i}").logs(tail=4).decode(errors="replace").strip().replace("\n", " | ")
            log(f"  agent-{i} log: {tail}")

        # --- `khop report` on the volume's run directory, from the host ----------------------------
        rep = subprocess.run([sys.executable, "-m", "compose.cli", "report", str(run_dir)], capture_output=True,
                             text=True, timeout=300)
        assert rep.returncode == 0, rep.stderr
        summary = (run_dir / "report" / "summary.md").read_text()
        assert "agent_down" in summary
        for png in ("reward.png", "comm.png"):
            assert (run_dir / "report" / png).read_bytes().startswith(b"\x89PNG")
        # the README's way to take a finished run out of the volume
        dc("cp", f"envserver:/runs/{NAME}", str(tmp_path / "copied"))
        assert (tmp_path / "copied" / "report" / "summary.md").read_text() == summary
        log(f"report written; whole scenario {time.monotonic() - t_start:.0f} s")
    finally:
        out = subprocess.run([*compose, "down", "-v", "--timeout", "20"], capture_output=True, text=True,
                             timeout=300, env=eng.env())
        log(f"compose down: rc {out.returncode}")
