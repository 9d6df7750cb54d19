"""The benchmark suite measures what it claims: the payload floor is the κ-ball arithmetic, the
/proc readers read this very process, the window arithmetic excludes nothing it should keep, and
(slow) a real `python -m bench.suite` run of real agent processes writes tables and JSON whose
wire bytes can never undercut the raw payload. No speed is asserted: speed lives in bench/."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bench.measure import cpu_us_per_step, proc_cpu_s, proc_memory_mb, proc_private_mb, rate
from bench.wire import payload_floor
from envserver.tasks import make_task, task_spec
from topologies import resolve_topology


def test_payload_floor_counts_every_ball_row_once():
    # safe-halfcheetah-6x1: 6 agents on a line, obs_dim each; κ = 1 → 2·5 directed edges carry one row
    spec = task_spec("safe-halfcheetah-6x1")
    dims = [a.obs_dim for a in spec.agents]
    assert payload_floor("safe-halfcheetah-6x1", 0) == 0
    assert payload_floor("safe-halfcheetah-6x1", 1) == pytest.approx(sum(
        4 * dims[o] for j in range(6) for o in (j - 1, j + 1) if 0 <= o < 6) / 6)
    # a ring of 64 with 2-float observations: κ hops each way, 8 bytes a row
    assert payload_floor("networked-mdp-ring64", 2) == pytest.approx(4 * 8)


def test_proc_readers_see_this_process():
    rss, hwm = proc_memory_mb(os.getpid())
    pss, uss = proc_private_mb(os.getpid())
    assert 0 < rss <= hwm and 0 < uss <= pss <= rss + 1
    assert proc_cpu_s(os.getpid()) > 0
    assert proc_memory_mb(2**22 + 12345) is None  # no such pid: None, not an exception


def test_rate_and_cpu_use_the_window_ends():
    samples = [{"time": 10.0, "env_step": 80, "cpu_s": 1.0}, {"time": 11.0, "env_step": 480, "cpu_s": 1.2},
               {"time": 12.0, "env_step": 880, "cpu_s": 1.8}]
    assert rate(samples) == pytest.approx(400.0)
    assert cpu_us_per_step(samples) == pytest.approx(1e6 * 0.8 / 800)
    assert rate(samples[:1]) is None and cpu_us_per_step(samples[:1]) is None
    # the run's last snapshot, taken as agents exit, has no CPU sum: the window ends at the one before
    ended = samples + [{"time": 13.0, "env_step": 1280, "cpu_s": None}]
    assert cpu_us_per_step(ended) == pytest.approx(1e6 * 0.8 / 800)


@pytest.mark.parametrize("n", [16, 32, 64, 128, 256])
def test_ring_scaling_tasks_step_every_agent(n):
    spec = task_spec(f"networked-mdp-ring{n}")
    assert spec.n_agents == n
    graph = resolve_topology(spec.topology, n)
    assert all(graph.degree(i) == 2 for i in graph)
    task = make_task(f"networked-mdp-ring{n}", 3, 0)
    obs = task.reset()
    res = task.step([np.ones(3, dtype=np.int64)] * n)
    assert len(obs) == len(res.obs) == n and res.reward.shape == (3,)


@pytest.mark.slow
def test_suite_writes_tables_and_wire_bytes_above_the_floor(tmp_path):
    res = subprocess.run([sys.executable, "-m", "bench.suite", "--quick", "--sections", "c,d", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    (result,) = tmp_path.glob("suite-*-quick.json")
    out = json.loads(result.read_text())
    (wire,) = out["d"]
    assert not wire["failed"] and wire["bytes_per_agent_step"] > wire["floor_bytes_per_agent_step"] > 0
    (ring,) = out["c"]
    if "skipped" not in ring:  # skipped only when the machine lacks the memory for 8 agents
        assert not ring["failed"] and ring["steps_per_s"] > 0 and 100 < ring["rss_mb_max"] < 4000
    assert "(d) wire bytes" in (tmp_path / "latest.md").read_text()
