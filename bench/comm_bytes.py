"""Bytes per agent per env step that the κ-hop relay puts on the wire, by task, κ, relay mode and
budget — measured by exchanging real STATE frames through the in-process network (same plan,
encoder, quantisation, token buckets and wire-size counting as over sockets; no learning).

    python bench/comm_bytes.py                                    # default table (a few seconds)
    python bench/comm_bytes.py --task safe-halfcheetah-6x1 --kappa 0,1,2,5 --budget none,100,40

Columns: the plan the budget policy chose (row precision / send period / hops relayed), the
measured mean and the largest single-lockstep bytes per agent per env step (mean over agents and
the busiest agent), and the mean presence of the κ-ball in the critic input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentd.memory_network import MemoryNetwork  # noqa: E402
from agentd.relay import RelayPlan  # noqa: E402
from envserver.tasks import task_spec  # noqa: E402
from topologies import resolve_topology  # noqa: E402


def measure(task: str, kappa: int, mode: str, budget: float | None, envs: int, steps: int, topology: str = ""):
    spec = task_spec(task)
    graph = resolve_topology(topology or spec.topology, spec.n_agents)
    dims = [a.obs_dim for a in spec.agents]
    plan = RelayPlan(graph, kappa, dims, envs, mode, budget)
    net = MemoryNetwork(plan)
    rng = np.random.default_rng(0)
    for t in range(steps):
        net.exchange(t, [rng.standard_normal((envs, d)).astype(np.float32) for d in dims])
    sent = np.array([sum(c.bytes_sent.values()) for c in net.counters]) / (steps * envs)
    presence = np.mean([n.stats()["presence_mean"] for n in net.nodes])
    return plan, float(sent.mean()), float(sent.max()), float(presence)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="coop-game,safe-halfcheetah-6x1")
    p.add_argument("--kappa", default="0,1,2,3")
    p.add_argument("--relay", default="sync,async")
    p.add_argument("--budget", default="none,500,200,50")
    p.add_argument("--envs", type=int, default=16)
    p.add_argument("--steps", type=int, default=48, help="lockstep exchanges measured (a multiple of 1..4)")
    args = p.parse_args(argv)
    budgets = [None if b.strip().lower() == "none" else float(b) for b in args.budget.split(",")]
    print(f"E = {args.envs} env copies; bytes are wire bytes (msgpack header + buffers + ZMTP framing) "
          "per agent per env step")
    print("| task | κ | relay | budget | plan | bytes/agent-step (mean) | (busiest agent) | presence |")
    print("|---|---|---|---|---|---|---|---|")
    for task in args.task.split(","):
        for kappa in map(int, args.kappa.split(",")):
            for mode in args.relay.split(","):
                for budget in budgets:
                    plan, mean, busiest, presence = measure(task, kappa, mode, budget, args.envs, args.steps)
                    lv = plan.level
                    print(f"| {task} | {kappa} | {mode} | {'none' if budget is None else f'{budget:g}'} | "
                          f"{lv.dtype}/every {lv.period}/{lv.hops} hops | {mean:,.1f} | {busiest:,.1f} | "
                          f"{presence:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
