"""The floor benchmark measures what it claims: the lean loop's ring exchange delivers each agent
every origin of its κ-ball exactly once (what khop's relay plan delivers on the same ring), a real
lean loop of real processes steps and reports, and (slow) `bench.floor` alternates the lean loop
with a real acting-only `khop run` and writes the cell with every rate. No speed is asserted."""
import json

import pytest

from bench.floor import RATIOS, VARIANTS, main as floor_main
from bench.lean_loop import LEVELS, ring_plan, run_lean


def ring_distance(a: int, b: int, n: int) -> int:
    return min((a - b) % n, (b - a) % n)


@pytest.mark.parametrize("n,kappa", [(2, 0), (2, 1), (2, 2), (4, 2), (5, 2), (6, 1), (6, 2), (12, 2), (12, 5)])
def test_ring_plan_delivers_each_ball_origin_once(n, kappa):
    plan = ring_plan(n, kappa)
    received = {(r, rcv, o) for (r, _s, rcv, o) in plan}
    for j in range(n):
        got = sorted(o for (_r, _s, rcv, o) in plan if rcv == j)
        assert got == sorted(o for o in range(n) if o != j and ring_distance(o, j, n) <= kappa)
    for r, s, rcv, o in plan:
        assert ring_distance(s, rcv, n) == 1  # only neighbours talk
        assert ring_distance(o, rcv, n) == r  # an origin r hops away arrives in round r
        # round r forwards what arrived in round r - 1 (or the sender's own rows in round 1)
        assert o == s if r == 1 else (r - 1, s, o) in received


def test_ring_plan_rejects_a_ring_of_one():
    with pytest.raises(ValueError, match="n >= 2"):
        ring_plan(1, 1)


@pytest.mark.parametrize("level", LEVELS)
def test_lean_loop_steps_real_processes(level):
    res = run_lean("safe-halfcheetah-6x1", 1, 2, 0.3, level)
    assert res["level"] == level and res["n_agents"] == 6 and res["locksteps"] > 0 and res["steps_per_s"] > 0
    assert res["steps_per_s"] == pytest.approx(2 * res["locksteps_per_s"])
    assert res["messages_per_lockstep"] == 2 * 6 + 2 * 6  # STEP + ACT per agent, one row each way on the ring
    assert res["cpu_us_per_step"] > 0


@pytest.mark.slow
def test_floor_cell_measures_lean_and_khop(tmp_path):
    out = tmp_path / "floor.json"
    assert floor_main(["--n", "2", "--kappa", "1", "--envs", "1", "--rounds", "1", "--seconds", "0.5",
                       "--out", str(out)]) == 0
    (cell,) = json.loads(out.read_text())["cells"]
    assert (cell["task"], cell["n_agents"], cell["kappa"], cell["envs"]) == ("safe-halfcheetah-2x3", 2, 1, 1)
    assert not cell["failed"]
    for variant in VARIANTS:
        assert cell[variant]["steps_per_s"] > 0 and cell[variant]["cpu_us_per_step"] > 0
    assert set(cell["ratios"]) == set(RATIOS) and all(r["median"] > 0 for r in cell["ratios"].values())
    assert "safe-halfcheetah-2x3" in out.with_suffix(".md").read_text()


def test_floor_runs_only_the_variants_asked_and_their_ratios(tmp_path):
    out = tmp_path / "floor.json"
    assert floor_main(["--n", "2", "--kappa", "0", "--envs", "1", "--rounds", "1", "--seconds", "0.3",
                       "--variants", "lean-msgs", "lean-learner", "--out", str(out)]) == 0
    (cell,) = json.loads(out.read_text())["cells"]
    assert cell["variants"] == ["lean-msgs", "lean-learner"] and "khop" not in cell and not cell["failed"]
    assert cell["ratios"] == {}  # no ratio of RATIOS has both of its variants here
    table = out.with_suffix(".md").read_text()
    assert "| task | N | κ | E | lean-msgs | lean-learner | load |" in table and "| khop" not in table
    assert "/" not in table.split("load |")[1]  # no ratio table


def test_floor_cli_rejects_an_unknown_agent_count(capsys):
    with pytest.raises(SystemExit) as err:
        floor_main(["--n", "7"])
    assert err.value.code == 2 and "--n 7" in capsys.readouterr().err
