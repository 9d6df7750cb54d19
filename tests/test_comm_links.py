"""Link emulation inside the link layer: the loss rate matches its setting, delays delay (at least),
links keep order, bandwidth serialises, edge attributes configure links, and a lossy sync relay
stays live with lost entries marked absent. No test asserts an upper bound on wall-clock time."""
import json
import math
import time

import networkx as nx
import numpy as np
import pytest
import zmq

from agentd.links import LinkEmulator, LinkSpec, NeighbourLinks, TokenBucket, link_specs
from agentd.memory_network import MemoryNetwork
from agentd.relay import RelayPlan
from compose.run.launcher import free_ports
from envserver import protocol as P
from test_relay import E, dims_of, obs_of, run_agents
from topologies import generate, load_topology, save_topology


def state(sender: int, t: int, rows=None):
    rows = [] if rows is None else [rows]
    return P.encode("STATE", {"from": sender, "t": t, "round": 1, "origins": [sender] * len(rows),
                              "hops": [0] * len(rows)}, entries=rows)


@pytest.fixture
def pair():
    """Agent 0 and agent 1 linked; agent 1's inbound link from 0 is emulated by the spec given."""
    ctx = zmq.Context()
    made = []

    def make(spec: LinkSpec, seed: int = 0):
        a, b = (f"tcp://127.0.0.1:{p}" for p in free_ports(2))
        l0 = NeighbourLinks(ctx, 0, a, {1: b})
        l1 = NeighbourLinks(ctx, 1, b, {0: a}, emulation={0: spec}, seed=seed)
        made.extend([l0, l1])
        time.sleep(0.2)  # let the TCP connections come up before the first send
        return l0, l1

    yield make
    for link in made:
        link.close()
    ctx.term()


def drain(links: NeighbourLinks, n_expected: int, timeout_s: float = 60.0):
    """Receive until n_expected messages in all (since the links were made) have been delivered or
    counted lost."""
    got = []
    end = time.monotonic() + timeout_s
    c = links.counters
    while time.monotonic() < end:
        if sum(c.msgs_received.values()) + sum(c.msgs_lost.values()) >= n_expected and not links.pending:
            break
        item = links.recv(50)
        if item is not None:
            got.append((time.monotonic(), item[1]))
    return got


def test_loss_rate_matches_setting_within_binomial_bound(pair):
    p, n = 0.2, 3000
    l0, l1 = pair(LinkSpec(loss=p), seed=7)
    got = []
    for t in range(n):
        assert l0.send(1, state(0, t))
        if t % 50 == 49:  # stay below the send queue (links.SEND_QUEUE messages)
            got += drain(l1, t + 1)
    got += drain(l1, n)
    lost = l1.counters.msgs_lost[0]
    assert len(got) + lost == n
    # 5 standard deviations: a false alarm about once in 3.5 million runs
    assert abs(lost / n - p) <= 5 * math.sqrt(p * (1 - p) / n), lost / n
    # the survivors arrive in order and the counters agree with what was delivered
    ts = [msg["t"] for _, msg in got]
    assert ts == sorted(ts)
    assert l1.counters.totals()["msgs_received"] == len(got)


def test_loss_is_seeded_per_directed_link():
    spec = LinkSpec(loss=0.3)
    fate = [[LinkEmulator(spec, seed, 0, 1).admit(100, 0.0) is None for _ in range(1)] for seed in (1, 1)]
    a = [LinkEmulator(spec, 5, 0, 1) for _ in range(2)]
    b = LinkEmulator(spec, 5, 1, 0)
    seq = [[e.admit(100, 0.0) is None for _ in range(200)] for e in a + [b]]
    assert seq[0] == seq[1]  # same seed and direction: the same losses
    assert seq[0] != seq[2]  # the other direction has its own stream
    assert fate[0] == fate[1]


def test_delay_and_jitter_delay_at_least_and_keep_order(pair):
    delay, jitter = 40.0, 15.0
    l0, l1 = pair(LinkSpec(delay_ms=delay, jitter_ms=jitter))
    sent = {}
    for t in range(30):
        sent[t] = time.monotonic()
        l0.send(1, state(0, t, np.full((E, 3), t, np.float32)))
        time.sleep(0.002)
    got = drain(l1, 30)
    assert [msg["t"] for _, msg in got] == list(range(30))  # in order despite jitter
    for at, msg in got:
        assert at - sent[msg["t"]] >= (delay - jitter) / 1000
    # and at least one message really waited the full nominal delay or more
    assert max(at - sent[msg["t"]] for at, msg in got) >= delay / 1000


def test_bandwidth_serialises_messages_behind_each_other(pair):
    bps = 200_000
    l0, l1 = pair(LinkSpec(bandwidth_bps=bps))
    frames = state(0, 0, np.zeros((E, 500), np.float32))
    size = P.wire_size(frames)
    start = time.monotonic()
    for t in range(10):
        l0.send(1, state(0, t, np.zeros((E, 500), np.float32)))
    got = drain(l1, 10)
    assert len(got) == 10
    # the last message cannot be delivered before all ten have been serialised
    assert got[-1][0] - start >= 10 * size * 8 / bps


def test_edge_attributes_configure_links(tmp_path):
    g = generate("line", 3)
    g.edges[0, 1].update(delay_ms=5, loss=0.1)
    g.edges[1, 2]["bandwidth_bps"] = 1e6
    save_topology(g, tmp_path / "t.json")
    g2 = load_topology(tmp_path / "t.json")
    default = LinkSpec(jitter_ms=1.0, loss=0.05)
    specs = link_specs(g2, 1, default)
    assert specs[0] == LinkSpec(delay_ms=5, jitter_ms=1.0, loss=0.1)
    assert specs[2] == LinkSpec(jitter_ms=1.0, loss=0.05, bandwidth_bps=1e6)
    assert link_specs(g2, 0, default)[1] == specs[0]  # both directions of an edge
    # GraphML hands attributes over as strings
    nx.write_graphml(nx.relabel_nodes(g, str), tmp_path / "t.graphml")
    assert link_specs(load_topology(tmp_path / "t.graphml"), 0)[1].loss == pytest.approx(0.1)
    g.edges[0, 1]["loss"] = 1.5
    with pytest.raises(ValueError, match="edge 0-1: loss"):
        link_specs(g, 0)
    g.edges[0, 1]["loss"] = "lots"
    with pytest.raises(ValueError, match="must be a number"):
        link_specs(g, 1)


def test_lost_message_means_its_entries_are_absent_for_that_step():
    """In-memory reference semantics: line 0-1-2, κ=2, only edge 1-2 lossy. A lost 2→1 message
    blanks origin 2 for agent 1 and (relayed) for agent 0, which then gets a control marker instead
    of rows; everything else is exact."""
    g = generate("line", 3)
    g.edges[1, 2]["loss"] = 0.3
    plan = RelayPlan(g, 2, dims_of(3), E)
    net = MemoryNetwork(plan, {(s, d): sp for d in range(3) for s, sp in link_specs(g, d).items()}, seed=3)
    lost_2_to_1 = blanks = 0
    for t in range(200):
        before = net.counters[1].msgs_lost[2]
        ci = net.exchange(t, [obs_of(i, t) for i in range(3)])
        lost_now = net.counters[1].msgs_lost[2] - before
        lost_2_to_1 += lost_now
        p1, p0 = net.nodes[1].presence(), net.nodes[0].presence()
        assert p1[2] == p0[2] == (0.0 if lost_now else 1.0)
        assert p1[0] == p0[1] == 1.0  # the lossless edge is exact
        blanks += p0[2] == 0.0
        if not lost_now:
            np.testing.assert_array_equal(ci[0][:, -1], 1.0)
    assert blanks == lost_2_to_1 > 0
    assert net.counters[1].by_phase()["msgs_sent_control"] == lost_2_to_1  # "nothing for you" markers
    assert abs(lost_2_to_1 / 200 - 0.3) < 0.15


def test_lossy_sync_relay_stays_live_and_matches_the_reference():
    """Sockets with 20 % emulated loss and a short round slot: every step completes (no link-timeout
    waits), the same messages are lost as in the in-memory reference (seeded per directed link),
    and an agent none of whose surviving messages missed a slot has exactly the reference's inputs."""
    g = generate("ring", 5)
    link = LinkSpec(loss=0.2)
    steps = 8
    results, relays, _ = run_agents(g, 2, steps=steps, link=link, round_timeout_s=0.4, seed=11, timeout_s=30.0)
    net = MemoryNetwork(RelayPlan(g, 2, dims_of(5), E),
                        {(s, d): sp for d in range(5) for s, sp in link_specs(g, d, link).items()}, seed=11)
    refs = []
    for t in range(steps):
        refs.append(net.exchange(t, [obs_of(i, t) for i in range(5)]))
    assert len(results) == 5 and all(len(r) == steps for r in results.values())  # live: every step done
    lost = {i: r.links.counters.totals()["msgs_lost"] for i, r in relays.items()}
    assert lost == {i: c.totals()["msgs_lost"] for i, c in enumerate(net.counters)}  # the same messages lost
    assert sum(lost.values()) > 0
    assert not any(r.liveness.down for r in relays.values())  # lost messages never made a neighbour "dead"
    for i, r in relays.items():
        assert r.round_timeouts >= lost[i]
        if r.round_timeouts == lost[i]:  # no surviving message missed its slot (possible under heavy load)
            for t in range(steps):
                np.testing.assert_array_equal(results[i][t], refs[t][i], err_msg=f"agent {i} step {t}")
    absent = sum(int((refs[t][i][0, -len(net.nodes[i].ball):] == 0).sum()) for t in range(steps) for i in range(5))
    assert absent > 0  # losses showed up as presence 0


def test_token_bucket_accrues_per_step_and_caps_at_depth():
    b = TokenBucket(rate=100, depth=300, period=3)
    b.refill(0)
    assert b.tokens == 100 and not b.try_spend(150)
    b.refill(2)
    assert b.tokens == 300 and b.try_spend(300) and b.tokens == 0
    b.refill(20)
    assert b.tokens == 300  # never more than the depth
    late = TokenBucket(rate=100, depth=300, period=3)
    late.refill(8)  # a (re)started agent joins in the middle of a period: credited from its start
    assert late.tokens == 300


def test_config_json_of_links_round_trips(tmp_path):
    """Edge attributes survive the launcher's save/load of the run's topology file."""
    g = generate("ring", 4)
    g.edges[2, 3]["delay_ms"] = 12.5
    save_topology(g, tmp_path / "topology.json")
    data = json.loads((tmp_path / "topology.json").read_text())
    assert any(link.get("delay_ms") == 12.5 for link in data["links"])
    assert link_specs(load_topology(tmp_path / "topology.json"), 3)[2].delay_ms == 12.5
