"""khop communication topologies.

A topology is an undirected, connected ``networkx.Graph`` whose nodes are the
agent ids 0..N-1; an edge means the two agent processes may exchange messages.
The CLI turns its ``--topology`` value into a graph with
:func:`resolve_topology` (generator name such as ``ring`` or ``grid:2x3``,
a shipped preset name, or a path to a node-link JSON / GraphML file).

Shipped presets (``topologies/*.json``):

* ``halfcheetah-2x3`` -- 2 agents for Safe HalfCheetah 2x3: agent 0 drives the
  back leg (bthigh, bshin, bfoot), agent 1 the front leg (fthigh, fshin,
  ffoot); one edge, the legs being coupled through bthigh--fthigh.
* ``coop-game`` -- the default topology for the cooperative game: 6 agents on
  a ring.
"""

from .graph import (
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

__all__ = [
    "GENERATOR_KINDS",
    "TopologyError",
    "diameter",
    "generate",
    "khop_ball",
    "khop_neighbourhoods",
    "load_topology",
    "neighbours",
    "resolve_topology",
    "save_topology",
    "shipped_topologies",
]
