"""`khop compose` output on a real Docker Swarm: the test's own dockerd (tests/docker_env.py, shared
with tests/test_docker.py through the session fixture in tests/conftest.py) becomes a one-node Swarm
(`docker swarm init --advertise-addr 127.0.0.1`), the locally built image is deployed with
`docker stack deploy` (no registry: each task's pull fails at once and the local image is used), and

* a 3-agent MuJoCo run completes; one agent container is SIGKILLed (`docker kill`, which plain
  Docker's restart policy would leave down) and Swarm replaces it; the new task resumes from the
  agent's checkpoint (its resume.jsonl row) and trains on; `khop report` works on the volume;
* a `--curve` run gets its keys as Swarm secrets (each container only its own secret key, owned by
  the image's user, mode 0400, nothing in the environment), and its sockets refuse a stranger's key
  and an agent's key at a non-neighbour's inbox while the run goes on to completion.

Then `docker stack rm` (waited until every task, network, config and secret is gone), `docker swarm
leave`, and the session fixture stops the engine and checks the host is as it was. Skips, saying
why, where no engine or Swarm can be had.
"""
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

import docker_env  # tests/docker_env.py: the test engine's setup, not part of the installed package
from docker_env import read_jsonl, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]
docker = pytest.importorskip("docker", reason="the docker SDK is in the test extra (pip install -e '.[test]')")

TASK = "mamujoco-hopper-3x1"  # 3 agents on the line 0-1-2, real MuJoCo
KILLED = 1  # the middle agent: both others are its neighbours and must take it back
STEPS = 40_000  # ~80 updates of 512 env steps: about a minute and a half of training here
CURVE_STEPS = 40_000  # long enough that agent-0 is still training while the probes run in it


def log(msg: str) -> None:
    print(f"[test_swarm {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Swarm:
    eng: docker_env.Engine
    image: str
    cli: str  # the docker CLI that runs `docker stack`
    versionless: bool  # it reads a Compose file without `version:` (Docker 23+)
    node: str  # this node's host name, for --node

    def stack(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        res = subprocess.run([self.cli, "stack", *args], capture_output=True, text=True, timeout=timeout,
                             env=self.eng.env())
        assert res.returncode == 0, f"docker stack {' '.join(args)}: {res.stdout}{res.stderr}"
        return res

    def deploy(self, compose_file: Path, name: str) -> None:
        if not self.versionless:  # docs/containers.md: what a user of Debian 12's docker 20.10 CLI does
            patched = compose_file.with_name(f"{compose_file.stem}.stack.yaml")
            patched.write_text('version: "3.8"\n' + compose_file.read_text())
            compose_file = patched
        self.stack("deploy", "-c", str(compose_file), name)

    def remove(self, name: str) -> None:
        """`docker stack rm` and wait until nothing of the stack is left (it returns at once)."""
        client = self.eng.client()
        self.stack("rm", name)
        label = {"label": f"com.docker.stack.namespace={name}"}

        def gone():
            return not (client.containers.list(all=True, filters=label) or client.networks.list(filters=label)
                        or client.configs.list(filters=label) or client.secrets.list(filters=label))
        wait_for(f"stack {name} to be removed", gone, timeout=180, every=1)

    def tasks(self, name: str, service: str) -> list[dict]:
        """The service's tasks, newest first."""
        svc = self.eng.client().services.get(f"{name}_{service}")
        return sorted(svc.tasks(), key=lambda t: t["CreatedAt"], reverse=True)

    def container(self, name: str, service: str):
        """The container of the service's running task, or None."""
        for task in self.tasks(name, service):
            if task["Status"]["State"] == "running":
                return self.eng.client().containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        return None

    def finished(self, name: str, services: list[str]) -> bool:
        return all(self.tasks(name, s)[0]["Status"]["State"] == "complete" for s in services)

    def run_dir(self, name: str) -> Path:
        volume = wait_for(f"volume khop-{name}", lambda: self.eng.client().volumes.list(filters={"name": f"khop-{name}"}),
                          timeout=120)
        return Path(volume[0].attrs["Mountpoint"]) / name


@pytest.fixture(scope="module")
def swarm(docker_engine):
    eng, image = docker_engine  # tests/conftest.py
    found = docker_env.stack_cli()
    if found is None:
        pytest.skip("no docker CLI here to run `docker stack deploy`")
    res = eng.docker("swarm", "init", "--advertise-addr", "127.0.0.1", check=False, timeout=120)
    if res.returncode != 0:
        pytest.skip(f"docker swarm init failed here: {(res.stdout + res.stderr).strip()}")
    try:
        node = eng.docker("node", "inspect", "self", "--format", "{{.Description.Hostname}}").stdout.strip()
        log(f"one-node Swarm on {node}; stack CLI {found[0]} ({'reads' if found[1] else 'needs'} `version:`)")
        yield Swarm(eng, image, *found, node)
    finally:
        eng.docker("swarm", "leave", "--force", check=False, timeout=120)
        state = eng.docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
        assert state == "inactive", state


def khop(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "compose.cli", *args], capture_output=True, text=True, timeout=300,
                         cwd=cwd)
    assert res.returncode == 0, res.stderr
    return res


def services(n_agents: int) -> list[str]:
    return ["envserver", *(f"agent-{i}" for i in range(n_agents))]


@pytest.mark.timeout(900)
def test_swarm_replaces_a_killed_agent_which_resumes_and_the_run_reports(swarm, tmp_path):
    name = "swarmrun"
    compose_file = tmp_path / f"{name}.yaml"
    khop("compose", "-o", str(compose_file), "--name", name, "--image", swarm.image, "--task", TASK, "--steps",
         str(STEPS), "--checkpoint-every", "1", "--node", swarm.node)
    t_deploy = time.time()
    swarm.deploy(compose_file, name)
    try:
        run_dir = swarm.run_dir(name)
        env_dir, victim_dir = run_dir / "envserver", run_dir / f"agent-{KILLED}"

        def status() -> dict:
            try:
                return json.loads((env_dir / "status.json").read_text())
            except (OSError, ValueError):
                return {}
        started = wait_for("the first env step", lambda: status().get("started_at"), timeout=300)
        log(f"stack deploy -> first env step: {started - t_deploy:.1f} s")

        # --- training: the victim has updated and checkpointed ------------------------------------------
        wait_for(f"agent-{KILLED}'s first checkpoint", lambda: read_jsonl(victim_dir / "metrics.jsonl")
                 and list((victim_dir / "checkpoints").glob("ckpt-*.pt")), timeout=300)
        assert (run_dir / "config.json").exists() and (run_dir / "topology.json").exists()
        old_incarnation = read_jsonl(victim_dir / "metrics.jsonl")[-1]["incarnation"]
        assert not (victim_dir / "resume.jsonl").exists()

        # --- `docker kill` its container: Swarm schedules a new task ----------------------------------------
        victim = swarm.container(name, f"agent-{KILLED}")
        t_kill = time.time()
        victim.kill()  # SIGKILL

        def replaced():  # the new task's container, once started (the task is "starting" until healthy)
            for task in swarm.tasks(name, f"agent-{KILLED}"):
                cid = task["Status"].get("ContainerStatus", {}).get("ContainerID")
                if cid and cid != victim.id and task["Status"]["State"] in ("starting", "running"):
                    return swarm.eng.client().containers.get(cid)
            return None
        new = wait_for(f"Swarm to replace agent-{KILLED}'s task", replaced, timeout=120, every=0.2)
        resume = wait_for(f"agent-{KILLED}'s resume.jsonl row", lambda: read_jsonl(victim_dir / "resume.jsonl"),
                          timeout=180, every=0.2)
        wait_for(f"agent-{KILLED}'s new task to be healthy", lambda: swarm.container(name, f"agent-{KILLED}"),
                 timeout=120, every=0.2)
        log(f"agent-{KILLED} killed: new container started after {started_at(new) - t_kill:.1f} s, resumed "
            f"(its resume.jsonl row) after {resume[0]['time'] - t_kill:.1f} s from {resume[0]['checkpoint']} at update "
            f"{resume[0]['update']}, task healthy (running) after {time.time() - t_kill:.1f} s")
        old_task = [t for t in swarm.tasks(name, f"agent-{KILLED}")
                    if t["Status"]["ContainerStatus"]["ContainerID"] == victim.id][0]
        assert old_task["Status"]["State"] == "failed" and old_task["Status"]["ContainerStatus"]["ExitCode"] == 137
        (row,) = resume
        assert row["incarnation"] != old_incarnation and row["update"] >= 1
        assert (victim_dir / "checkpoints" / row["checkpoint"]).exists()
        assert f"resumed from {row['checkpoint']}" in new.logs().decode(errors="replace")

        # it trains on: rows of the new incarnation continue the old ones' update count
        new_rows = wait_for(f"metrics rows of agent-{KILLED}'s new incarnation", lambda: [
            r for r in read_jsonl(victim_dir / "metrics.jsonl") if r["incarnation"] == row["incarnation"]],
            timeout=300)
        assert new_rows[0]["update"] == row["update"] + 1
        events = read_jsonl(env_dir / "events.jsonl")
        assert [e for e in events if e["agent"] == KILLED and e["event"] in ("agent_up", "agent_rejoin")
                and "resume=True" in e["detail"]], events

        # --- the run completes ----------------------------------------------------------------------------
        wait_for("every task to complete", lambda: swarm.finished(name, services(3)), timeout=600, every=2)
        final = status()
        assert final["done"] and final["env_step"] >= STEPS and final["errors"] == 0
        assert read_jsonl(env_dir / "events.jsonl")[-1]["detail"] == "run complete"
        log(f"run complete {time.time() - started:.0f} s after its first step")

        # --- `khop report` on the run directory in the volume ----------------------------------------------
        khop("report", str(run_dir))
        summary = (run_dir / "report" / "summary.md").read_text()
        assert TASK in summary and f"incarnation {row['incarnation']}, resume=True" in summary, summary
        for png in ("reward.png", "comm.png"):
            assert (run_dir / "report" / png).read_bytes().startswith(b"\x89PNG")
    finally:
        swarm.remove(name)


PROBE = """
import sys, zmq, zmq.auth
server_key, address = sys.argv[1].encode(), sys.argv[2]
own = sys.argv[3] if len(sys.argv) > 3 else None
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.curve_serverkey = server_key
if own:  # a key this container holds (its own)
    s.curve_publickey, s.curve_secretkey = zmq.auth.load_certificate(own)
else:  # a stranger's key
    s.curve_publickey, s.curve_secretkey = zmq.curve_keypair()
s.connect(address)
s.send(b"probe")
print("answered" if s.poll(4000) else "silent")
s.close(0)
ctx.term()
"""


def probe(container, *args: str) -> str:
    """Run PROBE inside a running container; a probe that did not finish (its container stopping under it)
    fails with the container's state rather than reading as an empty answer."""
    result = container.exec_run(["python", "-c", PROBE, *args])
    out = result.output.decode().strip()
    if result.exit_code != 0:
        container.reload()
        raise AssertionError(f"probe exited {result.exit_code} in a {container.status} container: {out!r}")
    return out


@pytest.mark.timeout(600)
def test_swarm_curve_keys_are_secrets_and_strangers_are_refused(swarm, tmp_path):
    name = "swarmcurve"
    keys = tmp_path / "keys"
    khop("keys", str(keys), "--agents", "3")
    compose_file = tmp_path / "stack" / f"{name}.yaml"
    khop("compose", "-o", str(compose_file), "--name", name, "--image", swarm.image, "--task", TASK, "--steps",
         str(CURVE_STEPS), "--curve", str(keys))
    swarm.deploy(compose_file, name)
    try:
        run_dir = swarm.run_dir(name)
        wait_for("all three agents to train", lambda: all(read_jsonl(run_dir / f"agent-{i}" / "metrics.jsonl")
                                                          for i in range(3)), timeout=300)
        public = {f.name: f.read_text() for f in keys.iterdir()}
        z85 = {n: line.split('"')[1] for n, text in public.items() for line in text.splitlines()
               if line.strip().startswith(("public-key", "secret-key"))}
        # --- a stranger's key at the envserver, and agent-0's own key at agent-2's inbox (not a neighbour) --
        prober = swarm.container(name, "agent-0")
        server = zmq_public(public["envserver.key"])
        assert probe(prober, server, "tcp://envserver:5555") == "silent"
        inbox = zmq_public(public["agent-2.key"])
        assert probe(prober, inbox, "tcp://agent-2:7000", "/run/secrets/agent-0.key_secret") == "silent"
        # --- what each container holds: only its own secret key, owned by the image's user, 0400 ----------
        for i in range(3):
            c = swarm.container(name, f"agent-{i}")
            listing = c.exec_run(["ls", "-ln", "/run/secrets"]).output.decode().splitlines()[1:]
            files = {line.split()[-1]: line.split()[:4] for line in listing}
            assert [f for f in files if f.endswith(".key_secret")] == [f"agent-{i}.key_secret"], files
            assert all(mode == "-r--------" and uid == gid == "1000" for mode, _, uid, gid in files.values()), files
            config = json.dumps(c.attrs["Config"])  # environment, command line, labels
            assert "--curve" in config and not [k for k in z85.values() if k in config]
        found = swarm.container(name, "agent-0").exec_run(
            ["sh", "-c", "find / -xdev -path /run/secrets -prune -o \\( -name '*.key_secret' -o -name '*.key' "
                         "-o -name authorized_keys \\) -print 2>/dev/null"], user="root").output.split()
        assert found == [], found  # no key file anywhere in the image's file system

        wait_for("the envserver to count the refusal", lambda: json.loads(
            (run_dir / "envserver" / "status.json").read_text()).get("auth_denied", 0) >= 1, timeout=60)
        wait_for("agent-2 to count the refusal", lambda: any(
            r.get("auth_denied", 0) >= 1 for r in read_jsonl(run_dir / "agent-2" / "metrics.jsonl")), timeout=120)

        wait_for("every task to complete", lambda: swarm.finished(name, services(3)), timeout=600, every=2)
        status = json.loads((run_dir / "envserver" / "status.json").read_text())
        assert status["done"] and status["errors"] == 0 and status["live"] == [0, 1, 2], status
        log(f"curve run complete: envserver auth_denied {status['auth_denied']}, "
            f"agent-2 auth_denied {read_jsonl(run_dir / 'agent-2' / 'metrics.jsonl')[-1].get('auth_denied')}")
    finally:
        swarm.remove(name)


def started_at(container) -> float:
    """When Docker started the container, as a Unix time (its RFC 3339 StartedAt has nanoseconds)."""
    stamp = container.attrs["State"]["StartedAt"]  # 2026-12-05T03:30:38.123456789Z
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(head).replace(tzinfo=timezone.utc).timestamp() + float(f"0.{frac or 0}")


def zmq_public(certificate: str) -> str:
    """The z85 public key of a ZPL certificate file's text (what `khop keys` writes)."""
    for line in certificate.splitlines():
        if line.strip().startswith("public-key"):
            return line.split('"')[1]
    raise AssertionError("no public-key in the certificate")
