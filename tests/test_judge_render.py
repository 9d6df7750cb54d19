"""`khop render` on real short training runs: an MP4 (and GIF) with the frames asked for, frames
that change, a video reader that opens them, and one-line refusals."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from compose.cli import main
from compose.judge.evaluate import evaluate


def khop(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}  # khop render picks EGL itself
    return subprocess.run([sys.executable, "-m", "compose.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def khop_run(run_dir: Path, *args: str) -> Path:
    res = khop("run", "--run-dir", str(run_dir), "--no-progress", *args)
    assert res.returncode == 0, res.stdout + res.stderr
    return run_dir


@pytest.fixture(scope="module")
def cheetah_run(tmp_path_factory) -> Path:
    """Safe HalfCheetah 2x3 with 2 agent processes and the envserver over sockets, 3 updates each."""
    return khop_run(tmp_path_factory.mktemp("cheetah") / "run", "--task", "safe-halfcheetah-2x3", "--steps", "400",
                    "--envs", "2", "--set", "rollout_len=50")


def test_mujoco_video_has_the_frames_asked_for_and_they_move(cheetah_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "cheetah.mp4"
    res = khop("render", str(cheetah_run), "-o", str(out), "--frames", "24", "--size", "160x120", "--gif")
    assert res.returncode == 0, res.stdout + res.stderr
    reader = imageio.get_reader(out)
    assert reader.count_frames() == 24
    frames = np.stack([f for f in reader]).astype(np.float64)
    assert frames.shape == (24, 120, 160, 3)
    body = frames[:, 40:]  # below the caption strip: the robot and the scene
    moves = np.abs(np.diff(body, axis=0)).mean(axis=(1, 2, 3))
    assert (moves > 0.05).mean() > 0.8 and np.abs(body[-1] - body[0]).mean() > 1.0
    gif = imageio.mimread(out.with_suffix(".gif"))
    assert len(gif) == 24 and gif[0].shape[:2] == (120, 160)
    rec = json.loads((cheetah_run / "render.json").read_text())
    assert rec["frames"] == 24 and rec["fps"] == 20.0 and rec["render_fps"] > 0  # HalfCheetah: dt 0.05 s
    assert rec["updates"] == [3, 3] and (cheetah_run / rec["still"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (cheetah_run / "report" / "summary.md").read_text()  # the report embeds the still
    assert "![still from the video](still.png)" in md and f"{out}, {out.with_suffix('.gif')}: 24 frames of 160×120 at 20.00 frames/s" in md


@pytest.fixture(scope="module")
def line_run(tmp_path_factory) -> Path:
    return khop_run(tmp_path_factory.mktemp("line") / "run", "--task", "mpe-line-control", "--inprocess",
                    "--steps", "800", "--envs", "8")


def test_particle_episode_is_the_played_episode(line_run: Path) -> None:
    res = khop("render", str(line_run), "--episodes", "2", "--size", "128x96", "--env-seed", "7")
    assert res.returncode == 0, res.stdout + res.stderr
    assert imageio.get_reader(line_run / "render.mp4").count_frames() == 50  # 2 episodes of 25 steps
    rec = json.loads((line_run / "render.json").read_text())
    assert [e["length"] for e in rec["episodes"]] == [25, 25] and rec["fps"] == 10.0  # MPE: dt 0.1 s
    # copy 0's first episode, played deterministically from the same seed, as `khop eval` plays it
    played = evaluate(line_run, 1, deterministic=True, env_seed=7)["episode_rows"][0]
    assert played["env"] == 0 and rec["episodes"][0]["return"] == pytest.approx(played["return"], abs=1e-4)


def test_refusals_are_one_line(line_run: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "copy"
    shutil.copytree(line_run, run)
    newest = sorted((run / "agent-4" / "checkpoints").iterdir())[-1]
    newest.write_bytes(b"not a zip file")
    assert main(["render", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"khop render: error: agent 4: checkpoint {newest} cannot be loaded") and "\n" not in err
    for bad, msg in ((["--size", "15x16"], "must be even"), (["-o", "x.avi"], "must end in .mp4 or .gif"),
                     (["--camera", "track"], "--camera is for MuJoCo tasks")):
        assert main(["render", str(line_run), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err


def test_a_tabular_game_has_nothing_to_draw(tmp_path: Path, capsys) -> None:
    run = khop_run(tmp_path / "coop", "--inprocess", "--steps", "400", "--envs", "4")
    assert main(["render", str(run)]) == 2
    assert capsys.readouterr().err.strip() == ("khop render: error: coop-game is a tabular game (its states are "
                                               "table indices): nothing to draw; `khop eval` scores it")
