"""The sequential token walk (agentd/token_walk.py): every update's order is a random DFS over the
topology that every agent derives alone; the token only moves along graph edges; a silent
predecessor costs a timeout, never a hang; and a real distributed run follows the plan."""
import json
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest
import zmq

from agentd.links import NeighbourLinks
from agentd.token_walk import TokenWalker, first_visits, plan_walk
from agentd.update_phase import LinkMailbox
from topologies import generate, load_topology


def random_connected(n: int, seed: int) -> nx.Graph:
    rng = np.random.default_rng(seed)
    while True:
        g = nx.gnp_random_graph(n, 0.3, seed=int(rng.integers(1 << 30)))
        if nx.is_connected(g):
            return g


TOPOLOGIES = {"line": generate("line", 7), "ring": generate("ring", 6), "star": generate("star", 6),
              "grid": generate("grid", 6, rows=2), "complete": generate("complete", 5),
              "random": random_connected(9, 0), "single": generate("line", 1)}


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_walk_visits_every_agent_once_first_and_hops_only_along_edges(name):
    g = TOPOLOGIES[name]
    orders = set()
    for update in range(40):
        walk = plan_walk(g, seed=5, update=update)
        order = first_visits(walk)
        assert sorted(order) == sorted(g.nodes)  # each agent's first visit exactly once
        assert walk[-1] == order[-1]  # the walk stops at the last first visit
        for a, b in zip(walk, walk[1:]):
            assert g.has_edge(a, b), f"hop {a}->{b} is not an edge of {name}"
        # DFS: hops use tree edges only (each edge twice at most: down, then back up)
        hops = [frozenset(h) for h in zip(walk, walk[1:])]
        assert len(set(hops)) == g.number_of_nodes() - 1
        assert all(hops.count(h) <= 2 for h in hops)
        assert walk == plan_walk(g, seed=5, update=update)  # common randomness: every agent agrees
        orders.add(tuple(order))
    if g.number_of_nodes() > 2:
        assert len(orders) > 5  # a random order per update, not one fixed permutation


def test_walk_depends_on_the_run_seed():
    g = TOPOLOGIES["random"]
    assert any(plan_walk(g, 0, u) != plan_walk(g, 1, u) for u in range(5))


def test_disconnected_topology_is_refused():
    g = nx.Graph([(0, 1), (2, 3)])
    with pytest.raises(ValueError, match="connected"):
        for u in range(20):
            plan_walk(g, 0, u)


class RecordingLearner:
    """Stands in for a sequential learner: records the token it updated with and multiplies it by
    a per-agent factor, so the token's path through the walk is visible in the numbers."""

    def __init__(self, factor: float, n: int = 4) -> None:
        self.factor, self.got = factor, "not updated"
        self.cfg, self.n_envs = SimpleNamespace(rollout_len=n), 1

    def update(self, critic_in, token):
        self.got = None if token is None else token.copy()
        return {}

    def token_out(self, token):
        return (np.ones(4, np.float32) if token is None else token) * np.float32(self.factor)


def _socket_walkers(g, ctx, slot_s, addresses):
    walkers, links = {}, []
    for i in g.nodes:
        lk = NeighbourLinks(ctx, i, addresses[i], {j: addresses[j] for j in g.adj[i]})
        walkers[i] = TokenWalker(i, g, seed=0, mailbox=LinkMailbox(lk), slot_s=slot_s)
        links.append(lk)
    return walkers, links


def _run_walk_threads(g, update, learners, skip=(), slot_s=0.5):
    """Each live agent runs its part of the walk in its own thread over real ZeroMQ sockets."""
    ctx = zmq.Context()
    addresses = {i: f"inproc://tokenwalk-{id(g)}-{update}-{i}" for i in g.nodes}
    walkers, links = _socket_walkers(g, ctx, slot_s, addresses)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, walkers[i].run(update, learners[i], None)))
               for i in g.nodes if i not in skip]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads), "the walk hung"
    for lk in links:
        lk.close()
    ctx.term()
    return results, elapsed


def test_token_is_the_product_along_the_walk_over_sockets():
    g = generate("line", 4)
    learners = {i: RecordingLearner(factor=i + 2.0) for i in g.nodes}
    results, _ = _run_walk_threads(g, 3, learners)
    order = first_visits(plan_walk(g, 0, 3))
    expected = np.ones(4, np.float32)
    assert learners[order[0]].got is None  # the root starts with ones
    for a in order[1:]:
        expected = expected * np.float32(learners[order[order.index(a) - 1]].factor)
        np.testing.assert_array_equal(learners[a].got, expected)
    assert all(r["token_timeouts"] == 0 for r in results.values())


def test_silent_predecessor_costs_a_timeout_not_a_hang():
    g = generate("line", 4)
    update = next(u for u in range(100) if first_visits(plan_walk(g, 0, u))[0] in (0, 3))
    walk = plan_walk(g, 0, update)  # on a line from an end: 0,1,2,3 or 3,2,1,0
    dead = walk[1]
    learners = {i: RecordingLearner(factor=2.0) for i in g.nodes}
    results, _ = _run_walk_threads(g, update, learners, skip={dead}, slot_s=2.0)
    after = walk[2]
    assert results[after]["token_timeouts"] == 1 and results[after]["token_from"] == [-1]
    assert learners[after].got is None  # it updated with what it had: ones
    last = walk[3]
    assert results[last]["token_timeouts"] == 0  # the walk went on after the gap
    np.testing.assert_array_equal(learners[last].got, np.full(4, 2.0, np.float32))


def _metrics(run_dir, agent):
    return [json.loads(line) for line in (run_dir / f"agent-{agent}" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("algo, topology", [("happo", "grid:2x3"), ("mafocops", "star")])
def test_distributed_walk_follows_the_plan_along_edges(tmp_path, algo, topology):
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "compose.cli", "run", "--task", "coop-game", "--algo", algo,
                          "--topology", topology, "--steps", "640", "--envs", "4", "--seed", "7",
                          "--run-dir", str(run_dir), "--no-progress"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    g = load_topology(run_dir / "topology.json")
    sent: dict[int, dict[int, int]] = {i: {} for i in g.nodes}
    for i in g.nodes:
        rows = _metrics(run_dir, i)
        assert len(rows) >= 4
        for row in rows:
            walk = plan_walk(g, 7, row["token_update"])
            mine = [p for p, a in enumerate(walk) if a == i]
            assert row["token_positions"] == mine
            assert row["token_rank"] == first_visits(walk).index(i)
            assert row["token_from"] == [walk[p - 1] for p in mine if p > 0]  # each token came from its planned hop
            assert row["token_timeouts"] == 0
            for p in mine:
                if p + 1 < len(walk):
                    sent[i][walk[p + 1]] = sent[i].get(walk[p + 1], 0) + 1
        counted = {int(k): v for k, v in rows[-1]["msgs_sent_update_to"].items()}
        assert counted == {j: n for j, n in sent[i].items() if n}  # the link counters saw exactly the planned hops
        assert all(g.has_edge(i, j) for j in counted)


def test_update_messages_are_validated_like_every_frame():
    import msgpack

    from envserver import protocol as P

    token = np.arange(6, dtype=np.float32)
    msg = P.decode([bytes(f) for f in P.encode("TOKEN", {"from": 1, "update": 3, "pos": 2}, {"token": token})])
    assert (msg.type, msg["pos"]) == ("TOKEN", 2) and np.array_equal(msg.arrays["token"], token)
    q = P.decode([bytes(f) for f in P.encode("QVALS", {"from": 1, "update": 3, "origin": 4, "hops": 1}, {"q": token})])
    assert q["origin"] == 4 and np.array_equal(q.arrays["q"], token)
    for fields, arrays, reason in [
        ({"from": 1, "update": 3, "pos": -1}, {"token": token}, "negative"),
        ({"from": 1, "update": 3, "pos": 1}, {}, "lacks buffer 'token'"),
        ({"from": 1, "update": 3}, {"token": token}, "lacks field 'pos'"),
        ({"from": 1, "update": 3, "pos": 1}, {"token": np.array([np.nan], np.float32)}, "NaN"),
    ]:
        # the readable map header: a positional one cannot leave a field out
        head = {"type": "TOKEN", **fields, "bufs": [[n, "f4", list(a.shape)] for n, a in arrays.items()]}
        with pytest.raises(P.ProtocolError, match=reason):
            P.decode([msgpack.packb(head)] + [a.tobytes() for a in arrays.values()])


@pytest.mark.parametrize("bad", [np.ones(3, np.float32), -np.ones(4, np.float32)])
def test_a_bad_token_is_refused_and_the_walk_goes_on(bad):
    from envserver import protocol as P

    g = generate("line", 2)
    update = next(u for u in range(50) if plan_walk(g, 0, u) == [0, 1])
    frames = P.encode("TOKEN", {"from": 0, "update": update, "pos": 1}, {"token": bad})
    box = SimpleNamespace(sent=[], discard=lambda stale: None,
                          wait=lambda peer, match, deadline: P.decode([bytes(f) for f in frames]))
    box.send = lambda peer, fr: box.sent.append(peer)
    learner = RecordingLearner(factor=2.0)
    stats = TokenWalker(1, g, 0, box).run(update, learner, None)
    assert learner.got is None and stats["token_timeouts"] == 1 and stats["token_from"] == [-1]
