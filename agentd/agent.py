"""One agent's life: join the envserver, then per env step relay κ-hop state with the neighbours,
learn when a rollout is full, act, and log.

The step order is fixed so every agent sees the same timeline:
STEP t arrives → κ exchange rounds give the κ-hop state s_t → the reward of action t−1 completes
the previous transition → a full rollout triggers an update (bootstrapped on s_t) → act on obs_t.
"""
from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from envserver import protocol as P
from envserver.tasks.base import AgentSpec
from topologies import khop_ball, load_topology, neighbours

from .core import AgentCore
from .learner import Learner
from .links import NeighbourLinks
from .relay import KHopRelay

log = logging.getLogger("agentd")


@dataclass
class AgentConfig:
    agent: int
    env: str  # envserver endpoint
    topology: Path  # the run's topology file: node attribute "address" is each agent's inbox
    kappa: int = 1
    algo: str = "dpo"
    run_dir: Path = Path("run")
    seed: int = 0
    overrides: dict = field(default_factory=dict)
    checkpoint_every: int = 10  # updates
    link_timeout_s: float = 30.0
    join_timeout_s: float = 300.0


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.dir = cfg.run_dir / f"agent-{cfg.agent}"
        graph = load_topology(cfg.topology)
        if cfg.agent not in graph:
            raise ValueError(f"agent {cfg.agent} is not a node of topology {cfg.topology}")
        self.graph = graph
        self.ctx = zmq.Context()
        self.env = self.ctx.socket(zmq.DEALER)
        self.env.setsockopt(zmq.LINGER, 0)
        self.env.setsockopt(zmq.MAXMSGSIZE, P.DEFAULT_MAX_MESSAGE_BYTES)
        self.env.connect(cfg.env)
        self.stop_requested = False
        self.incarnation = int(time.time() * 1000) % 2**31  # tells rows of a restarted process apart

    # --- joining ---------------------------------------------------------------------------
    def join(self, resume: bool) -> P.Message:
        hello = P.encode("HELLO", {"agent": self.cfg.agent, "version": P.PROTOCOL_VERSION, "resume": resume,
                                   "incarnation": self.incarnation})
        end = time.monotonic() + self.cfg.join_timeout_s
        self.env.send_multipart(hello)
        while time.monotonic() < end and not self.stop_requested:
            if not self.env.poll(200):
                continue
            msg = P.decode(self.env.recv_multipart())
            if msg.type == "WELCOME":
                return msg
            if msg.type == "ERROR":
                raise RuntimeError(f"envserver refused HELLO: {msg['reason']}")
        raise TimeoutError(f"no WELCOME from {self.cfg.env} within {self.cfg.join_timeout_s:.0f} s")

    def _setup(self, welcome: P.Message) -> None:
        me = self.cfg.agent
        n = welcome["n_agents"]
        if self.graph.number_of_nodes() != n:
            raise ValueError(f"topology has {self.graph.number_of_nodes()} nodes but the task has {n} agents")
        self.E = welcome["n_envs"]
        specs = [AgentSpec(**a) for a in welcome["agents"]]
        self.spec = specs[me]
        self.n_costs = len(welcome["cost_names"])
        peers = {j: self.graph.nodes[j]["address"] for j in neighbours(self.graph, me)}
        self.links = NeighbourLinks(self.ctx, me, self.graph.nodes[me]["address"], peers)
        ball = khop_ball(self.graph, me, self.cfg.kappa)
        self.relay = KHopRelay(me, self.cfg.kappa, ball, {j: s.obs_dim for j, s in enumerate(specs)},
                               self.links, self.E, timeout_s=self.cfg.link_timeout_s)
        self.core = AgentCore(me, self.cfg.algo, self.spec, self.relay.critic_dim, n, self.E, welcome["task"],
                              self.cfg.seed, self.cfg.overrides, self.dir, self.cfg.checkpoint_every,
                              self.incarnation, comm_counters=self._comm_counters,
                              describe={"kappa": self.cfg.kappa, "neighbours": sorted(peers),
                                        "khop_ball": {str(k): v for k, v in ball.items()}})

    def _comm_counters(self) -> dict:
        return {**self.links.counters.totals(), **self.links.counters.by_phase(),
                "neighbours_silent": len(self.relay.silent)}

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        resume = Learner.latest_checkpoint(self.dir / "checkpoints") is not None
        welcome = self.join(resume=resume)
        self._setup(welcome)
        if self.core.resumed_from is not None:
            log.info("agent %d resumed from %s", self.cfg.agent, self.core.resumed_from.name)
        reason = "stopped"
        try:
            while not self.stop_requested:
                if not self.env.poll(200):
                    continue
                msg = P.decode(self.env.recv_multipart(copy=True))
                if msg.type == "BYE":
                    reason = msg["reason"]
                    break
                if msg.type == "ERROR":
                    log.warning("envserver: %s", msg["reason"])
                elif msg.type == "STEP":
                    self._on_step(msg)
        finally:
            self.core.close()
            self.links.close()
            self.env.close(linger=0)
            self.ctx.term()
        log.info("agent %d finished: %s", self.cfg.agent, reason)
        return 0

    def _on_step(self, msg: P.Message) -> None:
        t = msg["t"]
        obs = P.check_array(msg, "obs", (self.E, self.spec.obs_dim), np.float32)
        critic_in = self.relay.exchange(t, obs)
        a = msg.arrays
        action = self.core.step(t, obs, critic_in, a["reward"], a["cost"], a["terminated"] | a["truncated"])
        self.env.send_multipart(P.encode("ACT", {"agent": self.cfg.agent, "t": t}, {"action": action}),
                                copy=False)

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            self.stop_requested = True
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
