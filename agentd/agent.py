"""One agent's life: join the envserver, then per env step relay κ-hop state with the neighbours,
learn when a rollout is full, act, and log.

The step order is fixed so every agent sees the same timeline:
STEP t arrives → the relay's exchange (κ rounds in sync mode, one in async) gives the κ-hop state
s_t → the reward of action t−1 completes the previous transition → a full rollout triggers an
update (bootstrapped on s_t) → act on obs_t (plus the neighbours' presence bits with --actor-mask).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from envserver import protocol as P
from envserver.curve import SERVER_NAME, Curve, agent_name
from envserver.tasks.base import AgentSpec
from topologies import load_topology, neighbours

from .core import AgentCore
from .envlink import EnvLink
from .learner import Learner
from .links import LinkSpec, NeighbourLinks, link_specs
from .relay import (DEFAULT_MAX_PERIOD, KHopRelay, RelayNode, RelayPlan, actor_input, deadline_round_timeout_s,
                    default_round_timeout_s)
from .update_phase import LinkMailbox, update_protocol

log = logging.getLogger("agentd")


@dataclass
class AgentConfig:
    agent: int
    env: str  # envserver endpoint
    topology: Path  # the run's topology file: node attribute "address" is each agent's inbox (optional "bind")
    kappa: int = 1
    algo: str = "dpo"
    run_dir: Path = Path("run")
    seed: int = 0
    overrides: dict = field(default_factory=dict)
    checkpoint_every: int = 10  # updates
    link_timeout_s: float = 30.0
    join_timeout_s: float = 300.0
    relay: str = "sync"  # "sync" | "async" (agentd/relay.py)
    comm_budget: float | None = None  # bytes per agent per env step (one transition of one env copy)
    budget_max_period: int = DEFAULT_MAX_PERIOD
    link: LinkSpec = LinkSpec()  # emulated defaults for every link; topology edge attributes override
    round_timeout_s: float | None = None  # None: derived (see relay.default_round_timeout_s)
    actor_mask: bool = False  # actor input = own obs + direct neighbours' presence bits
    heartbeat_timeout_s: float = 5.0  # a neighbour silent this long within an exchange is down (agentd/liveness.py)
    curve: Path | None = None  # CurveZMQ key directory (envserver/curve.py); None: plaintext


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.dir = cfg.run_dir / f"agent-{cfg.agent}"
        graph = load_topology(cfg.topology)
        if cfg.agent not in graph:
            raise ValueError(f"agent {cfg.agent} is not a node of topology {cfg.topology}")
        self.graph = graph
        self.ctx = zmq.Context()
        self.curve = Curve(cfg.curve, agent_name(cfg.agent)) if cfg.curve is not None else None
        self.stop_requested = False
        self.incarnation = int(time.time() * 1000) % 2**31  # tells rows of a restarted process apart
        self.envlink = EnvLink(self.ctx, cfg.env, cfg.agent, self.incarnation,
                              secure=None if self.curve is None else
                              lambda sock: self.curve.connect_to(sock, SERVER_NAME))
        self.env = self.envlink.sock

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
        cfg = self.cfg
        plan = RelayPlan(self.graph, cfg.kappa, [s.obs_dim for s in specs], self.E, cfg.relay, cfg.comm_budget,
                         cfg.budget_max_period)
        # every agent derives the same slot length from the whole graph, so the round slots line up
        every_link = {(u, v): spec for u in self.graph for v, spec in link_specs(self.graph, u, cfg.link).items()}
        slot_limit = deadline_round_timeout_s(plan, welcome["deadline_s"])
        round_timeout = (cfg.round_timeout_s or default_round_timeout_s(plan, every_link)
                         or min(cfg.link_timeout_s, slot_limit))
        if round_timeout > slot_limit:  # waiting out a dead neighbour's slots would miss the deadline
            log.warning("round timeout %.3f s is longer than this run allows (%.3f s: the rounds of a step "
                        "may take half the envserver's %g s deadline); using %.3f s", round_timeout, slot_limit,
                        welcome["deadline_s"], slot_limit)
            round_timeout = slot_limit
        my_links = link_specs(self.graph, me, cfg.link)
        node = self.graph.nodes[me]  # "bind", where set (containers: tcp://*:PORT), is what this agent binds
        self.links = NeighbourLinks(self.ctx, me, node.get("bind", node["address"]), peers,
                                    emulation=my_links, seed=cfg.seed, budget=plan.token_bucket(),
                                    heartbeat_timeout_s=cfg.heartbeat_timeout_s, curve=self.curve)
        relay_node = RelayNode(me, plan)
        self.relay = KHopRelay(relay_node, self.links, link_timeout_s=cfg.link_timeout_s,
                               round_timeout_s=round_timeout)
        actor_spec = self.spec
        if cfg.actor_mask:
            actor_spec = dataclasses.replace(self.spec, obs_dim=self.spec.obs_dim + len(relay_node.neighbours))
        ball = relay_node.ball
        protocol_for = functools.partial(update_protocol, me, self.graph, plan, cfg.seed,
                                         LinkMailbox(self.links, self.relay), slot_s=cfg.link_timeout_s,
                                         is_silent=lambda peer: peer in self.links.liveness.down)
        self.core = AgentCore(me, cfg.algo, actor_spec, self.relay.critic_dim, n, self.E, welcome["task"],
                              cfg.seed, cfg.overrides, self.dir, cfg.checkpoint_every,
                              self.incarnation, comm_counters=self._comm_counters,
                              describe={"kappa": cfg.kappa, "neighbours": sorted(peers),
                                        "khop_ball": {str(k): v for k, v in ball.items()},
                                        "comm_plan": plan.describe(me), "round_timeout_s": round_timeout,
                                        "links": {str(p): dataclasses.asdict(s) for p, s in my_links.items()},
                                        "actor_mask": cfg.actor_mask},
                              cost_limits=welcome["cost_limits"], episode_length=welcome["episode_length"],
                              protocol_for=protocol_for)

    def _comm_counters(self) -> dict:
        return {**self.links.counters.totals(), **self.links.counters.by_phase(), **self.relay.stats(),
                "msgs_sent_update_to": self.links.counters.sent_to("update"), **self.links.link_stats()}

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        resume = Learner.latest_checkpoint(self.dir / "checkpoints") is not None
        welcome = self.envlink.join(resume, self.cfg.join_timeout_s, lambda: self.stop_requested)
        self._setup(welcome)
        if self.core.resumed_from is not None:
            log.info("agent %d resumed from %s", self.cfg.agent, self.core.resumed_from.name)
        reason = "stopped"
        poller = zmq.Poller()
        poller.register(self.env, zmq.POLLIN)
        if self.links.timed:  # emulated delays start on arrival: read neighbour frames as they come
            poller.register(self.links.inbox, zmq.POLLIN)
        # otherwise a neighbour's STATE that comes before our STEP waits in the socket for the
        # exchange (one wake-up less per step); heartbeats still go out at every poll timeout
        try:
            while not self.stop_requested:
                ready = dict(poller.poll(200))
                self.links.pump()
                if self.env not in ready:
                    why = self.envlink.needs_hello()
                    if why:
                        log.warning("agent %d says HELLO again: %s", self.cfg.agent, why)
                        self.envlink.hello(resume=True)
                    continue
                msg = P.decode(self.env.recv_multipart(copy=True))
                self.envlink.heard()
                if msg.type == "BYE":
                    reason = msg["reason"]
                    break
                if msg.type == "ERROR":
                    log.warning("envserver: %s", msg["reason"])
                elif msg.type == "WELCOME":
                    if self.envlink.welcomed(msg):
                        log.warning("agent %d rejoined a restarted envserver (incarnation %d)", self.cfg.agent,
                                    msg["incarnation"])
                elif msg.type == "STEP":
                    self._on_step(msg)
        finally:
            try:
                self.core.close()  # the final checkpoint, which a full disk refuses
            finally:
                self.links.close()
                self.envlink.close()
                if self.curve is not None:
                    self.curve.close()
                self.ctx.term()
        log.info("agent %d finished: %s", self.cfg.agent, reason)
        return 0

    def _on_step(self, msg: P.Message) -> None:
        t = msg["t"]
        if t <= self.core.last_t:  # a STEP re-sent when we said HELLO again: already answered
            return
        obs = P.check_array(msg, "obs", (self.E, self.spec.obs_dim), np.float32)
        critic_in = self.relay.exchange(t, obs)
        a = msg.arrays
        action = self.core.step(t, actor_input(obs, self.relay.node, self.cfg.actor_mask), critic_in, a["reward"],
                                a["cost"], a["terminated"] | a["truncated"])
        P.send(self.env, P.encode("ACT", {"agent": self.cfg.agent, "t": t}, {"action": action}), block=True)
        self.envlink.sent()

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            self.stop_requested = True
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
