"""Neighbour liveness: heartbeats go out on quiet links and are never delivered as data; a dead
neighbour is declared down after the heartbeat timeout (not the much longer link timeout), its
rows become presence 0, and it comes back to presence 1 by itself when a new process answers on
the same address. Real ZeroMQ TCP sockets, one thread per agent; no wall-clock upper bounds (a
relay that waited the link timeout would hang past the join timeout instead)."""
import threading
import time

import numpy as np
import zmq

from agentd.links import SEND_QUEUE, NeighbourLinks, TokenBucket
from agentd.liveness import Liveness
from agentd.relay import KHopRelay, RelayNode, RelayPlan
from compose.run.launcher import free_ports
from test_relay import E, dims_of, obs_of
from topologies import generate, neighbours


def test_liveness_rules():
    lv = Liveness([1, 2], timeout_s=2.0)
    assert lv.interval_s == 0.4
    assert lv.heartbeats_due(0.0) == [1, 2]
    lv.sent(1, 10.0)
    assert lv.heartbeats_due(10.2) == [2]
    # never heard: the first timeout applies, counted from the exchange start at the earliest
    assert lv.expire([1, 2], since=100.0, now=105.0, first_timeout_s=30.0) == set()
    assert lv.expire([1, 2], since=100.0, now=130.0, first_timeout_s=30.0) == {1, 2}
    lv.heard(1, 131.0)
    assert lv.down == {2} and lv.up_events[1] == 1
    # heard long ago (an agent busy in an update sends nothing): silence counts from the exchange start
    assert lv.expire([1], since=200.0, now=201.0, first_timeout_s=30.0) == set()
    assert lv.expire([1], since=200.0, now=202.0, first_timeout_s=30.0) == {1}
    assert lv.expire([1], since=200.0, now=300.0, first_timeout_s=30.0) == set()  # counted once
    s = lv.stats()
    assert (s["neighbours_down"], s["neighbour_down_events"], s["neighbour_up_events"]) == (2, 3, 1)
    assert (s["nbr1_down_events"], s["nbr2_down_events"], s["nbr1_up_events"]) == (2, 1, 1)


def test_heartbeats_on_quiet_links_prove_life_and_are_not_data():
    ctx = zmq.Context()
    a, b = (f"tcp://127.0.0.1:{p}" for p in free_ports(2))
    l0 = NeighbourLinks(ctx, 0, a, {1: b}, heartbeat_timeout_s=0.5)
    l1 = NeighbourLinks(ctx, 1, b, {0: a}, heartbeat_timeout_s=0.5)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and not (l0.liveness.last_heard[1] and l1.liveness.last_heard[0]):
            assert l0.recv(50) is None and l1.recv(50) is None  # heartbeats are never handed out
        assert l0.liveness.last_heard[1] and l1.liveness.last_heard[0]
        for links in (l0, l1):
            phases = links.counters.by_phase()
            assert phases["msgs_sent_control"] >= 1 and phases["bytes_received_control"] > 0
            assert phases["bytes_sent_rollout"] == phases["bytes_received_rollout"] == 0
    finally:
        l0.close()
        l1.close()
        ctx.term()


def test_heartbeat_only_from_a_full_token_bucket():
    """Under a budget a heartbeat never takes bytes a planned message needs."""
    ctx = zmq.Context()
    a, b = (f"tcp://127.0.0.1:{p}" for p in free_ports(2))
    bucket = TokenBucket(rate=1000, depth=1000)
    links = NeighbourLinks(ctx, 0, a, {1: b}, budget=bucket, heartbeat_timeout_s=0.5)
    try:
        bucket.refill(0)
        bucket.try_spend(10)  # not full: no heartbeat
        links.tick()
        assert links.counters.by_phase()["msgs_sent_control"] == 0 and bucket.tokens == 990
        bucket.refill(1)  # full again
        links.tick()
        assert links.counters.by_phase()["msgs_sent_control"] == 1 and links.counters.totals()["budget_blocked"] == 0
    finally:
        links.close()
        ctx.term()


def test_dead_neighbour_goes_presence_zero_fast_and_a_new_process_brings_it_back():
    """Line 0 - 1 - 2, κ = 1, link timeout 600 s, heartbeat timeout 1 s. Agent 2 dies after step 2
    and a new agent 2 starts on the same address at step 6: agents 0 and 1 step on without it,
    agent 1 sees it down once and up once, and its rows (presence 1) from step 8 on. What the
    dead process's neighbours queued for it meanwhile reaches the new one as at most SEND_QUEUE
    stale frames, which it drops by their step counter."""
    graph = generate("line", 3)
    plan = RelayPlan(graph, 1, dims_of(3), E)
    addresses = {i: f"tcp://127.0.0.1:{p}" for i, p in enumerate(free_ports(3))}
    steps, dies_after, returns_at = 10, 2, 6
    parties = {t: 2 if dies_after < t < returns_at else 3 for t in range(steps)}
    barriers = {t: threading.Barrier(n) for t, n in parties.items()}
    results: dict = {}
    relays: dict = {}

    def agent(i, ts, key):
        ctx = zmq.Context()
        links = NeighbourLinks(ctx, i, addresses[i], {j: addresses[j] for j in neighbours(graph, i)},
                               heartbeat_timeout_s=1.0)
        relay = KHopRelay(RelayNode(i, plan), links, link_timeout_s=600.0)
        relays[key], results[key] = relay, {}
        for t in ts:
            barriers[t].wait(timeout=120)  # stands in for the envserver's lockstep STEP
            results[key][t] = relay.exchange(t, obs_of(i, t))
            time.sleep(0.2)  # between steps an agent keeps reading (agentd's idle loop)
            links.pump()
        links.close()
        ctx.term()

    threads = [threading.Thread(target=agent, args=(0, range(steps), 0)),
               threading.Thread(target=agent, args=(1, range(steps), 1)),
               threading.Thread(target=agent, args=(2, range(dies_after + 1), 2))]
    for th in threads:
        th.start()
    threads[2].join(timeout=120)
    while barriers[returns_at].n_waiting < 2 and all(th.is_alive() for th in threads[:2]):
        time.sleep(0.05)  # the others have reached the step where agent 2 returns
    threads.append(threading.Thread(target=agent, args=(2, range(returns_at, steps), "2b")))
    threads[-1].start()
    for th in threads:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in threads), "a relay waited for a dead neighbour"

    r1 = relays[1]
    assert r1.liveness.down_events[2] == 1 and r1.liveness.up_events[2] == 1 and not r1.liveness.down
    presence_of_2 = {t: float(ci[0, -1]) for t, ci in results[1].items()}  # ball of 1 = {0, 1, 2}: last bit
    presence_of_0 = {t: float(ci[0, -3]) for t, ci in results[1].items()}
    assert all(presence_of_2[t] == 1.0 for t in range(dies_after + 1))
    assert all(presence_of_2[t] == 0.0 for t in range(dies_after + 1, returns_at))
    assert all(presence_of_2[t] == 1.0 for t in range(returns_at + 2, steps))
    assert all(p == 1.0 for p in presence_of_0.values())  # the live neighbour never missed a step
    d0, d1, d2 = dims_of(3)
    np.testing.assert_array_equal(results[1][steps - 1][:, d0 + d1:d0 + d1 + d2], obs_of(2, steps - 1))
    assert relays["2b"].late_msgs <= SEND_QUEUE
    assert relays[0].liveness.down_events.get(1, 0) == 0  # 0's only neighbour stayed alive


def test_message_lost_in_a_reconnect_is_given_up_at_the_senders_heartbeat_not_the_slot():
    """TCP loses what was in flight when a connection is rebuilt (a healed partition). Agent 1 has
    sent its round (0, 1) — its heartbeats say so — but the message never arrived: agent 0 stops
    waiting for it at the next heartbeat (presence 0 for that step, ``lost_msgs``), long before its
    600 s slot, and does not take 1 down. Before 1's heartbeat says so, 0 keeps waiting."""
    graph = generate("line", 2)
    plan = RelayPlan(graph, 1, dims_of(2), E)
    ctx = zmq.Context()
    a, b = (f"tcp://127.0.0.1:{p}" for p in free_ports(2))
    l0 = NeighbourLinks(ctx, 0, a, {1: b}, heartbeat_timeout_s=0.5)
    l1 = NeighbourLinks(ctx, 1, b, {0: a}, heartbeat_timeout_s=0.5)
    relay = KHopRelay(RelayNode(0, plan), l0, link_timeout_s=600.0, round_timeout_s=600.0)
    out: dict = {}
    th = threading.Thread(target=lambda: out.setdefault("ci", relay.exchange(0, obs_of(0, 0))), daemon=True)
    try:
        th.start()
        end = time.monotonic() + 2.0  # four heartbeat intervals: 1 says it is alive, not that it sent
        while time.monotonic() < end:
            l1.pump()
            time.sleep(0.02)
        assert th.is_alive() and relay.lost_msgs == 0, "gave up on a message its sender never claimed to send"
        l1.progress = (0, 1)  # 1 sent its round (0, 1); the frame was lost on the way
        end = time.monotonic() + 120
        while th.is_alive() and time.monotonic() < end:
            l1.pump()
            th.join(timeout=0.02)
        assert not th.is_alive(), "waited out the round slot for a message its sender said it had sent"
        assert relay.lost_msgs == 1 and relay.round_timeouts == 0
        assert float(out["ci"][0, -1]) == 0.0 and float(out["ci"][0, -2]) == 1.0  # presence: 1 absent, self present
        assert not relay.liveness.down and relay.liveness.down_events[1] == 0
    finally:
        if not th.is_alive():  # a relay still waiting owns l0's sockets: leave them to the daemon thread
            l0.close()
            l1.close()
            ctx.term()
