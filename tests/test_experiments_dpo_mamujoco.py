"""experiments/dpo_mamujoco.py: the cells it makes (κ = 2, the policy on the relayed ball, in-process
unless told), the table from fabricated records, and (slow) the script end to end: the identity
check of in-process against real agent processes gates the sweep and is recorded, the results are
written, and a second invocation reads the finished cell back."""
import json

import numpy as np
import pytest

from experiments import dpo_mamujoco

SCRIPT = dpo_mamujoco  # whose RESULTS the conftest sandbox redirects


def test_cells_are_the_papers_obsk_two_for_every_algorithm_seed_major_per_task():
    cells = dpo_mamujoco.make_cells(["mamujoco-hopper-3x1", "mamujoco-halfcheetah-3x2"], ["dpo", "ippo"], 2, 1000,
                                    4, distributed=False)
    assert [(c.task[9:], c.algo, c.seed) for c in cells] == [
        ("hopper-3x1", "dpo", 0), ("hopper-3x1", "ippo", 0), ("hopper-3x1", "dpo", 1), ("hopper-3x1", "ippo", 1),
        ("halfcheetah-3x2", "dpo", 0), ("halfcheetah-3x2", "ippo", 0), ("halfcheetah-3x2", "dpo", 1),
        ("halfcheetah-3x2", "ippo", 1)]
    assert all(c.kappa == 2 and c.overrides == ["actor_input=khop"] and not c.distributed for c in cells)
    cmd = cells[0].command("g")
    assert cmd[cmd.index("--set") + 1] == "actor_input=khop" and "--inprocess" not in cmd  # run_cell is in-process
    assert all(c.distributed for c in dpo_mamujoco.make_cells(["mamujoco-hopper-3x1"], ["dpo"], 1, 10, 1, True))


def test_the_table_shows_where_each_algorithm_started_and_ended():
    st = [{"return": 900.0, "episodes": 12}, {"return": 1100.0, "episodes": 10}]
    ret = np.array([[10.0, 30.0] + [500.0] * 18, [30.0, 50.0] + [600.0] * 18])
    (row,) = dpo_mamujoco.table_rows({"algos": {"dpo": {"stats": st, "seeds": [0, 1], "ret": ret}}})
    assert row[:2] == ["dpo", 2]
    assert row[2].startswith("30.0 ± ")  # the first two of 20 bins, mean over seeds
    assert row[3].startswith("1000.0 ± ") and row[4] == "900 / 1100" and row[5] == "12 / 10"


def test_the_identity_check_fails_on_any_difference_and_on_nothing_to_compare():
    ep = [(1000, 0, 5.0, 1000), (1000, 1, 4.0, 1000)]
    up = [[(1, 256, 0.1, 0.5, 0.001, 1.4)], [(1, 256, 0.2, 0.4, 0.002, 1.4)]]
    assert dpo_mamujoco.same_trace((ep, up), (list(ep), [list(u) for u in up]), envs=2)
    changed = [list(up[0]), [(1, 256, 0.2, 0.4, 0.0021, 1.4)]]  # agent 1's KL in the last digits
    assert not dpo_mamujoco.same_trace((ep, up), (ep, changed), envs=2)
    assert not dpo_mamujoco.same_trace((ep[:1], up), (ep[:1], up), envs=2)  # a copy without an episode
    assert not dpo_mamujoco.same_trace(([], up), ([], up), envs=2)  # HalfCheetah before its first 1000 steps
    assert not dpo_mamujoco.same_trace((ep, [[], []]), (ep, [[], []]), envs=2)  # no update compared
    assert dpo_mamujoco.check_steps("mamujoco-halfcheetah-3x2", 16) == 1001 * 16  # one whole episode per copy
    assert dpo_mamujoco.check_steps("mamujoco-hopper-3x1", 2) == dpo_mamujoco.CHECK_STEPS


@pytest.mark.slow
def test_the_script_checks_identity_runs_in_process_and_reads_finished_cells_back(sandbox, capsys, monkeypatch):
    monkeypatch.setattr(dpo_mamujoco, "CHECK_STEPS", 1024)
    args = ["--tasks", "mamujoco-hopper-3x1", "--algos", "dpo", "--seeds", "1", "--steps", "1024", "--envs", "2",
            "--jobs", "1"]
    assert dpo_mamujoco.main(args) == 0
    out = capsys.readouterr().out
    assert "0 cached, 1 to run" in out and "dpo: identical episodes" in out
    (check,) = (sandbox / "records" / "dpo_mamujoco").glob("identity-*.json")
    rec = json.loads(check.read_text())
    assert rec["identical"] and rec["episodes"][0] == rec["episodes"][1] > 2 and rec["updates_agent0"] >= 1
    dist = sandbox / "runs" / "dpo_mamujoco" / "identity" / "distributed"
    (run_dir,) = dist.iterdir()
    assert not json.loads((run_dir / "config.json").read_text())["inprocess"]
    assert (run_dir / "agent-2" / "log.txt").exists()  # agentd processes made the reference
    stem = sandbox / "results" / "dpo_mamujoco_mamujoco_hopper_3x1"
    for suffix in (".png", ".md", ".csv", ".json"):
        assert stem.with_suffix(suffix).exists(), suffix
    data = json.loads(stem.with_suffix(".json").read_text())
    assert data["kappa"] == 2 and data["algos"]["dpo"]["stats"][0]["episodes"] > 0
    assert dpo_mamujoco.main([*args, "--report-only"]) == 0
    assert dpo_mamujoco.main(args) == 0
    assert "1 cached, 0 to run" in capsys.readouterr().out
