"""κ-hop relay over real ZeroMQ TCP links (one thread per agent): after κ sync rounds each agent holds
exactly the ground-truth rows of its κ-ball, in async mode an origin d hops away arrives d−1 steps
old, and a silent neighbour shows up as presence 0."""
import threading

import numpy as np
import pytest
import zmq

from agentd.links import LinkSpec, NeighbourLinks, link_specs
from agentd.memory_network import MemoryNetwork
from agentd.relay import KHopRelay, RelayNode, RelayPlan
from compose.run.launcher import free_ports
from topologies import generate, khop_ball, neighbours

E = 2


def obs_of(node: int, t: int) -> np.ndarray:
    dim = 2 + node % 3  # agents may have different observation sizes
    return np.full((E, dim), 100 * t + node, dtype=np.float32)


def dims_of(n: int) -> list[int]:
    return [obs_of(i, 0).shape[1] for i in range(n)]


def run_agents(graph, kappa, steps=3, absent=(), timeout_s=5.0, mode="sync", budget=None, link=LinkSpec(),
               round_timeout_s=None, seed=0, obs=obs_of):
    """Each agent in its own thread with its own sockets; returns ({agent: [critic input per step]},
    {agent: relay}, {agent: [wire bytes sent per step]})."""
    n = graph.number_of_nodes()
    addresses = {i: f"tcp://127.0.0.1:{p}" for i, p in enumerate(free_ports(n))}
    plan = RelayPlan(graph, kappa, [obs(i, 0).shape[1] for i in range(n)], E, mode, budget)
    results, relays, step_bytes = {}, {}, {}
    live = [i for i in range(n) if i not in absent]
    step_start = threading.Barrier(len(live))  # stands in for the envserver's lockstep STEP broadcast

    def agent(i):
        ctx = zmq.Context()
        links = NeighbourLinks(ctx, i, addresses[i], {j: addresses[j] for j in neighbours(graph, i)},
                               emulation=link_specs(graph, i, link), seed=seed, budget=plan.token_bucket())
        relay = KHopRelay(RelayNode(i, plan), links, link_timeout_s=timeout_s, round_timeout_s=round_timeout_s)
        relays[i] = relay
        results[i], step_bytes[i] = [], []
        for t in range(steps):
            step_start.wait(timeout=60)
            results[i].append(relay.exchange(t, obs(i, t)))
            step_bytes[i].append(relay.step_bytes)
        links.close()
        ctx.term()

    threads = [threading.Thread(target=agent, args=(i,)) for i in live]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "relay threads hung"
    return results, relays, step_bytes


def expected_input(graph, i, kappa, t, absent=(), mode="sync"):
    ball = khop_ball(graph, i, kappa)
    reachable = khop_ball(graph.subgraph([v for v in graph if v not in absent]), i, kappa)
    parts, mask = [], []
    for origin, d in sorted(ball.items()):
        age = 0 if mode == "sync" else d - 1 if d else 0
        present = origin in reachable and t - age >= 0
        rows = obs_of(origin, t - age)
        parts.append(rows if present else np.zeros_like(rows))
        mask.append(float(present))
    return np.concatenate(parts + [np.tile(np.array(mask, np.float32), (E, 1))], axis=1)


@pytest.mark.parametrize("kind, n, kappa", [("line", 5, 0), ("line", 5, 1), ("line", 5, 2), ("line", 5, 4),
                                            ("ring", 6, 2), ("grid", 6, 1), ("star", 5, 2)])
def test_sync_relay_delivers_exactly_the_kappa_ball(kind, n, kappa):
    graph = generate(kind, n)
    results, relays, _ = run_agents(graph, kappa)
    assert set(results) == set(range(n))
    for i in range(n):
        assert set(relays[i].known) == set(khop_ball(graph, i, kappa))  # nothing from beyond κ
        for t, got in enumerate(results[i]):
            np.testing.assert_array_equal(got, expected_input(graph, i, kappa, t))
        # hop counts are the graph distances: information came along shortest paths
        assert {o: h for o, (h, _) in relays[i].known.items()} == khop_ball(graph, i, kappa)


@pytest.mark.parametrize("kind, n, kappa", [("line", 5, 1), ("line", 5, 3), ("ring", 6, 2), ("grid", 6, 2)])
def test_async_relay_staleness_is_hops_minus_one(kind, n, kappa):
    """One exchange per step: the origin d hops away arrives with its observation of step t−(d−1),
    and is absent (zeros, presence 0) until then."""
    graph = generate(kind, n)
    steps = kappa + 3
    results, relays, _ = run_agents(graph, kappa, steps=steps, mode="async")
    for i in range(n):
        for t, got in enumerate(results[i]):
            np.testing.assert_array_equal(got, expected_input(graph, i, kappa, t, mode="async"), err_msg=f"{i} {t}")
        assert {o: h for o, (h, _) in relays[i].known.items()} == khop_ball(graph, i, kappa)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sockets_and_memory_network_agree(mode):
    """The in-process reference's network and the socket relay produce the same inputs and bytes."""
    graph = generate("ring", 6)
    results, relays, step_bytes = run_agents(graph, 3, steps=4, mode=mode)
    net = MemoryNetwork(RelayPlan(graph, 3, dims_of(6), E, mode))
    for t in range(4):
        ref = net.exchange(t, [obs_of(i, t) for i in range(6)])
        for i in range(6):
            np.testing.assert_array_equal(results[i][t], ref[i])
            assert step_bytes[i][t] == net.step_bytes[i]


def test_each_origin_reaches_each_agent_once_per_step():
    """Designated relays: on a ring where the opposite agent is reachable both ways, it still arrives
    once (no duplicate bytes), and nothing is sent back to where it came from."""
    graph = generate("ring", 6)
    plan = RelayPlan(graph, 3, dims_of(6), E)
    for j in range(6):
        got = [o for r, per_peer in plan.expects(j).items() for origins in per_peer.values() for o in origins]
        assert sorted(got) == sorted(o for o in khop_ball(graph, j, 3) if o != j)


def test_relay_traffic_stays_on_graph_edges():
    graph = generate("line", 4)
    _, relays, _ = run_agents(graph, 3, steps=2)
    for i, relay in relays.items():
        peers_sent = {peer for (peer, _phase) in relay.links.counters.bytes_sent}
        peers_heard = {peer for (peer, _phase) in relay.links.counters.bytes_received}
        assert peers_sent == peers_heard == set(neighbours(graph, i))


def test_silent_neighbour_becomes_presence_zero_and_cuts_what_only_it_relays():
    graph = generate("line", 4)  # 0 - 1 - 2 - 3; agent 2 never starts
    results, relays, _ = run_agents(graph, 2, steps=4, absent=(2,), timeout_s=0.5)
    assert 2 in relays[1].liveness.down and 2 in relays[3].liveness.down
    for i in (0, 1, 3):
        # round deadlines are anchored to the step start, so the wait for agent 2 in step 0 does not
        # cascade into a timeout between the live agents 0 and 1
        for t in range(4):
            np.testing.assert_array_equal(results[i][t], expected_input(graph, i, 2, t, absent=(2,)))


def test_a_dead_neighbour_on_a_reliable_link_costs_one_round_slot_not_one_per_step():
    """TCP loses nothing, so a neighbour that owed a message and sent none is dead, stopped or cut
    off: it is silent from that first miss on (not after the 30 s link timeout), and the living
    are not made to wait a slot for it in every round of every step."""
    graph = generate("line", 4)
    _, relays, _ = run_agents(graph, 2, steps=4, absent=(2,), timeout_s=30.0, round_timeout_s=0.3)
    for i in (1, 3):
        assert 2 in relays[i].liveness.down
        assert relays[i].round_timeouts == 1, relays[i].round_timeouts
