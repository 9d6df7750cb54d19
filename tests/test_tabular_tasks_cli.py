"""Every tabular task added for the theory trains end to end through `khop run --inprocess`
(one subprocess per task, started together so the suite stays short on two cores)."""
import subprocess
import sys

import pytest

from envserver.tasks import task_names

# env steps (summed over 4 copies): enough for finished episodes (networked-mdp's last 50 steps)
TASKS = {"matrix-game-1": 64, "matrix-game-2": 64, "matrix-game-3": 64, "matrix-game-4": 64, "networked-mdp": 256}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tabular-cli")
    procs = {}
    for task, steps in TASKS.items():
        cmd = [sys.executable, "-m", "compose.cli", "run", "--inprocess", "--no-progress", "--task", task,
               "--algo", "ippo", "--steps", str(steps), "--envs", "4", "--set", "rollout_len=8",
               "--run-dir", str(root / task)]
        procs[task] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield root, procs
    for p in procs.values():
        if p.poll() is None:
            p.kill()


@pytest.mark.parametrize("task", list(TASKS))
def test_task_runs_inprocess(runs, task):
    root, procs = runs
    assert task in task_names()
    out, _ = procs[task].communicate(timeout=300)
    assert procs[task].returncode == 0, out
    assert (root / task / "agent-0" / "metrics.jsonl").read_text().strip()  # at least one update happened
    assert (root / task / "envserver" / "episodes.jsonl").read_text().strip()
