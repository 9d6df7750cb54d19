"""`khop sweep`: spec parsing, the Pareto frontier, and — with tiny in-process runs — a sweep that is
interrupted and restarted skips the cells that finished and redoes the one that did not."""
import json
import signal
import subprocess
import sys
import time

import pytest

from compose.sweep import SweepError, SweepSpec, aggregate, cell_state

CLI = [sys.executable, "-m", "compose.cli"]


def test_spec_from_cli_lists_and_files(tmp_path):
    spec = SweepSpec.from_mapping({"kappa": "0,1,2", "budget": "none,2000,500", "algo": "dpo", "seeds": "0,1,2"})
    ax = spec.axes
    assert ax["kappa"] == [0, 1, 2] and ax["comm_budget"] == [None, 2000.0, 500.0] and ax["seed"] == [0, 1, 2]
    cells = spec.cells()
    assert len(cells) == 27 and len({c.name for c in cells}) == 27
    assert "coop-game_dpo_sync_k2_b500_s1" in {c.name for c in cells}
    (tmp_path / "s.toml").write_text('kappa = [0, 1]\nbudget = ["none", 800]\nseeds = [3]\ntask = "coop-game"\n'
                                     'steps = [100, 200]\nset = ["rollout_len=16"]\nout = "x"\n')
    t = SweepSpec.from_file(tmp_path / "s.toml")
    assert t.axes["kappa"] == [0, 1] and t.axes["comm_budget"] == [None, 800.0] and t.axes["seed"] == [3]
    assert t.fixed["overrides"] == ["rollout_len=16"]
    assert {c.name for c in t.cells()} >= {"coop-game_dpo_sync_k0_bnone_s3_n100", "coop-game_dpo_sync_k1_b800_s3_n200"}
    (tmp_path / "s.json").write_text(json.dumps({"kappa": [1], "relay": ["sync", "async"], "jobs": 2}))
    j = SweepSpec.from_file(tmp_path / "s.json", base=SweepSpec.from_mapping({"seeds": "5"}))
    assert j.axes["relay"] == ["sync", "async"] and j.jobs == 2 and j.axes["seed"] == [5]
    for bad in ({"kapa": [1]}, {"budget": ["-5"]}, {"kappa": ["x"]}, {"kappa": [1.5]}, {"seeds": []},
                {"heartbeat-timeout": "soon"}):
        with pytest.raises(SweepError):
            SweepSpec.from_mapping(bad)


def test_every_run_option_is_a_sweep_key_under_its_own_name(tmp_path):
    """The sweep takes `khop run`'s options by their flag names, and each cell's `khop run` command
    line carries them (parsed back by `khop run`'s own parser into the same RunConfig)."""
    from compose.cli import build_parser
    from compose.run.config import RunConfig
    from compose.sweep.runner import run_command
    from compose.sweep.spec import NOT_FOR_SWEEP
    from envserver.options import flags, from_namespace

    given = {"heartbeat-timeout": 2.5, "link_timeout": "7", "comm-budget": "900", "deadline": 12,
             "max-restarts": 2, "restart": True, "actor-input": "local", "link-loss": 0.05, "set": ["gamma=0.9"]}
    spec = SweepSpec.from_mapping({**given, "out": str(tmp_path)})
    cfg = spec.cells()[0].run_config(spec, tmp_path / "cell")
    assert (cfg.heartbeat_timeout_s, cfg.link_timeout_s, cfg.comm_budget, cfg.deadline_s, cfg.max_restarts) == \
        (2.5, 7.0, 900.0, 12.0, 2)
    assert cfg.restart and cfg.actor_input == "local" and cfg.link_loss == 0.05 and cfg.overrides == ["gamma=0.9"]
    argv = run_command(cfg)[4:]  # after python -m compose.cli run
    assert from_namespace(RunConfig, build_parser().parse_args(["run", *argv])) == cfg
    # and no `khop run` flag is missing from the sweep's command line
    sweep_flags = {o for a in build_parser()._subparsers._group_actions[0].choices["sweep"]._actions
                   for o in a.option_strings}
    assert {f for name, f in flags(RunConfig).items() if name not in NOT_FOR_SWEEP} <= sweep_flags


def test_pareto_frontier_marks_the_non_dominated_configurations():
    base = {"task": "t", "algo": "a", "relay": "sync", "steps": 1, "envs": 1, "topology": "", "status": "finished"}
    rows = [{**base, "kappa": k, "budget": b, "final_return": r, "final_cost": 0.0, "bytes_per_agent_step": by,
             "presence_mean": 1.0}
            for k, b, r, by in ((0, "none", 10.0, 0.0), (1, "none", 15.0, 800.0), (1, "400", 14.0, 300.0),
                                (2, "400", 13.0, 350.0), (2, "none", 16.0, 1600.0))]
    frontier = {(g["kappa"], g["budget"]) for g in aggregate(rows) if g["pareto"]}
    assert frontier == {(0, "none"), (1, "400"), (1, "none"), (2, "none")}  # (2, 400) is dominated by (1, 400)


def sweep_cmd(out, *extra):
    return [*CLI, "sweep", "--inprocess", "--out", str(out), "--task", "coop-game", "--kappa", "0,1",
            "--budget", "none", "--seeds", "0", "--steps", "100", "--envs", "2", *extra]


def test_interrupted_sweep_resumes_and_skips_finished_cells(tmp_path):
    out = tmp_path / "sweep"
    first = out / "runs" / "coop-game_dpo_sync_k0_bnone_s0"
    second = out / "runs" / "coop-game_dpo_sync_k1_bnone_s0"
    proc = subprocess.Popen(sweep_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    end = time.monotonic() + 300
    while time.monotonic() < end and proc.poll() is None:
        try:
            if json.loads((first / "run_status.json").read_text())["state"] == "finished":
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # the second cell has just started (or, on a fast machine, finished)
    log = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode in (130, 0), log
    status_first = (first / "run_status.json").read_bytes()
    stamp_first = (first / "run_status.json").stat().st_mtime_ns
    episodes_first = (first / "envserver" / "episodes.jsonl").read_bytes()
    if proc.returncode == 130:
        assert "interrupted" in log
        try:
            state = json.loads((second / "run_status.json").read_text())["state"]
        except OSError:
            state = None
        assert state != "finished"  # the interrupted cell is not finished
    (out / "report" / "sweep.md").unlink()  # the restart writes the combined report again

    res = subprocess.run(sweep_cmd(out), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 cells, 1 finished (skipped)" in res.stdout or proc.returncode == 0
    assert (first / "run_status.json").read_bytes() == status_first  # not rerun
    assert (first / "run_status.json").stat().st_mtime_ns == stamp_first
    assert (first / "envserver" / "episodes.jsonl").read_bytes() == episodes_first
    assert json.loads((second / "run_status.json").read_text())["state"] == "finished"
    csv_rows = (out / "report" / "sweep.csv").read_text().splitlines()
    assert len(csv_rows) == 3 and all(",finished," in r for r in csv_rows[1:])
    md = (out / "report" / "sweep.md").read_text()
    assert "| coop-game | dpo | sync | 1 | none |" in md
    for png in ("pareto.png", "curves.png"):
        assert (out / "report" / png).read_bytes()[:4] == b"\x89PNG"

    # a third run has nothing to do; a different setting on the same directory is refused
    again = subprocess.run(sweep_cmd(out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "2 finished (skipped), 0 to run" in again.stdout
    other = subprocess.run(sweep_cmd(out, "--set", "rollout_len=8"), capture_output=True, text=True, timeout=300)
    assert other.returncode == 2 and "holds a run with overrides" in other.stderr


def test_half_written_cell_is_unfinished(tmp_path):
    from compose.run.config import RunConfig

    cfg = RunConfig(run_dir=tmp_path / "c", kappa=1)  # a sweep cell always names its κ
    assert cell_state(tmp_path / "c", cfg) == "absent"
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text(json.dumps({"task": "coop-game", "kappa": 1}))
    assert cell_state(tmp_path / "c", cfg) == "unfinished"
    (tmp_path / "c" / "run_status.json").write_text(json.dumps({"state": "finished"}))
    assert cell_state(tmp_path / "c", cfg) == "unfinished"  # no report yet
    (tmp_path / "c" / "report").mkdir()
    (tmp_path / "c" / "report" / "summary.md").write_text("x")
    assert cell_state(tmp_path / "c", cfg) == "finished"
    with pytest.raises(SweepError, match="kappa"):
        cell_state(tmp_path / "c", RunConfig(kappa=2))


def test_bad_sweep_arguments_exit_2_with_one_line(tmp_path):
    res = subprocess.run([*CLI, "sweep", "--out", str(tmp_path), "--kappa", "0,-1", "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "kappa" in res.stderr
    res = subprocess.run([*CLI, "sweep", "--out", str(tmp_path), "--budget", "none,abc"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "budget" in res.stderr
