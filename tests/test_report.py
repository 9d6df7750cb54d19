"""Report and progress helpers against real files in a fake run directory."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from compose.run.progress import ProgressBar, TailState, tail_episodes
from compose.report import read_jsonl, summarize, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("reward.png", "cost.png", "comm.png", "coefficients.png")
N_EPISODES = 40
E = 4  # parallel env copies


def _write_jsonl(path: Path, rows: list[dict], tail: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def _episodes() -> list[dict]:
    # written out of order on purpose: the report must sort by env_step
    eps = []
    for i in range(N_EPISODES):
        ret = 10.0 + 2.5 * i + (0.3 if i % 2 else -0.3)
        costs = [0.5 * (N_EPISODES - i), 0.25 * i]
        eps.append({"env_step": 1000 * (i + 1), "env": i % E, "episode_return": ret,
                    "episode_cost": sum(costs), "episode_costs": costs, "episode_length": 250,
                    "time": 100.0 + i})
    return eps[::-1]


def _metrics(agent: int) -> list[dict]:
    rows = []
    for u in range(10):
        step = 4000 * (u + 1)
        rows.append({"env_step": step, "update": u, "time": 100.0 + 4 * u, "policy_loss": 0.1,
                     "value_loss": 1.0, "entropy": 1.2, "kl": 0.01, "beta1": 0.5 + 0.1 * u + agent,
                     "beta2": 1.0, "clip_frac": 0.1, "bytes_sent": (agent + 1) * 50 * step,
                     "bytes_received": 30 * step, "msgs_sent": 2 * (u + 1), "msgs_received": 2 * (u + 1)})
    return rows


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    cfg = {"task": "toy", "algo": "dpo", "topology": "ring", "kappa": 1, "steps": 40_000, "envs": E,
           "seed": 7, "n_agents": 2, "cost_names": ["hit", "speed"], "cost_limits": [10.0, 5.0],
           "episode_length": 250, "code_version": "abc123", "command": "khop run --algo dpo | tee"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    _write_jsonl(tmp_path / "envserver" / "episodes.jsonl", _episodes(), tail='{"env_step": 41000, "epi')
    _write_jsonl(tmp_path / "envserver" / "events.jsonl",
                 [{"time": 110.0, "env_step": 12000, "event": "agent_down", "agent": 1, "detail": "killed"},
                  {"time": 115.0, "env_step": 12000, "event": "agent_up", "agent": 1, "detail": "restarted"}])
    _write_jsonl(tmp_path / "agent-0" / "metrics.jsonl", _metrics(0))
    _write_jsonl(tmp_path / "agent-1" / "metrics.jsonl", _metrics(1), tail="\x00garbage{{")
    (tmp_path / "agent-1" / "checkpoints").mkdir()
    return tmp_path


def _expected_quarters() -> dict[str, float]:
    eps = sorted(_episodes(), key=lambda e: e["env_step"])
    q = N_EPISODES // 4
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "first_quarter_return": mean([e["episode_return"] for e in eps[:q]]),
        "last_quarter_return": mean([e["episode_return"] for e in eps[-q:]]),
        "first_quarter_cost": mean([e["episode_cost"] for e in eps[:q]]),
        "last_quarter_cost": mean([e["episode_cost"] for e in eps[-q:]]),
    }


def test_read_jsonl_tolerates_missing_and_garbage(run_dir: Path) -> None:
    assert read_jsonl(run_dir / "nope.jsonl") == []
    assert len(read_jsonl(run_dir / "agent-1" / "metrics.jsonl")) == 10
    assert len(read_jsonl(run_dir / "envserver" / "episodes.jsonl")) == N_EPISODES


def test_write_report_full_run(run_dir: Path) -> None:
    out = write_report(run_dir)
    assert out == run_dir / "report"
    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
    md = (out / "summary.md").read_text()
    for key, value in _expected_quarters().items():
        assert f"{value:,.2f}" in md, key
    for name in PLOTS:
        assert f"({name})" in md
    assert "khop run --algo dpo \\| tee" in md  # every config key, pipes escaped
    assert "agent_down" in md and "restarted" in md


def test_summarize_numbers(run_dir: Path) -> None:
    s = summarize(run_dir)
    assert s["episodes"] == N_EPISODES
    for key, value in _expected_quarters().items():
        assert s[key] == pytest.approx(value)
    assert s["updates_per_agent"] == {0: 10, 1: 10}
    assert s["bytes_total"] == {0: 50 * 40_000, 1: 100 * 40_000}
    assert s["bytes_per_step"][0] == pytest.approx(50.0)
    assert s["bytes_per_step"][1] == pytest.approx(100.0)
    assert s["agent_down"] == 1 and s["agent_up"] == 1
    assert s["missing_agents"] == []
    assert s["last_env_step"] == 40_000
    assert s["wall_time_s"] == pytest.approx(139.0 - 100.0)
    assert s["best_ma_return"] > s["first_quarter_return"]
    md = (write_report(run_dir) / "summary.md").read_text()
    assert "50.0" in md and "100.0" in md


def test_report_with_only_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"task": "toy", "algo": "ppo", "n_agents": 3,
                                                      "kappa": 0, "seed": 1, "cost_names": [],
                                                      "cost_limits": []}))
    out = write_report(tmp_path)
    for name in PLOTS:
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    md = (out / "summary.md").read_text()
    assert "No finished episodes" in md
    assert summarize(tmp_path)["missing_agents"] == [0, 1, 2]


def test_report_with_empty_dir(tmp_path: Path) -> None:
    out = write_report(tmp_path)
    assert (out / "summary.md").exists()


def test_tail_episodes_reads_new_complete_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "episodes.jsonl"
    state = TailState()
    assert tail_episodes(path, state) == []  # missing file
    path.write_text('{"env_step": 1}\n{"env_step": 2}\n{"env_st')
    assert [r["env_step"] for r in tail_episodes(path, state)] == [1, 2]
    assert tail_episodes(path, state) == []  # partial line waits
    with path.open("a") as fh:
        fh.write('ep": 3}\n{"env_step": 4}\n')
    assert [r["env_step"] for r in tail_episodes(path, state)] == [3, 4]
    assert tail_episodes(path, state) == []
    path.write_text('{"env_step": 9}\n')  # truncated/rewritten file starts over
    assert [r["env_step"] for r in tail_episodes(path, state)] == [9]


def test_progress_bar_non_tty() -> None:
    buf = io.StringIO()
    t = [0.0]
    bar = ProgressBar(100_000, stream=buf, clock=lambda: t[0])
    bar.update(0, None, None)
    t[0] = 1.0
    bar.update(25_000, 12.5, 0.5)  # throttled: < 10 s since the last line
    assert "25,000" not in buf.getvalue()
    t[0] = 11.0
    bar.update(50_000, 12.5, 0.5)
    bar.close()
    out = buf.getvalue()
    assert "50,000/100,000" in out and "50.0%" in out and "ret 12.50" in out
    assert "\r" not in out and out.endswith("\n")


def test_progress_bar_tty_redraws() -> None:
    buf = io.StringIO()
    t = [0.0]
    bar = ProgressBar(1000, stream=buf, clock=lambda: t[0], tty=True)
    for i in range(1, 11):
        t[0] = i * 0.05
        bar.update(i * 100, None, None)
    bar.close()
    out = buf.getvalue()
    assert out.count("\r") <= 5  # throttled to <= 5/s (plus the final line)
    assert "1,000/1,000" in out and out.endswith("\n")


def test_report_warns_of_start_warnings_and_updates_longer_than_the_deadline(run_dir: Path) -> None:
    cfg = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**cfg, "deadline_s": 2.0, "warnings": ["a start warning"]}))
    rows = _metrics(0)
    rows[3]["update_seconds"] = 3.5  # one update of agent 0 outlasted the deadline
    _write_jsonl(run_dir / "agent-0" / "metrics.jsonl", rows)
    s = summarize(run_dir)
    assert s["warnings"][0] == "a start warning"
    assert s["warnings"][1].startswith("updates took up to 3.5 s (agents 0), longer than the envserver's 2 s deadline")
    text = (write_report(run_dir) / "summary.md").read_text()
    assert "## Warnings" in text and "- a start warning" in text
    (run_dir / "config.json").write_text(json.dumps({**cfg, "deadline_s": 5.0}))
    assert summarize(run_dir)["warnings"] == []
