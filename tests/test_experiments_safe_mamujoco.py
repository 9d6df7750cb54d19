"""experiments/safe_mamujoco.py: which cells run, resume or are read back; the last-10 % statistics
and the published column from fabricated run directories; and (slow) the script end to end through
real `khop run` processes, a second invocation reading the finished cell back."""
import json

import numpy as np
import pytest

from experiments import safe_mamujoco
from experiments.common import Cell, cell_plan


def _write_rows(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _finished_files(run_dir, state: str) -> None:
    (run_dir / "report").mkdir(parents=True, exist_ok=True)
    (run_dir / "report" / "summary.md").write_text("# report\n")
    _write_rows(run_dir / "envserver" / "episodes.jsonl", [])
    (run_dir / "run_status.json").write_text(json.dumps({"state": state}))


SCRIPT = safe_mamujoco  # whose RESULTS the conftest sandbox redirects


def test_a_cell_is_read_back_resumed_or_started_afresh(sandbox):
    dist = Cell("safe-velocity-swimmer-2x1", "dec-mappo-l", 0, 4000, 4, distributed=True)
    inproc = Cell("safe-velocity-swimmer-2x1", "dec-mappo-l", 0, 4000, 4)
    assert dist.name == inproc.name  # so the same group never holds both: the script only makes distributed ones
    d = dist.run_dir("g")
    assert cell_plan(dist, "g") == "fresh"
    d.mkdir(parents=True)
    assert cell_plan(dist, "g") == "fresh"  # killed before khop run wrote its config: nothing to resume
    (d / "config.json").write_text("{}")
    assert cell_plan(dist, "g") == "resume"  # killed mid-run (no run_status.json)
    assert cell_plan(inproc, "g") == "fresh"  # an in-process run keeps no clock to continue from
    _finished_files(d, "interrupted")  # an interrupted run writes a partial report too
    assert cell_plan(dist, "g") == "resume"
    _finished_files(d, "finished")
    assert cell_plan(dist, "g") == "cached" and cell_plan(inproc, "g") == "cached"
    assert "--resume" in dist.resume_command("g") and "--inprocess" not in dist.command("g")
    assert dist.command("g")[2:4] == ["compose.cli", "run"]


def test_cells_take_khops_default_kappa_and_real_processes():
    cells = safe_mamujoco.make_cells("safe-halfcheetah-6x1", ["dec-mappo-l", "macpo"], 2, 1000, 4)
    # seed-major (a sweep cut short has every algorithm at the same seeds); macpo at the diameter of 2-1-0-3-4-5
    assert [(c.algo, c.seed, c.kappa) for c in cells] == [("dec-mappo-l", 0, 1), ("macpo", 0, 5),
                                                          ("dec-mappo-l", 1, 1), ("macpo", 1, 5)]
    assert all(c.distributed for c in cells)
    with pytest.raises(ValueError, match="has no cost"):
        safe_mamujoco.task_facts("mamujoco-halfcheetah-3x2")


def test_last_tenth_statistics_and_the_published_column(sandbox):
    run_dir = sandbox / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"steps": 20_000, "kappa": 1, "code_version": "khop test"}))
    costs = [40.0] * 17 + [3.0, 9.0, 4.0]  # episodes ending at 1000 … 20000: the last two are past 18000
    _write_rows(run_dir / "envserver" / "episodes.jsonl",
                [{"env_step": 1000 * (k + 1), "episode_return": float(k), "episode_cost": c} for k, c in enumerate(costs)])
    for agent, lam in ((0, 0.5), (1, 0.7)):
        _write_rows(run_dir / f"agent-{agent}" / "metrics.jsonl",
                    [{"env_step": 512, "lambda0": 9.0}, {"env_step": 1024, "lambda0": lam}])
    st = safe_mamujoco.run_stats(run_dir, limit=5.0)
    assert st["episodes"] == 2 and st["return"] == 18.5 and st["cost"] == 6.5
    assert st["violation"] == 0.5  # 9 > 5, 4 ≤ 5
    assert st["coef"] == {"lambda0": pytest.approx(0.6)}  # the newest row of each agent, averaged
    summary = {"algos": {"macpo": {"stats": [st, st], "seeds": [0, 1]}, "dec-mappo-l": {"stats": [st], "seeds": [0]}}}
    rows = {r[0]: r for r in safe_mamujoco.table_rows(summary, "safe-halfcheetah-2x3")}
    assert rows["macpo"][-1] == "~2650 / ~10" and rows["dec-mappo-l"][-1] == "—"  # safe-mamujoco.md §6
    assert rows["macpo"][3] == "18.5 ± 0.0" and rows["dec-mappo-l"][6] == "λ 0.600"
    assert safe_mamujoco.table_rows(summary, "safe-velocity-swimmer-2x1")[0][-1] == "—"
    assert "No published numbers" in safe_mamujoco.scale_note("safe-velocity-swimmer-2x1", 10**6, 16, 25)
    assert np.isnan(safe_mamujoco.curve_mean(np.full((2, 3), np.nan))).all()


@pytest.mark.slow
def test_the_script_runs_real_processes_reports_and_reads_finished_cells_back(sandbox, capsys):
    args = ["--task", "safe-velocity-swimmer-2x1", "--algos", "dec-mappo-l", "--seeds", "1", "--steps", "4000",
            "--envs", "2", "--tag", "t"]
    assert safe_mamujoco.main(args) == 0
    assert "0 cached, 1 to run" in capsys.readouterr().out
    run_dir = sandbox / "runs" / "safe_mamujoco" / "safe-velocity-swimmer-2x1-dec-mappo-l-n4000-e2-s0"
    cfg = json.loads((run_dir / "config.json").read_text())
    assert not cfg["inprocess"] and (run_dir / "agent-1" / "log.txt").exists()  # agentd processes
    stem = sandbox / "results" / "safe_mamujoco_safe_velocity_swimmer_2x1_t"
    for suffix in (".png", ".md", ".csv", ".json"):
        assert stem.with_suffix(suffix).exists(), suffix
    md = stem.with_suffix(".md").read_text()
    assert "All 1 runs finished" in md and "--seeds 1 --steps 4000" in md and "λ " in md
    data = json.loads(stem.with_suffix(".json").read_text())
    (stats,) = data["algos"]["dec-mappo-l"]["stats"]
    assert stats["episodes"] == 2 and stats["cost"] > 25  # a random swimmer is over the limit
    runs_csv = (stem.parent / (stem.name + "_runs.csv")).read_text().splitlines()
    assert len(runs_csv) == 2 and runs_csv[1].startswith("dec-mappo-l,0,1,2,")

    assert safe_mamujoco.main([*args, "--report-only"]) == 0
    assert safe_mamujoco.main(args) == 0
    assert "1 cached, 0 to run" in capsys.readouterr().out
