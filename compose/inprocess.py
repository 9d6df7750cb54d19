"""`khop run --inprocess`: the same task and the same learner code for every agent, in one process,
with no sockets.

It is the yardstick for what decentralization costs (same work, no sockets) and a debugging aid:
the agents' relay nodes (agentd/relay.py) exchange the very same STATE frames through an
in-memory network — same plan, same budget and token buckets, same float16 quantisation, same
seeded loss, same wire-byte counters — and each agent is driven by the same :class:`AgentCore` as
the distributed `agentd`, so for the same seed both modes produce the same episodes (sync relay,
reliable links) and the in-process metrics report the traffic the distributed run would send.
Emulated delay, jitter and bandwidth need a clock and are refused here.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from agentd.core import AgentCore, pin_threads
from agentd.links import link_specs
from agentd.comm import learner_overrides
from agentd.memory_network import MemoryNetwork
from agentd.relay import RelayPlan, actor_input
from agentd.update_phase import MemoryPost, update_protocol
from envserver.episodes import EpisodeLog
from envserver.tasks import make_task
from topologies import neighbours

from .progress import ProgressBar


def run_inprocess(cfg, spec, graph, run_dir: Path, should_stop=lambda: False) -> None:
    """Train like `khop run` would, writing the same run-directory files (minus logs and sockets)."""
    pin_threads()
    task = make_task(cfg.task, n_envs=cfg.envs, seed=cfg.seed)
    E, n = cfg.envs, spec.n_agents
    plan = RelayPlan(graph, cfg.kappa, [a.obs_dim for a in spec.agents], E, cfg.relay, cfg.comm_budget,
                     cfg.budget_max_period)
    net = MemoryNetwork(plan, {(src, dst): s for dst in range(n) for src, s in link_specs(graph, dst, cfg.link).items()},
                        seed=cfg.seed)
    overrides = learner_overrides(cfg.overrides, cfg.actor_input)

    def actor_spec(i: int):
        a = spec.agents[i]
        return dataclasses.replace(a, obs_dim=a.obs_dim + len(net.nodes[i].neighbours)) if cfg.actor_mask else a

    post = MemoryPost(net)
    cores = [AgentCore(i, cfg.algo, actor_spec(i), net.nodes[i].critic_dim, n, E,
                       cfg.task, cfg.seed, overrides, run_dir / f"agent-{i}", cfg.checkpoint_every, incarnation=0,
                       comm_counters=lambda i=i: net.comm_counters(i),
                       describe={"kappa": cfg.kappa, "neighbours": neighbours(graph, i),
                                 "khop_ball": {str(k): v for k, v in net.nodes[i].ball.items()}, "inprocess": True,
                                 "comm_plan": plan.describe(i), "actor_mask": cfg.actor_mask},
                       cost_limits=spec.cost_limits, episode_length=spec.episode_length,
                       protocol_for=lambda learner, i=i: update_protocol(i, graph, plan, cfg.seed, post.mailbox(i),
                                                                         learner))
             for i in range(n)]
    env_dir = run_dir / "envserver"
    env_dir.mkdir(parents=True, exist_ok=True)
    episodes = EpisodeLog(env_dir / "episodes.jsonl", E, spec.n_costs)
    bar = ProgressBar(cfg.steps) if cfg.progress else None
    obs = task.reset()
    started = time.time()
    reward = np.zeros(E, dtype=np.float32)
    cost = [np.zeros((E, spec.n_costs), dtype=np.float32)] * n
    done = np.zeros(E, dtype=bool)
    t = env_step = 0
    try:
        while env_step < cfg.steps and not should_stop():
            critic_ins = net.exchange(t, obs)
            due = [core.observe(t, reward, cost[i], done) for i, core in enumerate(cores)]
            if any(due):
                update_all(cores, due, t, critic_ins)
            actions = [core.act(t, actor_input(obs[i], net.nodes[i], cfg.actor_mask), critic_ins[i])
                       for i, core in enumerate(cores)]
            res = task.step(actions)
            t += 1
            env_step += E
            obs, reward, cost, done = res.obs, res.reward, res.cost, res.terminated | res.truncated
            episodes.account(env_step, reward, cost, done)
            if bar is not None and t % 20 == 0:
                bar.update(env_step, None, None)
    finally:
        for core in cores:
            core.close()
        episodes.close()
        if bar is not None:
            bar.close()
        status = {"env_step": env_step, "t": t, "live": list(range(n)), "errors": 0, "max_env_steps": cfg.steps,
                  "done": True, "time": time.time(), "started_at": started, "inprocess": True}
        (env_dir / "status.json").write_text(json.dumps(status))
        task.close()


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
