"""Section (d): wire bytes per agent per env step on real sockets, against the payload floor.

The floor is the raw bytes of the κ-hop payload: every agent j must receive, each env step and
env copy, the observation row of every other agent in its κ-ball, at 4 bytes a float — whatever
the protocol, at least Σ_j Σ_{o ∈ ball(j), o ≠ j} obs_dim(o) · 4 bytes cross some link (a relay
that is itself in the ball needs the row anyway, so nothing travels twice). Per agent: that sum / N.
The measurement is each agent's ``bytes_sent_rollout`` (msgpack header + raw buffers + ZMTP
frame headers, agentd/links.py) over its relay exchanges, from the metrics row of one short
update — the only time an agent writes its counters.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable, Iterator

from compose.run.config import RunConfig
from compose.report import read_jsonl
from envserver.tasks import task_spec
from topologies import khop_ball, resolve_topology

from .measure import run_distributed

ROLLOUT = 16  # lockstep rounds before the one update whose metrics row carries the counters


def payload_floor(task: str, kappa: int, topology: str = "") -> float:
    """Raw κ-hop payload bytes per agent per env step (see the module docstring)."""
    spec = task_spec(task)
    graph = resolve_topology(topology or spec.topology, spec.n_agents)
    total = sum(spec.agents[o].obs_dim * 4 for j in graph for o in khop_ball(graph, j, kappa) if o != j)
    return total / spec.n_agents


def measured_bytes(run_dir: Path, n_agents: int, envs: int) -> float | None:
    """Mean over agents of rollout-phase bytes sent per relay exchange per env copy."""
    per_agent = []
    for i in range(n_agents):
        rows = read_jsonl(run_dir / f"agent-{i}" / "metrics.jsonl")  # a torn last line is skipped
        row = rows[-1] if rows else None
        if not row or not row.get("exchanges"):
            return None
        per_agent.append(row["bytes_sent_rollout"] / (row["exchanges"] * envs))
    return statistics.mean(per_agent)


def measure_wire(task: str, kappa: int, envs: int, root: Path, log: Callable[[str], None] = print,
                 topology: str = "") -> dict[str, Any]:
    cfg = RunConfig(task=task, algo="dpo", kappa=kappa, envs=envs, steps=envs * (ROLLOUT + 1), topology=topology,
                    run_dir=root / f"wire-{task}-k{kappa}-E{envs}",
                    overrides=[f"rollout_len={ROLLOUT}", "epochs=1", "minibatches=1"])
    res = run_distributed(cfg)
    n = task_spec(task).n_agents
    measured = measured_bytes(Path(res["run_dir"]), n, envs)
    floor = payload_floor(task, kappa, topology)
    row = {"task": task, "topology": topology or task_spec(task).topology, "kappa": kappa, "envs": envs,
           "bytes_per_agent_step": measured, "floor_bytes_per_agent_step": floor,
           "ratio": measured / floor if measured is not None and floor else None, "load_1m": res["load_1m"],
           "failed": res["failed"]}
    log(f"  wire {task} κ={kappa} E={envs}: {measured or 0:,.1f} B vs floor {floor:,.1f} B "
        f"(×{row['ratio'] or float('nan'):.3f})")
    return row


def run_wire(cells: list[tuple[str, int, int]], root: Path, log: Callable[[str], None] = print) -> Iterator[dict[str, Any]]:
    """One row per (task, κ, E), yielded as soon as it is measured."""
    for task, kappa, envs in cells:
        yield measure_wire(task, kappa, envs, root, log)


