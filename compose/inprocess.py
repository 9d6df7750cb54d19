"""`khop run --inprocess`: the same task and the same learner code for every agent, in one process,
with no sockets.

It is the yardstick for what decentralization costs (same work, no messages) and a debugging aid:
each agent's κ-hop critic input is assembled from ground truth with the relay's own layout
function, and each agent is driven by the same :class:`AgentCore` as the distributed `agentd`, so
for the same seed both modes produce the same first-episode trajectories.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from agentd.core import AgentCore, pin_threads
from agentd.relay import assemble_critic_input
from envserver.episodes import EpisodeLog
from envserver.tasks import make_task
from topologies import khop_ball, neighbours

from .progress import ProgressBar

NO_TRAFFIC = {"bytes_sent": 0, "bytes_received": 0, "msgs_sent": 0, "msgs_received": 0}


def run_inprocess(cfg, spec, graph, run_dir: Path, should_stop=lambda: False) -> None:
    """Train like `khop run` would, writing the same run-directory files (minus logs and sockets)."""
    pin_threads()
    task = make_task(cfg.task, n_envs=cfg.envs, seed=cfg.seed)
    E, n = cfg.envs, spec.n_agents
    dims = [a.obs_dim for a in spec.agents]
    balls = [khop_ball(graph, i, cfg.kappa) for i in range(n)]
    ball_dims = [{o: dims[o] for o in ball} for ball in balls]
    overrides = dict(item.split("=", 1) for item in cfg.overrides)
    cores = [AgentCore(i, cfg.algo, spec.agents[i], sum(ball_dims[i].values()) + len(ball_dims[i]), n, E,
                       cfg.task, cfg.seed, overrides, run_dir / f"agent-{i}", cfg.checkpoint_every, incarnation=0,
                       comm_counters=lambda: dict(NO_TRAFFIC),
                       describe={"kappa": cfg.kappa, "neighbours": neighbours(graph, i),
                                 "khop_ball": {str(k): v for k, v in balls[i].items()}, "inprocess": True})
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
            actions = []
            for i, core in enumerate(cores):
                critic_in = assemble_critic_input(ball_dims[i], {o: obs[o] for o in balls[i]}, E)
                actions.append(core.step(t, obs[i], critic_in, reward, cost[i], done))
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
