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
