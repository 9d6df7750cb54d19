"""`khop run --inprocess`: every agent in one process, with no sockets — the yardstick for what
decentralization costs and a debugging aid. Each agent is built by the same assembly as `agentd`
(agentd/assembly.py) and the envserver's lockstep is the same (envserver/lockstep.py); only the
transport differs: the relay nodes exchange the very same STATE frames through an in-memory
network (agentd/memory_network.py: same plan, budget, float16 quantisation, seeded loss and byte
counters), so for the same seed both modes produce the same episodes (sync relay, reliable
links). Emulated delay, jitter and bandwidth need a clock and are refused here.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from agentd.assembly import Team, build_core, relay_plan
from agentd.core import AgentCore, pin_threads
from agentd.links import link_specs
from agentd.memory_network import MemoryNetwork
from agentd.relay import actor_input
from agentd.update_phase import MemoryPost
from envserver.lockstep import Lockstep
from envserver.tasks import make_task

from .progress import ProgressBar


def run_inprocess(cfg: Any, spec: Any, graph: Any, run_dir: Path, should_stop: Callable[[], bool] = lambda: False) -> None:
    """Train like `khop run` would (``cfg`` a validated RunConfig, ``spec`` its task's spec), writing
    the same run-directory files (minus logs and sockets)."""
    pin_threads()
    team = Team.from_spec(spec, cfg.envs)
    plan = relay_plan(graph, cfg.kappa, cfg, team)
    net = MemoryNetwork(plan, {(src, dst): s for dst in graph for src, s in link_specs(graph, dst, cfg.link).items()},
                        seed=cfg.seed)
    post = MemoryPost(net)
    cores = [build_core(i, cfg, graph, plan, team, net.nodes[i], run_dir / f"agent-{i}", 0, post.mailbox(i),
                        lambda i=i: net.comm_counters(i), describe={"inprocess": True})
             for i in range(spec.n_agents)]
    lockstep = Lockstep(make_task(cfg.task, n_envs=cfg.envs, seed=cfg.seed, physics_threads=cfg.physics_threads),
                        run_dir / "envserver", cfg.steps)
    bar = ProgressBar(cfg.steps) if cfg.progress else None
    try:
        res = lockstep.reset()
        while not lockstep.finished and not should_stop():
            critic_ins = net.exchange(lockstep.t, res.obs)
            done = res.terminated | res.truncated
            due = [core.observe(lockstep.t, res.reward, res.cost[i], done) for i, core in enumerate(cores)]
            if any(due):
                update_all(cores, due, lockstep.t, critic_ins)
            res = lockstep.step([core.act(lockstep.t, actor_input(res.obs[i], net.nodes[i], cfg.actor_mask),
                                          critic_ins[i], agent_mask(res, i)) for i, core in enumerate(cores)])
            if bar is not None and lockstep.t % 20 == 0:
                bar.update(lockstep.env_step, None, None)
    finally:
        for core in cores:
            core.close()
        if bar is not None:
            bar.close()
        lockstep.write_status(list(range(spec.n_agents)), True, errors=0, inprocess=True)
        lockstep.close()


def agent_mask(res: Any, agent: int) -> np.ndarray | None:
    """Agent i's action mask of this step, as its STEP would carry it (None for a task without masks)."""
    return None if res.mask is None else res.mask[agent]


def update_all(cores: list[AgentCore], due: list[bool], t: int, critic_ins: list[np.ndarray]) -> None:
    """This lockstep's updates: learners with an update exchange (token walk, Q-values) all
    together, their messages delivered in memory in the order the sockets would carry them; the
    others each on its own, as their agentd would."""
    protocols = [c.protocol for c in cores]
    if all(due) and all(p is not None for p in protocols):
        started = time.monotonic()
        stats = type(protocols[0]).drive(protocols, [c.learner for c in cores], critic_ins,
                                         int(cores[0].learner.n_updates))
        for core, s in zip(cores, stats):
            core.record_update(t, s, time.monotonic() - started)
        return
    for core, critic_in, d in zip(cores, critic_ins, due):
        if d:
            core.update(t, critic_in)
