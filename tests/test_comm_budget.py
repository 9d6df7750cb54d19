"""Communication budgets: the policy ladder (float16 → every k steps → drop the farthest hops), and
the hard guarantee — over many steps, for several budgets, modes and graphs, the wire bytes an
agent sends never exceed the budget (per prefix of steps; no step above the bucket depth)."""
import time

import numpy as np
import pytest
import zmq

from agentd.links import LinkSpec, NeighbourLinks, TokenBucket, link_specs
from agentd.memory_network import MemoryNetwork
from agentd.relay import F16_MAX, Level, RelayPlan
from compose.run.launcher import free_ports
from envserver import protocol as P
from test_relay import E, dims_of, obs_of, run_agents
from topologies import generate


def assert_within_budget(per_step_bytes: list[int], budget: float, n_envs: int, plan: RelayPlan) -> None:
    rate = budget * n_envs  # bytes per lockstep: `budget` is per env step (one transition of one env copy)
    cumulative = np.cumsum(per_step_bytes)
    steps = np.arange(1, len(per_step_bytes) + 1)
    assert (cumulative <= rate * steps + 1e-6).all(), (cumulative, rate * steps)
    assert max(per_step_bytes) <= rate * plan.level.period + 1e-6


def test_ladder_float16_then_period_then_drop_hops():
    g = generate("ring", 6)
    n_envs, kappa = 16, 2
    plan = RelayPlan(g, kappa, [101] * 6, n_envs)
    f4 = max(plan.costs("f4", 2).values()) / n_envs  # bytes per env step, full precision
    f2 = max(plan.costs("f2", 2).values()) / n_envs
    f2_h1 = max(plan.costs("f2", 1).values()) / n_envs

    def level(budget):
        return RelayPlan(g, kappa, [101] * 6, n_envs, budget=budget).level

    assert level(None) == level(f4) == Level("f4", 1, 2)
    assert level(f4 - 1) == level(f2) == Level("f2", 1, 2)  # first: quantise
    assert level(f2 / 2) == Level("f2", 2, 2)  # then: send every k steps
    assert level(f2 / 4) == Level("f2", 4, 2)
    assert level(f2 / 4 - 1).hops == 1  # past the longest period: drop the farthest hop
    assert level(f2_h1 / 4 - 1) == Level("f2", 1, 0)  # nothing fits: no communication
    # a longer allowed period keeps all hops a bit longer
    assert RelayPlan(g, kappa, [101] * 6, n_envs, budget=f2 / 5, max_period=8).level == Level("f2", 5, 2)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("kind, n, kappa", [("ring", 6, 2), ("star", 5, 2), ("line", 5, 3), ("grid", 6, 1)])
def test_budget_is_never_exceeded_in_memory(mode, kind, n, kappa):
    g = generate(kind, n)
    dims = [101 - 7 * (i % 3) for i in range(n)]
    n_envs = 4
    full = max(RelayPlan(g, kappa, dims, n_envs, mode).costs("f4", kappa).values()) / n_envs
    for fraction in (1.5, 0.9, 0.45, 0.2, 0.1, 0.04, 0.01):
        budget = full * fraction
        plan = RelayPlan(g, kappa, dims, n_envs, mode, budget)
        # 5 % loss as well: what is lost was still sent and still counts
        loss = {(s, d): sp for d in range(n) for s, sp in link_specs(g, d, LinkSpec(loss=0.05)).items()}
        net = MemoryNetwork(plan, loss, seed=1)
        per_step = [[] for _ in range(n)]
        for t in range(30):
            net.exchange(t, [np.full((n_envs, dims[i]), t + i, np.float32) for i in range(n)])
            for i in range(n):
                per_step[i].append(net.step_bytes[i])
        for i in range(n):
            assert_within_budget(per_step[i], budget, n_envs, plan)
            assert sum(net.counters[i].budget_blocked.values()) == 0  # the plan fits the bucket
        if plan.level.hops:
            assert sum(map(sum, per_step)) > 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_budget_is_never_exceeded_over_sockets(mode):
    g = generate("ring", 5)
    full = max(RelayPlan(g, 2, dims_of(5), E, mode).costs("f4", 2).values()) / E
    for budget in (full * 0.6, full * 0.3):
        plan = RelayPlan(g, 2, dims_of(5), E, mode, budget)
        assert plan.level.period > 1 or plan.level.dtype == "f2"
        _, relays, step_bytes = run_agents(g, 2, steps=12, mode=mode, budget=budget)
        for i in range(5):
            assert_within_budget(step_bytes[i], budget, E, plan)
            assert sum(relays[i].links.counters.budget_blocked.values()) == 0
            assert sum(step_bytes[i]) == sum(relays[i].links.counters.bytes_sent.values()) > 0


def test_the_bucket_refuses_what_does_not_fit_whatever_the_caller_does():
    """The guarantee does not rest on the plan: a send that would overdraw the bucket is not made."""
    ctx = zmq.Context()
    a, b = (f"tcp://127.0.0.1:{p}" for p in free_ports(2))
    bucket = TokenBucket(rate=300, depth=300)
    l0 = NeighbourLinks(ctx, 0, a, {1: b}, budget=bucket)
    l1 = NeighbourLinks(ctx, 1, b, {0: a})
    try:
        time.sleep(0.1)
        big = P.encode("STATE", {"from": 0, "t": 0, "round": 1, "origins": [0], "hops": [0]},
                       entries=[np.zeros((2, 50), np.float32)])
        small = P.encode("STATE", {"from": 0, "t": 0, "round": 1, "origins": [], "hops": []})
        bucket.refill(0)
        assert P.wire_size(big) > 300
        assert not l0.send(1, big)
        assert l0.send(1, small) and l0.send(1, small)
        sent = sum(l0.counters.bytes_sent.values())
        assert sent == 2 * P.wire_size(small) <= 300
        assert l0.counters.budget_blocked[1] == 1
        got = [l1.recv(500) for _ in range(3)]
        assert [g is not None for g in got] == [True, True, False]
    finally:
        l0.close()
        l1.close()
        ctx.term()


def test_float16_rows_are_rounded_and_clipped_not_infinite():
    g = generate("line", 2)
    dims = [3, 3]
    full = max(RelayPlan(g, 1, dims, 2).costs("f4", 1).values()) / 2
    plan = RelayPlan(g, 1, dims, 2, budget=full - 1)
    assert plan.level == Level("f2", 1, 1)
    net = MemoryNetwork(plan)
    rows = np.array([[0.1, -3.14159, 1e6], [2.5, 7e4, -1e9]], np.float32)
    net.exchange(0, [rows, rows])
    got = net.nodes[1].table[0].rows
    expected = np.clip(rows, -F16_MAX, F16_MAX).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(got, expected)
    assert np.isfinite(got).all() and got.dtype == np.float32


def test_sending_every_k_steps_holds_rows_with_presence_zero():
    g = generate("line", 3)
    full = max(RelayPlan(g, 1, dims_of(3), E).costs("f4", 1).values()) / E
    plan = RelayPlan(g, 1, dims_of(3), E, budget=full / 3)
    k = plan.level.period
    assert k >= 2
    net = MemoryNetwork(plan)
    node = net.nodes[1]
    for t in range(3 * k):
        net.exchange(t, [obs_of(i, t) for i in range(3)])
        send_step = (t + 1) % k == 0
        assert node.presence()[0] == node.presence()[2] == float(send_step)
        last_send = t - (t + 1) % k
        if last_send >= 0:  # rows of the last exchange are held until the next one is due
            np.testing.assert_array_equal(node.rows()[0], obs_of(0, last_send))
        else:
            assert 0 not in node.rows()  # nothing received yet: zeros
        assert net.step_bytes[1] == (0 if not send_step else net.step_bytes[1])
