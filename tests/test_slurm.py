"""`khop slurm`: the job file it writes (its launcher line parses back to the run's own options), the
bad input it refuses before anything is submitted, where the job puts each process — and, on a real
one-node SLURM cluster started by the test (tests/slurm_env.py), a job that trains, survives the
scancel of one agent's step, is cancelled whole and submitted again to finish, and reports."""
import contextlib
import io
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

import slurm_env  # tests/slurm_env.py
from compose.cli import build_parser, main
from compose.cluster.slurm import check_nodes
from compose.cluster.slurm_job import placement, port_base, tasks_per_node
from compose.run.config import LaunchError, RunConfig
from compose.run.keys import make_keys
from envserver.options import from_namespace
from topologies import resolve_topology, save_topology

ROOT = Path(__file__).resolve().parent.parent


def khop_slurm(*args: str) -> tuple[int, str]:
    """`khop slurm ARGS` in this process: (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["slurm", *args])
        except SystemExit as exit_:  # argparse
            code = exit_.code
    return code, err.getvalue()


def directives(text: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in text.splitlines() if line.startswith("#SBATCH ")]


def launcher_argv(text: str) -> list[str]:
    """The `khop run` options on the job file's last line (after `-m compose.cluster.slurm_job`)."""
    words = shlex.split(text.strip().splitlines()[-1])
    return words[words.index("compose.cluster.slurm_job") + 1:]


def test_the_job_file_asks_for_one_cpu_per_process_and_runs_khop_runs_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    topo = tmp_path / "line6.json"
    save_topology(resolve_topology("line", 6), topo)
    code, err = khop_slurm("-o", "job.sbatch", "--name", "line6", "--topology", "line6.json", "--kappa", "2",
                           "--algo", "ippo", "--steps", "9600", "--envs", "8", "--seed", "3", "--set", "rollout_len=64",
                           "--relay", "async", "--restart", "--max-restarts", "3", "--nodes", "2",
                           "--partition", "cpu", "--time", "02:00:00", "--sbatch=--account=rl")
    assert code == 0, err
    text = (tmp_path / "job.sbatch").read_text()
    run_dir = tmp_path / "runs" / "line6"
    assert text.startswith("#!/bin/bash\n")
    assert directives(text) == ["--job-name=khop-line6", "--ntasks=7", "--cpus-per-task=1", "--nodes=2",
                                "--ntasks-per-node=4",
                                "--partition=cpu", "--time=02:00:00", f"--chdir={tmp_path}",
                                f"--output={run_dir}/slurm-%j.out", "--open-mode=append", "--requeue",
                                "--signal=B:TERM@90", "--account=rl"]
    assert run_dir.is_dir() and not list(run_dir.iterdir())  # SLURM writes the job's output there
    last = shlex.split(text.strip().splitlines()[-1])
    assert last[:4] == ["exec", sys.executable, "-m", "compose.cluster.slurm_job"]
    # what the job's launcher parses is the run given here, every path absolute
    got = from_namespace(RunConfig, build_parser().parse_args(["run", *launcher_argv(text)]))
    want = RunConfig(topology=str(topo), kappa=2, algo="ippo", steps=9600, envs=8, seed=3, overrides=["rollout_len=64"],
                     relay="async", restart=True, max_restarts=3, run_dir=run_dir)
    assert got == want


def test_a_default_kappa_stays_the_runs_own_and_the_progress_bar_stays_off_the_line(tmp_path):
    code, err = khop_slurm("-o", str(tmp_path / "j.sbatch"), "--name", "d", "--run-dir", str(tmp_path / "r"),
                           "--algo", "mappo-l")
    assert code == 0, err
    argv = launcher_argv((tmp_path / "j.sbatch").read_text())
    assert argv == ["--algo", "mappo-l", "--run-dir", str(tmp_path / "r")]


@pytest.mark.parametrize("args, message", [
    (["--topology", "halfcheetah-2x3"], "has 2 nodes but task has 6 agents"),
    (["--curve", "KEYS"], "--curve KEYS: missing agent-2.key"),
    (["--nodes", "8"], "--nodes 8: the run has 7 processes (the envserver and 6 agents), one CPU each; it can use "
                       "at most 7 nodes"),
    (["--nodes", "0"], "--nodes: must be >= 1, got 0"),
    (["--sbatch", "mem=2G"], "--sbatch 'mem=2G': give one sbatch option as it would follow #SBATCH"),
    (["--inprocess"], "unrecognized arguments: --inprocess"),
])
def test_bad_input_is_one_line_before_anything_is_written(tmp_path, args, message):
    make_keys(tmp_path / "KEYS", 2)  # keys for 2 agents; coop-game has 6
    args = [a.replace("KEYS", str(tmp_path / "KEYS")) for a in args]
    message = message.replace("KEYS", str(tmp_path / "KEYS"))
    code, err = khop_slurm("-o", str(tmp_path / "out" / "j.sbatch"), "--run-dir", str(tmp_path / "run"), *args)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("nodes, partition, message", [
    (2, ("debug", [16]), "--nodes 2: partition debug has 1 node(s) up"),
    (None, ("small", [2, 2]), "7 one-CPU processes (the envserver and 6 agents) do not fit on 2 node(s) of partition "
                              "small (4 CPUs)"),
    (1, ("mixed", [4, 6]), "7 one-CPU processes (the envserver and 6 agents) do not fit on 1 node(s) of partition "
                           "mixed (6 CPUs, at most 7 processes a node)"),
    (2, ("uneven", [16, 2]), "7 one-CPU processes (the envserver and 6 agents) do not fit on 2 node(s) of partition "
                             "uneven (18 CPUs, at most 4 processes a node)"),
])
def test_a_node_count_the_partition_cannot_hold_is_refused(nodes, partition, message):
    with pytest.raises(LaunchError) as err:
        check_nodes(nodes, 7, partition)
    assert str(err.value) == message


def test_node_counts_that_fit():
    check_nodes(2, 7, ("debug", [4, 4]))
    check_nodes(None, 7, ("debug", [16]))
    check_nodes(7, 7, None)  # sinfo did not answer: only the run's own limit


def test_placement_is_contiguous_balanced_and_within_each_hosts_cpus():
    where = placement(["a", "b"], [16, 16], 6)
    assert list(where.values()) == ["a"] * 4 + ["b"] * 3  # 7 processes: envserver + agents 0-2, agents 3-5
    where = placement(["a", "b", "c"], [2, 16, 16], 6)  # a holds only two
    assert list(where.values()) == ["a"] * 2 + ["b"] * 3 + ["c"] * 2
    for n_agents in range(2, 24):  # processes per host ±1, so agents per host ±1 too
        hosts = list(placement(["a", "b", "c"], [8, 8, 8], n_agents).values())
        per_host = [hosts.count(h) for h in "abc"]
        agents = [hosts[1:].count(h) for h in "abc"]
        assert max(per_host) - min(per_host) <= 1 and max(agents) - min(agents) <= 1, (n_agents, hosts)
        assert hosts == sorted(hosts)  # contiguous
    with pytest.raises(LaunchError, match="the allocation holds 3 one-CPU steps on 2 node"):
        placement(["a", "b"], [1, 2], 6)


def test_tasks_per_node_and_ports():
    assert tasks_per_node("16,2(x3),4") == [16, 2, 2, 2, 4]
    with pytest.raises(LaunchError):
        tasks_per_node("lots")
    bases = [port_base(job, 7) for job in range(1, 500)]
    assert all(10_000 <= b and b + 7 <= 32_768 for b in bases)
    assert all(b2 - b1 == 7 for b1, b2 in zip(bases, bases[1:]) if b2 > b1)  # consecutive jobs: disjoint blocks


def test_the_job_launcher_outside_a_job_is_one_line(tmp_path, monkeypatch):
    for var in ("SLURM_JOB_ID", "SLURM_JOB_NODELIST"):
        monkeypatch.delenv(var, raising=False)
    res = subprocess.run([sys.executable, "-m", "compose.cluster.slurm_job", "--run-dir", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 2
    assert res.stderr.strip() == ("khop slurm job: error: not inside a SLURM job (no SLURM_JOB_ID): submit the job "
                                  "file with sbatch")


# --- a real one-node cluster -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = Path(tmp_path_factory.mktemp("slurm"))
    try:
        c = slurm_env.up(root)
    except slurm_env.ClusterUnavailable as err:
        pytest.skip(f"no SLURM cluster here: {err}")
    try:
        yield c
    finally:
        slurm_env.down(c)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def job_state(cluster, job: str) -> dict[str, str]:
    """`scontrol show job` as key=value pairs (the job stays listed MinJobAge=300 s after it ends)."""
    out = cluster.run("scontrol", "show", "job", "-o", job).stdout
    return dict(w.split("=", 1) for w in out.split() if "=" in w)


def wait_for(what: str, check, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(1)


def wait_ended(cluster, job: str, timeout: float) -> dict[str, str]:
    wait_for(f"job {job} to end", lambda: job_state(cluster, job).get("JobState") in
             ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"), timeout)
    return job_state(cluster, job)


def step_of(cluster, job: str, name: str) -> str | None:
    out = cluster.run("squeue", "-s", "-h", "-j", job, "-o", "%i %j").stdout.split("\n")
    return next((w[0] for w in (line.split() for line in out) if len(w) == 2 and w[1] == name), None)


@pytest.mark.slow
def test_a_real_cluster_runs_the_job_survives_a_cancelled_step_and_resumes_a_cancelled_job(cluster, tmp_path,
                                                                                            monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))  # for khop slurm's sinfo, and the jobs' srun
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the jobs run this checkout (sbatch exports the environment)
    monkeypatch.chdir(tmp_path)
    run_dir, job_file = tmp_path / "shared" / "run", tmp_path / "job.sbatch"

    code, err = khop_slurm("-o", str(job_file), "--run-dir", str(run_dir), "--nodes", "2")
    assert (code, err.strip()) == (2, "khop slurm: error: --nodes 2: partition debug has 1 node(s) up")
    assert cluster.run("squeue", "-h").stdout.strip() == "" and not job_file.exists()

    keys = tmp_path / "shared" / "keys"  # CurveZMQ: on a shared cluster anyone on the nodes can reach the ports
    make_keys(keys, 6)
    code, err = khop_slurm("-o", str(job_file), "--run-dir", str(run_dir), "--steps", "8000", "--envs", "2",
                           "--set", "rollout_len=16", "--checkpoint-every", "2", "--set", "keep_checkpoints=1000",
                           "--restart", "--curve", str(keys), "--nodes", "1")
    assert code == 0, err
    first = cluster.run("sbatch", "--parsable", str(job_file)).stdout.strip()
    assert first.isdigit()
    ckpts = run_dir / "agent-1" / "checkpoints"
    wait_for("a checkpoint of agent 1", lambda: list(ckpts.glob("ckpt-*.pt")), 300)
    step = step_of(cluster, first, "agent-1")
    assert step and step.startswith(f"{first}."), cluster.run("squeue", "-s").stdout
    assert cluster.run("scancel", step).returncode == 0  # SIGKILL, as a failing node or the OOM killer would
    wait_for("agent 1's restart", lambda: (run_dir / "agent-1" / "resume.jsonl").exists(), 120)
    (resume,) = rows(run_dir / "agent-1" / "resume.jsonl")
    assert resume["checkpoint"].startswith("ckpt-")
    assert step_of(cluster, first, "agent-1") not in (None, step)  # a new step of the same job
    # the whole job cancelled mid-run (a preemption, a time limit): submitting the file again resumes it
    assert cluster.run("scancel", first).returncode == 0
    assert wait_ended(cluster, first, 120)["JobState"] == "CANCELLED"
    status = run_dir / "run_status.json"
    assert not status.exists() or json.loads(status.read_text())["state"] != "finished"
    second = cluster.run("sbatch", "--parsable", str(job_file)).stdout.strip()
    ended = wait_ended(cluster, second, 480)
    out = (run_dir / f"slurm-{second}.out").read_text()
    assert (ended["JobState"], ended["ExitCode"]) == ("COMPLETED", "0:0"), out[-3000:]
    assert f"{run_dir} holds this run; resuming it" in out
    assert json.loads(status.read_text())["state"] == "finished"
    assert (run_dir / "report" / "summary.md").exists() and f"report: {run_dir}/report/summary.md" in out

    events = rows(run_dir / "events.jsonl")
    allocations = [e for e in events if e["event"] == "slurm_allocation"]
    assert [e["job_id"] for e in allocations] == [int(first), int(second)]
    assert set(allocations[0]["placement"]) == {"envserver", *(f"agent-{i}" for i in range(6))}
    exits = [e for e in events if e["event"] == "process_exit" and e["process"] == "agent-1"]
    assert exits and exits[0]["code"] == 137  # srun's exit for a step killed by SIGKILL
    assert [e["process"] for e in events if e["event"] == "process_restarted"] == ["agent-1"]
    assert any(e["event"] == "run_resumed" for e in events)
    # agent 1 started three times (first, after its step's scancel, after the resubmission), the last two from
    # a checkpoint, and the last trained on from that checkpoint's update count
    resumes = rows(run_dir / "agent-1" / "resume.jsonl")
    assert len(resumes) == 2 and all(r["checkpoint"].startswith("ckpt-") for r in resumes)
    last = [r["update"] for r in rows(run_dir / "agent-1" / "metrics.jsonl")
            if r["incarnation"] == resumes[-1]["incarnation"]]
    assert last and last == list(range(resumes[-1]["update"] + 1, resumes[-1]["update"] + 1 + len(last)))
    final = rows(run_dir / "envserver" / "events.jsonl")[-1]
    assert final["event"] == "server_stop" and final["detail"] == "run complete"
    status_row = json.loads((run_dir / "envserver" / "status.json").read_text())
    assert status_row["env_step"] == 8000 and status_row["auth_denied"] == 0
    assert json.loads((run_dir / "config.json").read_text())["curve"] == str(keys)

    # a finished run submitted again: one line, nothing run
    third = cluster.run("sbatch", "--parsable", str(job_file)).stdout.strip()
    ended = wait_ended(cluster, third, 120)
    assert ended["ExitCode"] == "2:0"
    assert (run_dir / f"slurm-{third}.out").read_text().strip().splitlines()[-1] == (
        f"khop slurm job: error: {run_dir} is finished; nothing to resume")
