"""Env steps per second of the MuJoCo tasks against Gymnasium's single-agent env of the same robot.

    python bench/mujoco_speed.py [--tasks SUBSTRING ...] [--seconds 0.3] [--rounds 2]

For each task and E in (1, 8) it times ``task.step`` on pre-generated uniform random actions (no
gymnasium spaces involved), alternating with Gymnasium's environment of the same robot (A B A B,
so load on a shared machine hits both alike) and prints env-steps per second of process CPU time
(``--wall`` for wall-clock) — a lockstep of E copies counts E — and the ratio ours / Gymnasium
(goal: >= 0.8). The Gymnasium side is ``gymnasium.make`` with
its default wrappers, reset when an episode ends; the robots without a Gymnasium id (the many-
segment ant, the coupled cheetahs) run Ant-v5 / HalfCheetah-v5 on our own robot XML
(``xml_file``), which is what ``tests/test_mujoco_fidelity.py`` compares against as well.
Needs ``pip install "gymnasium[mujoco]"`` (the test extra).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envserver.tasks import make_task, task_names  # noqa: E402
from envserver.tasks.mujoco_catalog import CATALOG, TaskKey  # noqa: E402
from envserver.tasks.mujoco_models import robot_xml  # noqa: E402

N_ACT = 2048  # pre-generated action rows, cycled


def gym_env(key: TaskKey, tmp: Path):
    """Gymnasium's env for the task's robot (obstacles and walls are not part of it)."""
    import gymnasium as gym

    r = key.robot.key
    if r.startswith("manyagent"):
        path = tmp / f"{r}.xml"
        path.write_text(robot_xml(key.robot))
        return gym.make("Ant-v5", xml_file=str(path), frame_skip=key.robot.frame_skip), "Ant-v5(xml_file)"
    if r == "coupled-halfcheetah":
        path = tmp / f"{r}.xml"
        path.write_text(robot_xml(key.robot))
        return gym.make("HalfCheetah-v5", xml_file=str(path)), "HalfCheetah-v5(xml_file)"
    gid = {"halfcheetah": "HalfCheetah-v5", "ant": "Ant-v5", "safe-ant": "Ant-v5", "hopper": "Hopper-v5",
           "walker2d": "Walker2d-v5", "humanoid": "Humanoid-v5",  # the velocity tasks' v4 robots:
           "ant-v4": "Ant-v4", "hopper-v4": "Hopper-v4", "walker2d-v4": "Walker2d-v4", "humanoid-v4": "Humanoid-v4",
           "swimmer": "Swimmer-v4"}[r]
    return gym.make(gid), gid


CLOCK = time.process_time  # CPU seconds of this process: colleagues' load on shared cores does
# not count (MuJoCo and these small numpy calls are single-threaded); --wall uses wall-clock time


def time_ours(task, acts: list[np.ndarray], seconds: float) -> float:
    n, k, t0 = 0, 0, CLOCK()
    while True:
        task.step([a[k] for a in acts])
        n += 1
        k = (k + 1) % N_ACT
        if n % 16 == 0 and CLOCK() - t0 > seconds:
            return n * task.n_envs / (CLOCK() - t0)


def time_gym(env, acts: np.ndarray, seconds: float) -> float:
    n, k, t0 = 0, 0, CLOCK()
    while True:
        _o, _r, term, trunc, _i = env.step(acts[k])
        if term or trunc:
            env.reset()
        n += 1
        k = (k + 1) % N_ACT
        if n % 16 == 0 and CLOCK() - t0 > seconds:
            return n / (CLOCK() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="*", default=[], help="only task names containing one of these")
    p.add_argument("--envs", nargs="*", type=int, default=[1, 8])
    p.add_argument("--seconds", type=float, default=0.3, help="per timed block")
    p.add_argument("--rounds", type=int, default=3, help="A B rounds; the best of each side is kept")
    p.add_argument("--wall", action="store_true", help="time by wall clock instead of process CPU time")
    args = p.parse_args(argv)
    global CLOCK
    if args.wall:
        CLOCK = time.perf_counter
    warnings.filterwarnings("ignore")
    names = [n for n in task_names() if n in CATALOG and (not args.tasks or any(t in n for t in args.tasks))]
    rng = np.random.default_rng(0)
    print(f"{'task':38s} {'E':>2s} {'ours steps/s':>13s} {'gymnasium':>35s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # MuJoCo's MUJOCO_LOG.TXT (Gymnasium's settotalmass warning) lands here
        gyms: dict[str, tuple] = {}
        for name in names:
            key = CATALOG[name]
            if key.robot.key not in gyms:
                env, gid = gym_env(key, Path(tmp))
                env.reset(seed=0)
                lo, hi = env.action_space.low, env.action_space.high
                gyms[key.robot.key] = (env, gid, rng.uniform(lo, hi, (N_ACT, *lo.shape)))
            env, gid, gacts = gyms[key.robot.key]
            for E in args.envs:
                task = make_task(name, E, 0)
                acts = [rng.uniform(a.act_low, a.act_high, (N_ACT, E, a.act_dim)).astype(np.float32)
                        for a in task.spec.agents]
                ours, theirs = 0.0, 0.0
                for _ in range(args.rounds):
                    ours = max(ours, time_ours(task, acts, args.seconds))
                    theirs = max(theirs, time_gym(env, gacts, args.seconds))
                task.close()
                print(f"{name:38s} {E:2d} {ours:13,.0f} {gid:>24s} {theirs:10,.0f} {ours / theirs:6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
