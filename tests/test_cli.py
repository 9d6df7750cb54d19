"""The khop CLI's quick paths: listings, and bad arguments rejected before any process starts."""
import subprocess
import sys

import pytest


def khop(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compose.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_tasks_and_algos_list_every_choice():
    from agentd.learner import algo_names
    from envserver.tasks import task_names

    tasks = khop("tasks")
    assert tasks.returncode == 0
    for name in task_names():
        assert name in tasks.stdout
    algos = khop("algos")
    assert algos.returncode == 0
    assert [line.split()[0] for line in algos.stdout.splitlines()] == algo_names()


def test_report_on_a_directory_that_is_not_a_run(tmp_path):
    res = khop("report", str(tmp_path))
    assert res.returncode == 2 and "not a run directory" in res.stderr


@pytest.mark.parametrize("args, message", [
    (["--task", "nope"], "unknown task 'nope'"),
    (["--algo", "nope"], "unknown algo 'nope'"),
    (["--kappa", "-1"], "--kappa must be >= 0"),
    (["--topology", "halfcheetah-2x3"], "has 2 nodes but task has 6 agents"),
    (["--topology", "/no/such/file.json"], "topology file not found"),
    (["--set", "nonsense=1"], "unknown learner override"),
    (["--algo", "dec-mappo-l", "--set", "lambda_optimizer=foo"], "lambda_optimizer must be one of adam, sgd; got 'foo'"),
    (["--algo", "dec-mappo-l", "--set", "lambda_lr=-0.1"], "lambda_lr must be >= 0, got -0.1"),
    (["--set", "preset=nope"], "unknown preset 'nope'"),
    (["--actor-input", "foo"], "argument --actor-input: invalid choice: 'foo'"),
    (["--algo", "dec-mappo-l", "--actor-mask"], "--actor-mask adds neighbour presence bits to a local actor"),
    (["--actor-input", "khop", "--actor-mask"], "a κ-hop actor (actor_input=khop) already sees"),
])
def test_bad_arguments_exit_non_zero_with_one_line(tmp_path, args, message):
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--run-dir", str(tmp_path / "r"), *args],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert not (tmp_path / "r").exists()


def _recorded_run(run_dir, **fields) -> None:
    """config.json and run_status.json as a run leaves them (enough for --resume's checks)."""
    import json

    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"task": "coop-game", "algo": "dpo", "kappa": 1, **fields}))


@pytest.mark.parametrize("setup, extra, message", [
    (None, [], "holds no run to resume (no config.json)"),
    ({"inprocess": False}, ["--task", "coop-game-joint"], "--resume takes the run's options from"),
    ({"inprocess": False}, ["--set", "rollout_len=8"], "; drop --set"),
    ({"inprocess": True}, [], "ran --inprocess; --resume restarts agent processes"),
    ({"inprocess": False, "finished": True}, [], "is finished; nothing to resume"),
])
def test_resume_refuses_what_it_cannot_continue(tmp_path, setup, extra, message):
    run_dir = tmp_path / "r"
    if setup is not None:
        done = setup.pop("finished", False)
        _recorded_run(run_dir, **setup)
        if done:
            (run_dir / "run_status.json").write_text('{"state": "finished", "exit_code": 0}')
    res = khop("run", "--resume", str(run_dir), *extra)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and message in lines[0], res.stderr
    assert not (run_dir / "events.jsonl").exists()  # nothing started, nothing recorded


def test_an_existing_run_directory_names_resume(tmp_path):
    _recorded_run(tmp_path / "r")
    res = khop("run", "--run-dir", str(tmp_path / "r"))
    assert res.returncode == 2 and "already holds a run" in res.stderr and "--resume" in res.stderr
