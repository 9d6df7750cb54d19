"""`khop eval` on real short training runs: the scores of the learned policy, the exact J of the
tabular games against an independent reading of the same checkpoints, and one-line errors for
runs whose checkpoints are missing or damaged."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compose.cli import main
from compose.judge.evaluate import evaluate
from envserver.tasks import task_class
from experiments.coop_game_algos import exact_learned_return


def khop_run(run_dir: Path, *args: str) -> Path:
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--run-dir", str(run_dir), "--no-progress",
                          *args], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return run_dir


@pytest.fixture(scope="module")
def coop_run(tmp_path_factory) -> Path:
    """DPO on coop-game, 6 agents on the ring (in process: the same episodes as 6 processes), 3 updates each."""
    return khop_run(tmp_path_factory.mktemp("coop") / "run", "--steps", "2048", "--envs", "16", "--inprocess")


@pytest.fixture(scope="module")
def cheetah_run(tmp_path_factory) -> Path:
    """DPO on Safe HalfCheetah 2x3 in process: one 1000-step episode per copy, 10 updates."""
    return khop_run(tmp_path_factory.mktemp("cheetah") / "run", "--task", "safe-halfcheetah-2x3", "--inprocess",
                    "--steps", "2000", "--envs", "2", "--set", "rollout_len=100")


def khop_eval(run_dir: Path, *args: str) -> dict:
    assert main(["eval", str(run_dir), *args]) == 0
    return json.loads((run_dir / "eval.json").read_text())


def test_exact_j_equals_the_solver_on_an_independent_reading_of_the_checkpoints(coop_run: Path) -> None:
    ev = khop_eval(coop_run, "--episodes", "4")["sampled"]
    # experiments/coop_game_algos reads each actor's softmax over its own table of observations
    sampled, greedy = exact_learned_return(coop_run)
    assert ev["exact"]["J_sampled"] == pytest.approx(sampled, abs=1e-9)
    assert ev["exact"]["J_deterministic"] == pytest.approx(greedy, abs=1e-9)
    game = task_class("coop-game")(1, 0)
    assert ev["exact"]["optimum"] == pytest.approx(game.optimal_return())
    assert ev["exact"]["uniform"] == pytest.approx(game.evaluate(np.full((6, 100, 5), 0.2)))
    assert ev["updates"] == [3] * 6 and ev["episodes"] == 4 and len(ev["episode_rows"]) == 4


@pytest.mark.parametrize("flags, mode", [((), "sampled"), (("--deterministic",), "deterministic")])
def test_played_episodes_agree_with_the_exact_j(coop_run: Path, flags: tuple[str, ...], mode: str) -> None:
    ev = khop_eval(coop_run, "--episodes", "96", *flags)[mode]
    ret = ev["return"]
    assert ret["n"] == 96 and all(r["length"] == 50 for r in ev["episode_rows"])
    assert ret["mean"] == pytest.approx(np.mean([r["return"] for r in ev["episode_rows"]]))
    assert abs(ret["mean"] - ev["exact"][f"J_{mode}"]) < 2 * ret["ci95"]  # ≈ 4 standard errors
    assert ev["cost"] is None and ev["violation_rate"] is None  # the game has no cost


def test_eval_is_reproducible_and_the_seed_matters(coop_run: Path) -> None:
    a, b, c = (evaluate(coop_run, 8, env_seed=seed)["episode_rows"] for seed in (5, 5, 6))
    assert a == b and a != c


def test_eval_keeps_each_mode_and_the_report_shows_them(coop_run: Path) -> None:
    khop_eval(coop_run, "--episodes", "3")
    both = khop_eval(coop_run, "--episodes", "5", "--deterministic")
    assert both["sampled"]["episodes"] == 3 and both["deterministic"]["episodes"] == 5
    md = (coop_run / "report" / "summary.md").read_text()
    section = md.split("## Evaluation")[1].split("## Events")[0]
    assert "| deterministic | 5 |" in section and "| sampled | 3 |" in section and "optimum 39.95" in section


def test_cost_and_violation_rate_on_a_safe_task(cheetah_run: Path) -> None:
    ev = khop_eval(cheetah_run, "--episodes", "2")["sampled"]
    rows = ev["episode_rows"]
    assert [r["length"] for r in rows] == [1000, 1000] and sorted(r["env"] for r in rows) == [0, 1]
    limit = json.loads((cheetah_run / "config.json").read_text())["cost_limits"][0]
    assert ev["costs"][0]["limit"] == limit
    assert ev["cost"]["mean"] == pytest.approx(np.mean([r["cost"] for r in rows]))
    assert ev["violation_rate"]["mean"] == pytest.approx(np.mean([r["cost"] > limit for r in rows]))
    assert ev["exact"] is None


def _broken_copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    return copy


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


def test_missing_checkpoint_is_one_line_naming_agent_and_file(coop_run: Path, tmp_path: Path, capsys) -> None:
    run = _broken_copy(coop_run, tmp_path)
    for ckpt in (run / "agent-3" / "checkpoints").iterdir():
        ckpt.unlink()
    err = _one_line_error(capsys, ["eval", str(run)])
    assert err == f"khop eval: error: agent 3: no checkpoint in {run / 'agent-3' / 'checkpoints'}"
    err = _one_line_error(capsys, ["eval", str(coop_run), "--checkpoint", "99"])
    assert "agent 0:" in err and "ckpt-000000000099.pt does not exist" in err


def test_corrupt_checkpoint_is_one_line_naming_agent_and_file(coop_run: Path, tmp_path: Path, capsys) -> None:
    run = _broken_copy(coop_run, tmp_path)
    newest = sorted((run / "agent-2" / "checkpoints").iterdir())[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # half-copied file
    err = _one_line_error(capsys, ["eval", str(run)])
    assert err.startswith(f"khop eval: error: agent 2: checkpoint {newest} cannot be loaded: is unreadable")
    (run / "agent-1" / "learner_config.json").unlink()
    err = _one_line_error(capsys, ["eval", str(run)])
    assert err == f"khop eval: error: agent 1: {run / 'agent-1' / 'learner_config.json'} is missing"


def test_not_a_run_directory(tmp_path: Path, capsys) -> None:
    err = _one_line_error(capsys, ["eval", str(tmp_path)])
    assert err == f"khop eval: error: run: {tmp_path / 'config.json'} is missing"
    err = _one_line_error(capsys, ["eval", str(tmp_path), "--episodes", "0"])
    assert "--episodes must be >= 1" in err


def test_a_khop_actor_is_played_and_tabulated_through_the_relay(tmp_path: Path) -> None:
    """IPPO whose policy reads the relayed κ-ball: the exact J is taken through one relay exchange
    over the table of states, and the played episodes (relayed step by step) agree with it."""
    run = khop_run(tmp_path / "khop", "--algo", "ippo", "--actor-input", "khop", "--kappa", "2", "--steps", "1024",
                   "--envs", "16", "--inprocess")
    ev = evaluate(run, 96, deterministic=True)
    assert abs(ev["return"]["mean"] - ev["exact"]["J_deterministic"]) < 2 * ev["return"]["ci95"]
    async_run = khop_run(tmp_path / "async", "--algo", "ippo", "--actor-input", "khop", "--relay", "async",
                         "--steps", "256", "--envs", "16", "--inprocess")
    exact = evaluate(async_run, 2)["exact"]
    assert exact == {"unavailable": "the actors read an async relay's older rows: the policy is not a function "
                                    "of the state"}
