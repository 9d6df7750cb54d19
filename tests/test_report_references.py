"""The report says what a reader compares a run with: a tabular game's exact optimum and uniform
score, the cost limit, the published Safe MAMuJoCo reading for the run's algorithm (labelled with
its step count), and the video's still when one was rendered."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compose.report import summarize, write_report
from compose.report.references import reference_lines
from envserver.tasks import task_class, task_spec


def fake_run(root: Path, task: str, algo: str) -> Path:
    spec = task_spec(task)
    cfg = {"task": task, "algo": algo, "kappa": 1, "steps": 4000, "envs": 2, "seed": 0, "n_agents": spec.n_agents,
           "cost_names": list(spec.cost_names), "cost_limits": list(spec.cost_limits),
           "episode_length": spec.episode_length}
    run = root / f"{task}-{algo}"
    (run / "envserver").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(cfg))
    rows = [{"env_step": 1000 * (i + 1), "env": 0, "episode_return": float(i), "episode_cost": 1.0,
             "episode_costs": [1.0] * spec.n_costs, "episode_length": spec.episode_length} for i in range(4)]
    (run / "envserver" / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_coop_game_report_shows_the_exact_optimum_and_uniform_score(tmp_path: Path) -> None:
    run = fake_run(tmp_path, "coop-game-joint", "dpo")
    game = task_class("coop-game-joint")(1, 0)
    optimum, uniform = game.optimal_return(), game.evaluate(np.full((game.N, game.S, game.A), 1 / game.A))
    assert summarize(run)["reference"]["exact"] == pytest.approx({"optimum": optimum, "uniform": uniform})
    md = (write_report(run) / "summary.md").read_text()
    assert f"Exact optimum **{optimum:,.2f}** and uniform random policy {uniform:,.2f}" in md
    assert [v for v, _, _ in reference_lines({"task": "coop-game-joint"})["return"]] == pytest.approx([optimum, uniform])


def test_safe_task_report_shows_limit_and_published_reading(tmp_path: Path) -> None:
    run = fake_run(tmp_path, "safe-halfcheetah-2x3", "mappo-l")
    md = (write_report(run) / "summary.md").read_text()
    assert "- Cost limit per episode: obstacle ≤ 5.00" in md
    assert "read at 1e7 env steps" in md and "this run: 4,000 env steps" in md
    assert "| **MAPPO-L** (this run's algorithm) | ≈ 5 | ≈ 2600 |" in md and "| HAPPO | ≈ 560 | ≈ 3700 |" in md
    lines = reference_lines({"task": "safe-halfcheetah-2x3", "algo": "mappo-l"})
    assert [(v, "1e7" in label) for v, label, _ in lines["return"]] == [(2600, True)]
    assert [v for v, _, _ in lines["cost"]] == [5]
    # the local-cost variant was never published; dpo has no published column
    assert summarize(fake_run(tmp_path, "safe-halfcheetah-2x3-local", "mappo-l"))["reference"]["published"] == {}
    assert reference_lines({"task": "safe-halfcheetah-2x3", "algo": "dpo"}) == {"return": [], "cost": []}


def test_report_without_references_or_video_says_so(tmp_path: Path) -> None:
    md = (write_report(fake_run(tmp_path, "mpe-line-control", "dpo")) / "summary.md").read_text()
    assert "_No cost limit, exact optimum or published reading for this task._" in md
    assert "_No video; `khop render RUN_DIR` films the learned policy._" in md
    assert "_Not evaluated; `khop eval RUN_DIR [--deterministic]` scores the learned policy._" in md
