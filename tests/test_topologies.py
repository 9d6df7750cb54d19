"""Tests for the topologies package: generators, k-hop balls, file I/O, validation."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest

from topologies import (
    GENERATOR_KINDS,
    TopologyError,
    diameter,
    generate,
    khop_ball,
    khop_neighbourhoods,
    load_topology,
    neighbours,
    resolve_topology,
    save_topology,
    shipped_topologies,
)

SIZES = [1, 2, 3, 4, 5, 6, 7, 9, 12]


def _write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def _node_link(nodes: list, edges: list[tuple], key: str = "links", **extra) -> dict:
    return {
        "directed": False,
        "multigraph": False,
        "graph": {},
        "nodes": [{"id": v} for v in nodes],
        key: [{"source": u, "target": v} for u, v in edges],
        **extra,
    }


# --------------------------------------------------------------------------- #
# Generators and k-hop balls
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kind", GENERATOR_KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_khop_ball_matches_networkx(kind: str, n: int) -> None:
    g = generate(kind, n)
    assert sorted(g.nodes()) == list(range(n))
    assert nx.is_connected(g)
    assert nx.number_of_selfloops(g) == 0
    diam = diameter(g)
    assert diam == (nx.diameter(g) if n > 1 else 0)
    for kappa in sorted({0, 1, 2, 3, diam}):
        for node in g.nodes():
            ball = khop_ball(g, node, kappa)
            expected = nx.single_source_shortest_path_length(g, node, cutoff=kappa)
            assert ball == dict(expected)
            assert set(ball) == set(nx.ego_graph(g, node, radius=kappa).nodes())
            assert ball[node] == 0
            assert list(ball.values()) == sorted(ball.values())
        if kappa >= diam:
            assert all(len(khop_ball(g, v, kappa)) == n for v in g.nodes())


@pytest.mark.parametrize("kind", GENERATOR_KINDS)
def test_khop_neighbourhoods_is_ball_per_node(kind: str) -> None:
    g = generate(kind, 6)
    hoods = khop_neighbourhoods(g, 2)
    assert list(hoods) == list(range(6))
    for v, ball in hoods.items():
        assert ball == khop_ball(g, v, 2)


def test_generator_shapes() -> None:
    assert sorted(generate("line", 4).edges()) == [(0, 1), (1, 2), (2, 3)]
    assert generate("ring", 5).number_of_edges() == 5
    assert sorted(generate("ring", 2).edges()) == [(0, 1)]
    assert generate("ring", 1).number_of_edges() == 0
    assert neighbours(generate("star", 5), 0) == [1, 2, 3, 4]
    assert neighbours(generate("star", 5), 3) == [0]
    assert generate("complete", 5).number_of_edges() == 10
    # grid: rows = largest divisor <= sqrt(n), row-major ids
    g = generate("grid", 6)
    assert (g.graph["rows"], g.graph["cols"]) == (2, 3)
    assert neighbours(g, 0) == [1, 3]
    assert neighbours(g, 4) == [1, 3, 5]
    g = generate("grid", 6, rows=3)
    assert (g.graph["rows"], g.graph["cols"]) == (3, 2)
    assert neighbours(g, 2) == [0, 3, 4]
    assert (generate("grid", 12).graph["rows"], generate("grid", 7).graph["rows"]) == (3, 1)


def test_neighbours_sorted() -> None:
    assert neighbours(generate("ring", 6), 0) == [1, 5]
    assert neighbours(generate("complete", 4), 2) == [0, 1, 3]


# --------------------------------------------------------------------------- #
# Files
# --------------------------------------------------------------------------- #


def test_save_load_round_trip(tmp_path: Path) -> None:
    g = generate("grid", 6)
    g.graph["task"] = "demo"
    g.nodes[0]["address"] = "tcp://127.0.0.1:5000"
    g.edges[0, 1]["delay_ms"] = 12.5
    g.edges[0, 1]["loss"] = 0.1
    path = tmp_path / "sub" / "t.json"
    save_topology(g, path)
    data = json.loads(path.read_text())
    assert "links" in data and "edges" not in data
    assert [d["id"] for d in data["nodes"]] == list(range(6))
    assert [(d["source"], d["target"]) for d in data["links"]] == sorted(g.edges())
    h = load_topology(path)
    assert nx.utils.graphs_equal(g, h)
    assert h.nodes[0]["address"] == "tcp://127.0.0.1:5000"
    assert h.edges[1, 0] == {"delay_ms": 12.5, "loss": 0.1}
    assert h.graph["task"] == "demo"
    # saving again is byte-identical (stable ordering)
    save_topology(h, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == path.read_text()


def test_load_edges_key_and_string_ids(tmp_path: Path) -> None:
    p = _write_json(tmp_path / "e.json", _node_link(["0", "1", "2"], [("0", "1"), ("1", "2")], key="edges"))
    g = load_topology(p)
    assert sorted(g.nodes()) == [0, 1, 2]
    assert sorted(g.edges()) == [(0, 1), (1, 2)]
    # networkx's own default writer (edges="edges") also loads
    p2 = tmp_path / "nx.json"
    p2.write_text(json.dumps(nx.node_link_data(generate("star", 4), edges="edges")))
    assert sorted(load_topology(p2).edges()) == [(0, 1), (0, 2), (0, 3)]


def test_load_graphml(tmp_path: Path) -> None:
    g = generate("ring", 4)
    g.edges[0, 1]["delay_ms"] = 3.0
    p = tmp_path / "r.graphml"
    nx.write_graphml(g, p)
    h = load_topology(p)
    assert sorted(h.nodes()) == [0, 1, 2, 3]
    assert sorted(h.edges()) == sorted(g.edges())
    assert h.edges[0, 1]["delay_ms"] == 3.0


def test_shipped_topologies() -> None:
    names = shipped_topologies()
    assert {"halfcheetah-2x3", "coop-game"} <= set(names)
    hc = resolve_topology("halfcheetah-2x3", 2)
    assert hc.graph["task"] == "safe-halfcheetah-2x3"
    assert sorted(hc.edges()) == [(0, 1)]
    assert hc.nodes[0]["joints"] == ["bthigh", "bshin", "bfoot"]
    assert hc.nodes[1]["joints"] == ["fthigh", "fshin", "ffoot"]
    coop = resolve_topology("coop-game", 6)
    assert nx.utils.graphs_equal(nx.Graph(coop.edges()), nx.Graph(generate("ring", 6).edges()))
    pkg_dir = Path(__import__("topologies").__file__).parent
    for name in names:
        assert load_topology(pkg_dir / f"{name}.json").number_of_nodes() >= 1


def test_resolve_generators_and_paths(tmp_path: Path) -> None:
    assert sorted(resolve_topology("ring", 5).edges()) == sorted(generate("ring", 5).edges())
    g = resolve_topology("grid:3x2", 6)
    assert (g.graph["rows"], g.graph["cols"]) == (3, 2)
    assert resolve_topology("grid:2", 6).graph["cols"] == 3
    p = tmp_path / "mine.json"
    save_topology(generate("line", 3), p)
    assert sorted(resolve_topology(str(p), 3).edges()) == [(0, 1), (1, 2)]


# --------------------------------------------------------------------------- #
# Bad inputs
# --------------------------------------------------------------------------- #


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.json"
    with pytest.raises(TopologyError, match="topology file not found") as ei:
        load_topology(p)
    assert str(p) in str(ei.value)
    with pytest.raises(TopologyError, match="not found"):
        resolve_topology(str(p), 3)


def test_invalid_json(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text('{"nodes": [ {"id": 0}, ')
    with pytest.raises(TopologyError) as ei:
        load_topology(p)
    msg = str(ei.value)
    assert str(p) in msg and "invalid JSON" in msg and "\n" not in msg


def test_invalid_graphml(tmp_path: Path) -> None:
    p = tmp_path / "bad.graphml"
    p.write_text("<graphml><graph")
    with pytest.raises(TopologyError, match="bad.graphml"):
        load_topology(p)


def test_disconnected(tmp_path: Path) -> None:
    p = _write_json(tmp_path / "d.json", _node_link([0, 1, 2, 3, 4], [(0, 1), (2, 3)]))
    with pytest.raises(TopologyError, match="3 components") as ei:
        load_topology(p)
    assert "disconnected" in str(ei.value) and str(p) in str(ei.value)


@pytest.mark.parametrize(
    "nodes, edges, bad",
    [
        ([0, 1, 5], [(0, 1), (1, 5)], "5"),
        ([1, 2, 3], [(1, 2), (2, 3)], "3"),
        ([0, "a", 2], [(0, "a"), ("a", 2)], "'a'"),
        ([0, 1.5], [(0, 1.5)], "1.5"),
        ([0, "01"], [(0, "01")], "'01'"),
        ([0, 1], [(0, 1), (1, 2)], "undeclared node 2"),
        ([0, 1, 1], [(0, 1)], "declared twice"),
    ],
)
def test_bad_node_ids(tmp_path: Path, nodes: list, edges: list, bad: str) -> None:
    p = _write_json(tmp_path / "ids.json", _node_link(nodes, edges))
    with pytest.raises(TopologyError) as ei:
        load_topology(p)
    assert bad in str(ei.value) and str(p) in str(ei.value)


def test_self_loop(tmp_path: Path) -> None:
    p = _write_json(tmp_path / "loop.json", _node_link([0, 1, 2], [(0, 1), (1, 2), (2, 2)]))
    with pytest.raises(TopologyError, match="self-loop on node 2"):
        load_topology(p)


def test_directed_rejected(tmp_path: Path) -> None:
    data = _node_link([0, 1], [(0, 1)])
    data["directed"] = True
    p = _write_json(tmp_path / "dir.json", data)
    with pytest.raises(TopologyError, match="directed"):
        load_topology(p)
    gml = tmp_path / "dir.graphml"
    nx.write_graphml(nx.DiGraph([(0, 1)]), gml)
    with pytest.raises(TopologyError, match="directed"):
        load_topology(gml)


def test_node_count_mismatch() -> None:
    with pytest.raises(TopologyError, match="topology halfcheetah-2x3 has 2 nodes but task has 3 agents"):
        resolve_topology("halfcheetah-2x3", 3)
    with pytest.raises(TopologyError, match="has 6 nodes but task has 5 agents"):
        resolve_topology("grid:2x3", 5)


def test_negative_kappa() -> None:
    g = generate("ring", 4)
    with pytest.raises(TopologyError, match="-1"):
        khop_ball(g, 0, -1)
    with pytest.raises(TopologyError, match="-2"):
        khop_neighbourhoods(g, -2)


def test_unknown_kind_and_spec() -> None:
    with pytest.raises(TopologyError, match="'hexagon'") as ei:
        generate("hexagon", 4)
    for kind in GENERATOR_KINDS:
        assert kind in str(ei.value)
    with pytest.raises(TopologyError, match="'hexagon'"):
        resolve_topology("hexagon", 4)


def test_bad_generator_args() -> None:
    with pytest.raises(TopologyError, match="n >= 1"):
        generate("line", 0)
    with pytest.raises(TopologyError, match="rows=4"):
        generate("grid", 6, rows=4)
    with pytest.raises(TopologyError, match="bogus"):
        generate("ring", 4, bogus=1)


def test_unknown_node_queries() -> None:
    g = generate("line", 3)
    with pytest.raises(TopologyError, match="7"):
        khop_ball(g, 7, 1)
    with pytest.raises(TopologyError, match="7"):
        neighbours(g, 7)
