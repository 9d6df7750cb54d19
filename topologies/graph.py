"""Communication topologies: load, generate, validate and query agent graphs.

Why this module exists: in khop every agent is an OS process that may only talk
to its graph neighbours, so the graph *is* the communication contract.  Every
graph that reaches the simulator therefore goes through the same validation
(undirected, nodes 0..N-1, no self-loops, connected) no matter whether it came
from a file, a shipped preset or a generator, and every bad input fails early
with a one-line :class:`TopologyError` instead of a hang at run time.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections import deque
from pathlib import Path
from typing import Any, Mapping

import networkx as nx

#: Generator names accepted by :func:`generate` and :func:`resolve_topology`.
GENERATOR_KINDS: tuple[str, ...] = ("line", "ring", "star", "complete", "grid")

_PACKAGE_DIR = Path(__file__).resolve().parent
_GRAPHML_SUFFIXES = (".graphml",)
_FILE_SUFFIXES = (".json", ".graphml")


class TopologyError(ValueError):
    """Any bad topology input.

    Subclasses ValueError so generic callers can catch it, while the CLI can
    catch exactly this and print the (always one-line) message without a trace.
    """

    def __init__(self, message: str) -> None:
        # One line, always: messages end up in CLI output and log lines.
        super().__init__(" ".join(str(message).split()))


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #


def _as_node_id(raw: Any, where: str) -> int:
    """Map a node id to int; accept canonical decimal strings ("0", "12").

    Why: GraphML always yields string ids and hand-written JSON often does too,
    but silently accepting "01", 1.0 or True would hide typos.
    """
    if isinstance(raw, bool):
        raise TopologyError(f"node id {raw!r} is not an integer in {where}")
    if isinstance(raw, int):
        return int(raw)
    if isinstance(raw, str) and re.fullmatch(r"-?(0|[1-9][0-9]*)", raw):
        return int(raw)
    raise TopologyError(f"node id {raw!r} is not an integer in {where}")


def _validate(g: nx.Graph, where: str) -> nx.Graph:
    """Check the khop graph contract and return a clean copy with int ids.

    The copy is a plain ``nx.Graph`` with nodes inserted in id order so that
    iteration order is deterministic for every consumer.
    """
    if g.is_directed():
        raise TopologyError(
            f"topology {where} is directed; khop links are bidirectional, "
            "write an undirected graph"
        )
    if g.is_multigraph():
        for u, v in g.edges():
            if g.number_of_edges(u, v) > 1:
                raise TopologyError(f"topology {where} has parallel edges between nodes {u!r} and {v!r}")
    n = g.number_of_nodes()
    if n == 0:
        raise TopologyError(f"topology {where} has no nodes")

    mapping: dict[Any, int] = {}
    seen: dict[int, Any] = {}
    for raw in g.nodes():
        nid = _as_node_id(raw, where)
        if nid in seen:
            raise TopologyError(f"node id {raw!r} duplicates node {seen[nid]!r} in {where}")
        seen[nid] = raw
        mapping[raw] = nid
    for nid in sorted(seen):
        if not 0 <= nid < n:
            raise TopologyError(
                f"node id {seen[nid]!r} is out of range 0..{n - 1} in {where} "
                f"(nodes must be numbered 0..N-1 with N={n})"
            )

    for u, v in g.edges():
        if u == v:
            raise TopologyError(f"self-loop on node {mapping[u]} in {where}")

    out = nx.Graph()
    out.graph.update(g.graph)
    inverse = {nid: raw for raw, nid in mapping.items()}
    for nid in range(n):
        out.add_node(nid, **dict(g.nodes[inverse[nid]]))
    for u, v, attrs in sorted(
        ((min(mapping[a], mapping[b]), max(mapping[a], mapping[b]), d) for a, b, d in g.edges(data=True)),
        key=lambda e: (e[0], e[1]),
    ):
        out.add_edge(u, v, **dict(attrs))

    if not nx.is_connected(out):
        comps = sorted((sorted(c) for c in nx.connected_components(out)), key=lambda c: c[0])
        preview = "; ".join(
            "{" + ",".join(map(str, c[:8])) + (",..." if len(c) > 8 else "") + "}" for c in comps[:4]
        )
        raise TopologyError(
            f"topology {where} is disconnected: {len(comps)} components "
            f"({preview}{'; ...' if len(comps) > 4 else ''}); agents must all be reachable"
        )
    return out


# --------------------------------------------------------------------------- #
# Files
# --------------------------------------------------------------------------- #


def _graph_from_node_link(data: Any, where: str) -> nx.Graph:
    """Build a graph from node-link data written by either networkx convention.

    Why: networkx < 3.4 wrote the edge list under "links", newer versions
    default to "edges"; files from both must load.
    """
    if not isinstance(data, Mapping):
        raise TopologyError(f"topology file {where} is not a node-link JSON object (top level is {type(data).__name__})")
    nodes = data.get("nodes")
    if not isinstance(nodes, list):
        raise TopologyError(f"topology file {where} has no 'nodes' list")
    if "links" in data and "edges" in data:
        raise TopologyError(f"topology file {where} has both 'links' and 'edges' keys; keep one")
    edges_key = "links" if "links" in data else "edges"
    payload = dict(data)
    payload.setdefault(edges_key, [])
    if not isinstance(payload[edges_key], list):
        raise TopologyError(f"topology file {where} has a non-list '{edges_key}' entry")
    if payload.get("directed", False):
        raise TopologyError(
            f"topology {where} is directed; khop links are bidirectional, write an undirected graph"
        )

    declared: list[Any] = []
    for i, entry in enumerate(nodes):
        if not isinstance(entry, Mapping) or "id" not in entry:
            raise TopologyError(f"node entry #{i} in {where} has no 'id'")
        declared.append(entry["id"])

    try:
        g = nx.node_link_graph(payload, directed=False, multigraph=False, edges=edges_key)
    except Exception as exc:  # malformed entries surface as KeyError/TypeError/...
        raise TopologyError(f"malformed node-link data in {where}: {type(exc).__name__}: {exc}") from exc

    declared_keys: set[tuple[str, Any]] = set()
    for raw in declared:
        key = (type(raw).__name__, raw)
        if key in declared_keys:
            raise TopologyError(f"node id {raw!r} is declared twice in {where}")
        declared_keys.add(key)
    for v in g.nodes():
        if (type(v).__name__, v) not in declared_keys:
            # node_link_graph silently creates nodes for unknown edge endpoints.
            raise TopologyError(f"edge references undeclared node {v!r} in {where}")
    return g


def load_topology(path: str | Path) -> nx.Graph:
    """Load and validate a topology file (node-link JSON, or GraphML by suffix).

    Returns a plain undirected ``nx.Graph`` with int nodes 0..N-1; node
    attributes (e.g. ``address``), edge attributes (e.g. ``delay_ms``,
    ``loss``) and graph attributes are preserved.
    """
    p = Path(path)
    where = str(p)
    if not p.is_file():
        raise TopologyError(f"topology file not found: {where}")

    if p.suffix.lower() in _GRAPHML_SUFFIXES:
        try:
            g = nx.read_graphml(p, node_type=str)
        except (ET.ParseError, nx.NetworkXError, ValueError, KeyError) as exc:
            raise TopologyError(f"cannot parse GraphML {where}: {exc}") from exc
        return _validate(g, where)

    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(f"cannot read topology file {where}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TopologyError(f"invalid JSON in {where}: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    return _validate(_graph_from_node_link(data, where), where)


def _json_default(obj: Any) -> Any:
    """Serialise numpy scalars/arrays and tuples that attributes may carry."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"attribute value {obj!r} of type {type(obj).__name__} is not JSON serialisable")


def save_topology(g: nx.Graph, path: str | Path) -> None:
    """Write ``g`` as node-link JSON (edges under "links", sorted, indent 1).

    Why the fixed format: shipped presets and the run directory's copy should
    diff cleanly and load under any networkx version.  The write is atomic
    (temp file + rename) so a crashed run never leaves half a topology behind.
    The graph is validated first: saving something load_topology would reject
    is a bug.
    """
    p = Path(path)
    if p.suffix.lower() in _GRAPHML_SUFFIXES:
        raise TopologyError(f"save_topology writes node-link JSON; use a .json path, not {p}")
    clean = _validate(g, str(p))
    data = nx.node_link_data(clean, edges="links")
    data["nodes"] = sorted(data["nodes"], key=lambda d: d["id"])
    for link in data["links"]:
        s, t = link["source"], link["target"]
        link["source"], link["target"] = min(s, t), max(s, t)
    data["links"] = sorted(data["links"], key=lambda d: (d["source"], d["target"]))
    try:
        text = json.dumps(data, indent=1, sort_keys=True, default=_json_default) + "\n"
    except (TypeError, ValueError) as exc:
        raise TopologyError(f"cannot serialise topology for {p}: {exc}") from exc

    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def shipped_topologies() -> list[str]:
    """Names (without extension) of the topology files shipped in this package."""
    return sorted(f.stem for f in _PACKAGE_DIR.glob("*.json"))


# --------------------------------------------------------------------------- #
# Generators
# --------------------------------------------------------------------------- #


def _grid_shape(n: int, rows: int | None, cols: int | None) -> tuple[int, int]:
    """Pick rows x cols = n; default rows is the largest divisor of n <= sqrt(n)."""
    for name, val in (("rows", rows), ("cols", cols)):
        if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < 1):
            raise TopologyError(f"grid {name} must be a positive integer, got {val!r}")
    if rows is None and cols is None:
        rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    elif rows is None:
        assert cols is not None
        if n % cols:
            raise TopologyError(f"grid cols={cols} does not divide n={n}")
        rows = n // cols
    if cols is None:
        if n % rows:
            raise TopologyError(f"grid rows={rows} does not divide n={n}")
        cols = n // rows
    if rows * cols != n:
        raise TopologyError(f"grid {rows}x{cols} has {rows * cols} nodes, not n={n}")
    return rows, cols


def generate(kind: str, n: int, **kw: Any) -> nx.Graph:
    """Build a standard topology with nodes 0..n-1.

    Kinds: ``line`` (path), ``ring`` (cycle; n <= 2 degrades to the line,
    since a 2-cycle would be a parallel edge), ``star`` (hub 0), ``complete``,
    ``grid`` (rows x cols, row-major ids; keyword ``rows`` and/or ``cols``).
    """
    if kind not in GENERATOR_KINDS:
        raise TopologyError(f"unknown topology kind {kind!r}; known kinds: {', '.join(GENERATOR_KINDS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise TopologyError(f"topology {kind!r} needs n >= 1 nodes, got {n!r}")
    allowed = {"rows", "cols"} if kind == "grid" else set()
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise TopologyError(f"unknown option(s) {', '.join(unknown)} for topology kind {kind!r}")

    g = nx.Graph()
    g.add_nodes_from(range(n))
    if kind == "line" or (kind == "ring" and n <= 2):
        g.add_edges_from((i, i + 1) for i in range(n - 1))
    elif kind == "ring":
        g.add_edges_from((i, (i + 1) % n) for i in range(n))
    elif kind == "star":
        g.add_edges_from((0, i) for i in range(1, n))
    elif kind == "complete":
        g.add_edges_from((i, j) for i in range(n) for j in range(i + 1, n))
    else:  # grid
        rows, cols = _grid_shape(n, kw.get("rows"), kw.get("cols"))
        g.graph.update(rows=rows, cols=cols)
        for r in range(rows):
            for c in range(cols):
                v = r * cols + c
                if c + 1 < cols:
                    g.add_edge(v, v + 1)
                if r + 1 < rows:
                    g.add_edge(v, v + cols)
    g.graph["generator"] = kind
    return g


_GRID_SPEC = re.compile(r"grid:(\d+)(?:x(\d+))?")


def resolve_topology(spec: str, n_agents: int) -> nx.Graph:
    """Turn a CLI ``--topology`` value into a validated graph for ``n_agents``.

    Resolution order: generator name (``ring``, ``grid``, ``grid:2x3``), then
    a shipped file name without extension (``halfcheetah-2x3``), then a path.
    Anything that looks like a path (has a separator or a .json/.graphml
    suffix) but does not exist is reported as a missing file.
    """
    if isinstance(n_agents, bool) or not isinstance(n_agents, int) or n_agents < 1:
        raise TopologyError(f"task must have at least 1 agent, got {n_agents!r}")
    spec = str(spec).strip()
    if not spec:
        raise TopologyError("empty topology spec")

    if spec in GENERATOR_KINDS:
        g = generate(spec, n_agents)
    elif spec.startswith("grid:"):
        m = _GRID_SPEC.fullmatch(spec)
        if not m:
            raise TopologyError(f"bad grid spec {spec!r}; expected grid:ROWSxCOLS, e.g. grid:2x3")
        rows = int(m.group(1))
        cols = int(m.group(2)) if m.group(2) else None
        if rows < 1 or (cols is not None and cols < 1):
            raise TopologyError(f"bad grid spec {spec!r}; rows and cols must be >= 1")
        size = rows * cols if cols is not None else None
        if size is not None and size != n_agents:
            raise TopologyError(f"topology {spec} has {size} nodes but task has {n_agents} agents")
        g = generate("grid", n_agents, rows=rows, cols=cols)
    elif spec in shipped_topologies():
        g = load_topology(_PACKAGE_DIR / f"{spec}.json")
    else:
        p = Path(spec).expanduser()
        looks_like_path = os.sep in spec or "/" in spec or p.suffix.lower() in _FILE_SUFFIXES
        if not p.exists() and not looks_like_path:
            raise TopologyError(
                f"unknown topology {spec!r}: not a generator ({', '.join(GENERATOR_KINDS)}), "
                f"not a shipped topology ({', '.join(shipped_topologies()) or 'none'}), and no such file"
            )
        g = load_topology(p)

    if g.number_of_nodes() != n_agents:
        raise TopologyError(f"topology {spec} has {g.number_of_nodes()} nodes but task has {n_agents} agents")
    return g


# --------------------------------------------------------------------------- #
# Queries
# --------------------------------------------------------------------------- #


def _check_node(g: nx.Graph, node: int) -> None:
    if node not in g:
        raise TopologyError(f"node {node!r} is not in the topology (nodes 0..{g.number_of_nodes() - 1})")


def khop_ball(g: nx.Graph, node: int, kappa: int) -> dict[int, int]:
    """Every node within ``kappa`` hops of ``node`` -> hop distance (self at 0).

    Own breadth-first search, stopped at depth kappa, so cost is proportional
    to the ball rather than the graph.  Result is ordered by (distance, id) to
    keep message schedules deterministic.
    """
    if isinstance(kappa, bool) or not isinstance(kappa, int):
        raise TopologyError(f"kappa must be an integer, got {kappa!r}")
    if kappa < 0:
        raise TopologyError(f"kappa must be >= 0, got {kappa}")
    _check_node(g, node)
    dist: dict[int, int] = {node: 0}
    frontier: deque[int] = deque([node])
    while frontier:
        u = frontier.popleft()
        d = dist[u]
        if d == kappa:
            continue
        for v in g.adj[u]:
            if v not in dist:
                dist[v] = d + 1
                frontier.append(v)
    return dict(sorted(dist.items(), key=lambda kv: (kv[1], kv[0])))


def khop_neighbourhoods(g: nx.Graph, kappa: int) -> dict[int, dict[int, int]]:
    """:func:`khop_ball` for every node, keyed by node id in ascending order."""
    return {v: khop_ball(g, v, kappa) for v in sorted(g.nodes())}


def diameter(g: nx.Graph) -> int:
    """Longest shortest-path length in hops (0 for a single node).

    Why here: kappa >= diameter means every agent sees the whole graph, which
    callers use to cap or sanity-check kappa.
    """
    if g.number_of_nodes() == 0:
        raise TopologyError("diameter of an empty topology is undefined")
    if not nx.is_connected(g):
        raise TopologyError(
            f"diameter undefined: topology is disconnected ({nx.number_connected_components(g)} components)"
        )
    return int(nx.diameter(g))


def neighbours(g: nx.Graph, node: int) -> list[int]:
    """Direct (1-hop) neighbours of ``node``, sorted ascending."""
    _check_node(g, node)
    return sorted(g.adj[node])
