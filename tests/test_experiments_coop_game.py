"""The coop-game experiment scripts on either reading of the game (--task): real in-process runs at
a tiny budget, results named by task and scored against that task's own optimum, and a second
invocation that reads the finished cells back instead of rerunning them."""
import json
import shutil

import pytest

from envserver.tasks.coop_game import CoopGameJoint
from experiments import coop_game_algos, coop_game_dtarget

TINY = ["--task", "coop-game-joint", "--seeds", "1", "--steps", "1600", "--envs", "16", "--workers", "1"]


SCRIPT = coop_game_algos  # whose RESULTS the conftest sandbox redirects


def test_algos_script_on_the_joint_game_is_tagged_by_task_and_resumes(sandbox, capsys):
    args = [*TINY, "--algos", "ippo", "--tag", "smoke"]
    assert coop_game_algos.main(args) == 0
    first = capsys.readouterr().out
    assert "0 cached, 1 to run" in first
    results = sandbox / "results"
    assert sorted(p.name for p in results.iterdir()) == [f"coop_game_joint_smoke.{ext}"
                                                         for ext in ("csv", "json", "md", "png")]
    data = json.loads((results / "coop_game_joint_smoke.json").read_text())
    g = CoopGameJoint(1, 0)
    assert data["ref"]["optimum"] == pytest.approx(g.optimal_return())  # the joint game's, not coop-game's
    exact = data["labels"]["ippo"]["exact"][0]
    assert data["ref"]["uniform"] - 1.0 < exact < data["ref"]["optimum"]  # J of the checkpointed policies
    assert "--task coop-game-joint" in (results / "coop_game_joint_smoke.md").read_text()
    run_dir = sandbox / "runs" / "coop-game-joint" / "coop-game-joint-ippo-n1600-e16-s0"
    episodes = (run_dir / "envserver" / "episodes.jsonl").read_text()

    assert coop_game_algos.main(args) == 0  # the finished cell is read back, not rerun
    assert "1 cached, 0 to run" in capsys.readouterr().out
    assert (run_dir / "envserver" / "episodes.jsonl").read_text() == episodes

    # a later session's fresh work tree has no runs/, only the committed cell record: still not rerun
    record = sandbox / "records" / "coop-game-joint" / "coop-game-joint-ippo-n1600-e16-s0.json"
    assert json.loads(record.read_text())["exact"] == pytest.approx(exact)
    shutil.rmtree(sandbox / "runs")
    table = (results / "coop_game_joint_smoke.csv").read_text()
    assert coop_game_algos.main(args) == 0
    assert "1 cached, 0 to run" in capsys.readouterr().out and not run_dir.exists()
    assert (results / "coop_game_joint_smoke.csv").read_text() == table


def test_dtarget_script_on_the_joint_game_writes_its_own_files(sandbox):
    assert coop_game_dtarget.main([*TINY, "--targets", "0.1"]) == 0
    names = {p.name for p in (sandbox / "results").iterdir()}
    assert {"coop_game_joint_fig1b_dtarget.md", "coop_game_joint_fig1b_dtarget.csv"} <= names
    assert not any(n.startswith("coop_game_fig1b") for n in names)  # coop-game's files are untouched


def test_scripts_refuse_a_task_that_is_not_a_coop_game():
    with pytest.raises(SystemExit):
        coop_game_algos.main(["--task", "networked-mdp"])
    with pytest.raises(ValueError, match="not a cooperative-game task"):
        coop_game_algos.game_reference("matrix-game-1")
