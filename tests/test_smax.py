"""SMAX battles (JaxMARL) as khop tasks. Without the smax extra the tasks are still listed and
``khop run`` says in one line what to install (tested always, the import blocked in a subprocess);
with it (``pip install -e ".[smax]"``) the battles step, mask, win and lose as SMAX says, and a
short real ``khop run --task smax-3m`` ends with a report that shows the win rate."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from envserver.tasks import task_class, task_names
from envserver.tasks.smax import INSTALL_HINT, STOP, smax_installed

SMAX_TASKS = ("smax-3m", "smax-2s3z", "smax-5m_vs_6m", "smax-smacv2-5-units")
# SMAX's sizes: 13 features per other unit + 10 own; 5 moves/stop + one attack per enemy
SIZES = {"smax-3m": (3, 75, 8), "smax-2s3z": (5, 127, 10), "smax-5m_vs_6m": (5, 140, 11),
         "smax-smacv2-5-units": (5, 127, 10)}
BLOCK = "import sys; sys.modules['jaxmarl'] = None; sys.modules['jax'] = None; "


def _py(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


def test_smax_tasks_are_listed_with_their_sizes_without_importing_jax():
    res = _py(BLOCK + "from envserver.tasks import task_spec\n"
              f"print([(s.n_agents, s.agents[0].obs_dim, s.agents[0].n_actions, s.agents[0].action_mask) "
              f"for s in map(task_spec, {list(SMAX_TASKS)!r})])")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str([(*SIZES[t], True) for t in SMAX_TASKS])
    assert set(SMAX_TASKS) <= set(task_names())
    listing = subprocess.run([sys.executable, "-m", "compose.cli", "tasks"], capture_output=True, text=True,
                             timeout=120).stdout
    assert "smax-3m" in listing and "obs 75*3 act 8*3 masked" in listing


@pytest.mark.parametrize("argv", [["compose.cli", "run", "--task", "smax-3m", "--steps", "800"],
                                  ["envserver.main", "--task", "smax-2s3z"]])
def test_without_the_extra_one_line_names_the_install(tmp_path, argv):
    code = BLOCK + f"import runpy; sys.argv = {argv + ['--run-dir', str(tmp_path / 'run')]!r}; " \
                   f"runpy.run_module({argv[0]!r}, run_name='__main__')"
    res = _py(code)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install -e ".[smax]"' in lines[0] and INSTALL_HINT in lines[0], res.stderr
    assert not (tmp_path / "run" / "config.json").exists()  # refused before any process started


def test_the_report_counts_the_share_of_episodes_won(tmp_path):
    from compose.report import summarize, write_report

    (tmp_path / "envserver").mkdir()
    won = [False] * 6 + [True, False, True, True]  # quarters of 2 episodes: first 0 won, last 2 of 2
    rows = [{"env_step": 8 * (k + 1), "env": 0, "episode_return": 1.0 + w, "episode_cost": 0.0, "episode_costs": [],
             "episode_length": 20, "time": 1.0 + k, "won": w} for k, w in enumerate(won)]
    (tmp_path / "envserver" / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "config.json").write_text(json.dumps({"task": "smax-3m", "algo": "ippo", "envs": 8}))
    s = summarize(tmp_path)
    assert (s["first_quarter_win_rate"], s["last_quarter_win_rate"], s["win_rate"]) == (0.0, 1.0, 0.3)
    md = (write_report(tmp_path) / "summary.md").read_text()
    assert "| | return | cost | win rate |" in md and "| all episodes | 1.30 | 0.00 | 30.0% |" in md
    (tmp_path / "envserver" / "episodes.jsonl").write_text(  # a task without outcomes: no column
        "".join(json.dumps({k: v for k, v in r.items() if k != "won"}) + "\n" for r in rows))
    assert summarize(tmp_path)["win_rate"] is None
    assert "win rate" not in (write_report(tmp_path) / "summary.md").read_text()


# --- with the extra ---------------------------------------------------------------------------------
jaxmarl_needed = pytest.mark.skipif(not smax_installed(), reason=f"no smax extra here: {INSTALL_HINT}")


@jaxmarl_needed
@pytest.mark.parametrize("name", SMAX_TASKS)
def test_the_spec_matches_jaxmarls_env(name):
    from envserver.tasks.smax_batch import SmaxBatch

    batch = SmaxBatch(task_class(name).map_name, 1, 0)
    n, obs, acts = SIZES[name]
    assert (batch.n_allies, batch.obs_dim, batch.n_actions) == (n, obs, acts)


def _focus_fire(masks: list[np.ndarray]) -> list[np.ndarray]:
    """Attack the lowest-numbered enemy in range, else move right (action 1: +x, toward the enemy)."""
    return [np.where(m[:, 5:].any(1), 5 + m[:, 5:].argmax(1), 1).astype(np.int64) for m in masks]


@jaxmarl_needed
def test_battles_step_mask_win_and_lose_as_smax_says():
    from envserver.tasks import make_task

    task = make_task("smax-3m", n_envs=8, seed=0)
    assert task.action_masks() is None  # before the first reset
    obs = task.reset()
    assert [o.shape for o in obs] == [(8, 75)] * 3 and obs[0].dtype == np.float32
    masks = task.action_masks()
    assert all(m.shape == (8, 8) and m.dtype == bool and m[:, STOP].all() for m in masks)
    assert not any(m[:, 5:].any() for m in masks)  # the armies start out of range of each other
    assert (task.fallback_action(1) == STOP).all()
    ret, length, ends = np.zeros(8), np.zeros(8, int), []
    for _ in range(300):
        res = task.step(_focus_fire(masks))
        masks = task.action_masks()
        assert all(m[:, STOP].all() for m in masks)
        ret += res.reward
        length += 1
        done = res.terminated | res.truncated
        assert not (res.terminated & res.truncated).any()
        for e in np.flatnonzero(done):
            ends.append((ret[e], length[e], bool(res.terminated[e]), bool(res.outcome["won"][e])))
        ret[done], length[done] = 0.0, 0
    assert task.batch._step._cache_size() == 1  # one compiled step for reset and later states alike
    won = [r for r, _, _, w in ends if w]
    lost = [r for r, _, _, w in ends if not w]
    assert won and lost, ends  # focus fire wins some 3m battles against the heuristic enemies, not all
    # a won battle: every enemy's health (1 in all) + the won_battle_bonus 1; never reached otherwise
    assert np.allclose(won, 2.0, atol=1e-4) and max(lost) < 1.0 + 1e-4
    assert all(term for _, n, term, w in ends if w) and all(n <= 100 for _, n, _, _ in ends)
    assert all(term or n == 100 for _, n, term, _ in ends)  # truncated exactly at SMAX's 100 steps


@jaxmarl_needed
def test_the_smacv2_style_map_draws_unit_types_per_episode():
    from envserver.tasks import make_task

    task = make_task("smax-smacv2-5-units", n_envs=16, seed=1)
    own_types = task.reset()[0][:, -6:]  # ally 0's unit-type bits in each copy
    assert (own_types.sum(1) == 1).all() and len({int(r.argmax()) for r in own_types}) > 1


@jaxmarl_needed
@pytest.mark.slow
def test_khop_run_on_smax_3m_ends_with_a_report_showing_the_win_rate(tmp_path):
    run = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--task", "smax-3m", "--algo", "ippo",
                          "--envs", "8", "--steps", "2048", "--no-progress", "--run-dir", str(run)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [json.loads(line) for line in (run / "envserver" / "episodes.jsonl").read_text().splitlines()]
    assert rows and all(isinstance(r["won"], bool) for r in rows)
    summary = (run / "report" / "summary.md").read_text()
    assert "| | return | cost | win rate |" in summary
    assert "win rate last quarter" in res.stdout
    status = json.loads((run / "envserver" / "status.json").read_text())
    assert status["env_step"] == 2048 and status["errors"] == 0  # the agents never sent a masked-out action
    # khop eval plays the team with its masks and scores the greedy policy's win rate, as SMAC does
    res = subprocess.run([sys.executable, "-m", "compose.cli", "eval", str(run), "--episodes", "8", "--deterministic"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    record = json.loads((run / "eval.json").read_text())["deterministic"]
    assert 0.0 <= record["win_rate"]["mean"] <= 1.0 and all(isinstance(r["won"], bool) for r in record["episode_rows"])
    assert "win rate" in res.stdout
    assert "Win rate (share of the evaluation episodes won): deterministic" in (run / "report" / "summary.md").read_text()
