"""The in-process reference runs the same learner code as the distributed agents: for the same
seed both modes produce identical episodes (updates included), so any difference in a
communication experiment is the network's doing, not the code path's."""
import json
import subprocess
import sys

import pytest

from envserver.tasks.smax import INSTALL_HINT, smax_installed


def episodes(run_dir):
    rows = [json.loads(line) for line in (run_dir / "envserver" / "episodes.jsonl").read_text().splitlines()]
    return [(r["env_step"], r["env"], r["episode_return"], r["episode_cost"], r["episode_length"]) for r in rows]


def khop_run(run_dir, *args):
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--run-dir", str(run_dir), "--no-progress",
                          *args], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr


# MuJoCo too: chaotic physics turns any difference (a ~1e-9 sampled action was once seen at step
# 1 on safe-halfcheetah; it no longer reproduces, bench/NOTES.md) into a different 1000-step episode.
@pytest.mark.parametrize("task, steps, envs, kappa, algo", [
    ("coop-game", 400, 4, 1, "dpo"),  # 2 episodes per copy, 6 updates per agent in between
    ("coop-game", 400, 4, 3, "dpo"),  # κ = diameter of the default ring: the centralised-critic setting
    ("coop-game", 400, 4, 1, "mafocops"),  # sequential: the token walks over sockets / in memory
    ("coop-game", 400, 4, 2, "shadow-pg"),  # Q-values relayed over 2 hops, over sockets / in memory
    ("coop-game", 400, 4, 2, "ippo --actor-input khop"),  # the policy reads the relayed 2-hop rows
    # action masks: the STEP's mask over the wire, the Lockstep's in memory
    ("pettingzoo:envserver.tasks.pettingzoo_toy:masked_parallel_env", 400, 4, 1, "dpo --set rollout_len=25"),
    ("pettingzoo:envserver.tasks.pettingzoo_toy:masked_parallel_env", 600, 4, 1,
     "iql --set learning_starts=200 --set batch_size=64 --set rollout_len=10"),
    # SMAX's masks and jax battles (jax on the CPU is deterministic), where the smax extra is installed
    pytest.param("smax-3m", 1024, 8, 1, "ippo --set rollout_len=32",
                 marks=[pytest.mark.slow, pytest.mark.skipif(not smax_installed(), reason=INSTALL_HINT)]),
    # the first 1000-step episode of each copy, 7 updates per agent inside it
    pytest.param("safe-halfcheetah-2x3", 2000, 2, 1, "dpo", marks=pytest.mark.slow),
])
def test_inprocess_and_distributed_give_identical_episodes(tmp_path, task, steps, envs, kappa, algo):
    args = ["--task", task, "--steps", str(steps), "--envs", str(envs), "--kappa", str(kappa), "--seed", "3",
            "--algo", *algo.split()]
    # MuJoCo's distributed side steps its copies on two physics threads, the in-process side on one
    threads = ["--physics-threads", "2"] if task.startswith("safe-") else []
    khop_run(tmp_path / "distributed", *args, *threads)
    khop_run(tmp_path / "inprocess", *args, "--inprocess", "--physics-threads", "1")
    a, b = episodes(tmp_path / "distributed"), episodes(tmp_path / "inprocess")
    assert len(a) == len(b) >= envs
    assert a == b
    updates = [json.loads(line)["update"] for line in
               (tmp_path / "inprocess" / "agent-0" / "metrics.jsonl").read_text().splitlines()]
    assert updates  # the comparison spans at least one learning update
    if algo in ("mafocops", "shadow-pg"):  # the same update messages took the same hops in both modes
        for i in range(6):
            rows = {mode: [json.loads(line) for line in
                           (tmp_path / mode / f"agent-{i}" / "metrics.jsonl").read_text().splitlines()]
                    for mode in ("distributed", "inprocess")}
            keys = ("msgs_sent_update_to", "bytes_sent_update", "policy_loss", "kl") + (
                ("token_update", "token_positions", "token_from", "token_timeouts") if algo == "mafocops" else
                ("qvals_origins", "qvals_missing", "utility"))
            assert [[r[k] for k in keys] for r in rows["distributed"]] == \
                   [[r[k] for k in keys] for r in rows["inprocess"]]
