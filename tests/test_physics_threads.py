"""Physics on several threads (envserver/tasks/physics_pool.py): a task stepped on any number of
threads gives bit-identical results, including its episode ends and resets; a worker's error
reaches the stepping thread instead of hanging it; the option is validated and reaches the
envserver's command line. No speed is asserted (bench/NOTES.md §21 measures it)."""
import os

import numpy as np
import pytest

from compose.run.config import RunConfig, process_args
from envserver.tasks import make_task
from envserver.tasks.physics_pool import COPIES_PER_THREAD, PhysicsPool, resolve_threads


def trajectory(task_name: str, threads: int, steps: int, envs: int = 7) -> list:
    task = make_task(task_name, envs, seed=3, physics_threads=threads)
    try:
        out = [np.concatenate(task.reset(), axis=1)]
        rng = np.random.default_rng(0)
        specs = task.spec.agents
        for _ in range(steps):
            acts = [rng.uniform(-1.5, 1.5, (envs, a.act_dim)).astype(np.float32) for a in specs]
            r = task.step(acts)
            out += [np.concatenate(r.obs, axis=1), r.reward, np.stack(r.cost), r.terminated, r.truncated]
        return out
    finally:
        task.close()


@pytest.mark.parametrize("task_name", ["safe-halfcheetah-6x1", "safe-velocity-hopper-3x1"])
def test_any_thread_count_gives_the_same_run(task_name):
    # the cheetah's obstacle hazard moves and costs; the hopper falls and is reset mid-run
    one = trajectory(task_name, 1, 120)
    if "hopper" in task_name:
        assert any(x.dtype == bool and x.any() for x in one), "the hopper should end some episodes"
    for threads in (2, 3, 7):
        many = trajectory(task_name, threads, 120)
        assert len(many) == len(one)
        for a, b in zip(one, many):
            np.testing.assert_array_equal(a, b)


def test_a_worker_error_reaches_the_caller_and_the_pool_still_closes():
    def advance(lo: int, hi: int, reset: list) -> None:
        if lo >= 4:
            raise RuntimeError(f"copy {lo} broke")
        reset.append(lo)

    pool = PhysicsPool(8, 2, advance)
    with pytest.raises(RuntimeError, match="copy 4 broke"):
        pool.step()
    with pytest.raises(RuntimeError):  # the worker survives its error and serves the next step
        pool.step()
    pool.close()
    assert pool.workers == []


def test_a_pool_needs_one_to_n_threads_and_closes_twice():
    for threads in (0, 5):
        with pytest.raises(ValueError, match="1 to 4 threads"):
            PhysicsPool(4, threads, lambda lo, hi, reset: None)
    pool = PhysicsPool(4, 4, lambda lo, hi, reset: None)
    pool.step()
    pool.close()
    pool.close()


def test_the_copies_reset_come_back_in_order():
    pool = PhysicsPool(9, 3, lambda lo, hi, reset: reset.extend(range(lo, hi)))
    try:
        assert pool.step() == list(range(9))
    finally:
        pool.close()


def test_automatic_thread_count():
    cpus = len(os.sched_getaffinity(0))
    assert resolve_threads(0, 8) == 1
    assert resolve_threads(0, 2 * COPIES_PER_THREAD) == min(cpus, 2)
    assert resolve_threads(3, 8) == 3 and resolve_threads(5, 2) == 2  # never more threads than copies
    with pytest.raises(ValueError, match=">= 0"):
        resolve_threads(-1, 8)


def test_the_option_reaches_the_envserver_and_refuses_a_negative_count(tmp_path, capsys):
    cfg = RunConfig(task="safe-halfcheetah-2x3", kappa=1, physics_threads=3, run_dir=tmp_path)
    argv = process_args(cfg, 2, "tcp://127.0.0.1:1", "tcp://127.0.0.1:1", tmp_path / "g.json", tmp_path)["envserver"]
    assert argv[argv.index("--physics-threads") + 1] == "3"
    from compose.cli import main

    assert main(["run", "--task", "safe-halfcheetah-2x3", "--physics-threads", "-1"]) == 2  # one line, nothing started
    assert "--physics-threads must be >= 0" in capsys.readouterr().err
