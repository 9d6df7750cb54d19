"""`khop run --tensorboard` and `khop tensorboard`: event files that TensorBoard's own reader loads,
holding every metric key of every agent and every episode of the envserver, at their env steps."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from compose.cli import main
from compose.run.tensorboard import Mirror, scalars


def read_events(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard's EventAccumulator over one writer's directory: tag -> [(step, value)]."""
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_mirrored(jsonl: Path, logdir: Path, names: dict | None = None) -> set[str]:
    """Every numeric leaf of every row is an event at the row's env_step, with the row's value."""
    events = read_events(logdir)
    expected: dict[str, list[tuple[int, float]]] = {}
    for row in rows(jsonl):
        for tag, value in scalars(row, names).items():
            expected.setdefault(tag, []).append((int(row["env_step"]), value))
    assert set(events) == set(expected)
    for tag, points in expected.items():
        got = events[tag]
        assert [s for s, _ in got] == [s for s, _ in points], tag
        assert np.allclose([v for _, v in got], [v for _, v in points], rtol=1e-6, atol=1e-6), tag  # float32 events
    return set(events)


@pytest.fixture(scope="module")
def cheetah_run(tmp_path_factory) -> Path:
    """Safe HalfCheetah 2x3, 2 agent processes and the envserver, one 1000-step episode per copy, with --tensorboard."""
    run = tmp_path_factory.mktemp("tb") / "run"
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--run-dir", str(run), "--no-progress",
                          "--task", "safe-halfcheetah-2x3", "--steps", "2000", "--envs", "2", "--set", "rollout_len=200",
                          "--tensorboard"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return run


def test_every_metric_key_and_every_episode_is_in_tensorboard(cheetah_run: Path) -> None:
    tb = cheetah_run / "tensorboard"
    assert sorted(p.name for p in tb.iterdir()) == ["agent-0", "agent-1", "envserver"]
    for agent in ("agent-0", "agent-1"):
        metrics = cheetah_run / agent / "metrics.jsonl"
        tags = assert_mirrored(metrics, tb / agent)
        keys = {k for r in rows(metrics) for k, v in r.items() if k not in ("env_step", "time")
                and not (isinstance(v, dict) and not v)}  # an empty dict has no scalar to show
        assert {t.split("/")[0] for t in tags} == keys and {"policy_loss", "kl", "bytes_sent"} <= keys
    tags = assert_mirrored(cheetah_run / "envserver" / "episodes.jsonl", tb / "envserver",
                           {"episode_costs": ["obstacle"]})
    assert {"episode_return", "episode_cost", "episode_costs/obstacle", "episode_length"} <= tags
    assert len(read_events(tb / "envserver")["episode_return"]) == 2


def test_khop_tensorboard_rebuilds_the_same_events(cheetah_run: Path, capsys) -> None:
    before = {p.name: read_events(p) for p in (cheetah_run / "tensorboard").iterdir()}
    assert main(["tensorboard", str(cheetah_run)]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    after = {p.name: read_events(p) for p in (cheetah_run / "tensorboard").iterdir()}
    assert after == before  # rewritten from the logs, not appended to
    assert len(list((cheetah_run / "tensorboard" / "agent-0").iterdir())) == 1


def test_mirror_follows_appended_rows_and_waits_for_torn_lines(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"cost_names": []}))
    metrics = tmp_path / "agent-0" / "metrics.jsonl"
    metrics.parent.mkdir()
    metrics.write_text(json.dumps({"env_step": 8, "time": 1.0, "kl": 0.5, "sent_to": {"1": 3}, "note": "x"}) + "\n"
                       + '{"env_step": 16, "kl"')
    mirror = Mirror(tmp_path, poll_s=60)
    assert mirror.poll() == 1  # the half-written row is not read yet
    with open(metrics, "a") as fh:
        fh.write(': 0.25, "time": 2.0}\n')
    assert mirror.poll() == 1 and mirror.poll() == 0
    with mirror:
        pass
    assert read_events(tmp_path / "tensorboard" / "agent-0") == {"kl": [(8, 0.5), (16, 0.25)], "sent_to/1": [(8, 3.0)]}
