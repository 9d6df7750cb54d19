"""One agent's life: join the envserver, then per env step relay κ-hop state with the neighbours,
learn when a rollout is full, act, and log.

The step order is fixed so every agent sees the same timeline:
STEP t arrives → the relay's exchange (κ rounds in sync mode, one in async) gives the κ-hop state
s_t → the reward of action t−1 completes the previous transition → a full rollout triggers an
update (bootstrapped on s_t) → act on obs_t (plus the neighbours' presence bits with --actor-mask).
"""
from __future__ import annotations

import dataclasses
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from envserver import protocol as P
from envserver.curve import SERVER_NAME, Curve, agent_name
from envserver.options import at_least, option, positive
from topologies import load_topology, neighbours

from .assembly import Team, build_core, relay_plan
from .comm import CommConfig
from .envlink import EnvLink
from .learner import Learner
from .links import NeighbourLinks, link_specs
from .relay import KHopRelay, RelayNode, actor_input, deadline_round_timeout_s, default_round_timeout_s
from .update_phase import LinkMailbox

log = logging.getLogger("agentd")

IDLE_MS = 200  # longest wait for the envserver before heartbeats and the HELLO check run again


@dataclass(kw_only=True)
class AgentConfig(CommConfig):
    """`agentd`'s options (the communication ones are CommConfig's); `khop run` writes them with
    compose/run/config.py process_args, from these same declarations."""
    agent: int = option(help="this agent's node id in the topology", flag="--id", parse=int)
    env: str = option(help="envserver endpoint, e.g. tcp://127.0.0.1:5555", parse=str)
    topology: Path = option(help="topology file whose nodes carry an 'address' (the agent's inbox endpoint; "
                                 "optional 'bind', what it binds)", parse=Path)
    kappa: int = option(1, "hops of state relayed to this agent's critic", check=at_least(0))
    algo: str = option("dpo", "learner (see `khop algos`)")
    seed: int = option(0, "seed of this agent's learner (with its id)")
    run_dir: Path = option(Path("run"), "the run directory; this agent writes agent-<id>/ in it")
    checkpoint_every: int = option(10, "updates between checkpoints", check=at_least(1))
    join_timeout_s: float = option(300.0, "seconds to wait for the envserver's WELCOME", flag="--join-timeout",
                                   check=positive)
    curve: Path | None = option(None, "CurveZMQ key directory (`khop keys`): encrypt every socket, admit only "
                                      "listed keys", parse=Path, metavar="DIR")
    overrides: list[str] = option(default_factory=list, help="learner hyperparameter, repeatable", flag="--set",
                                  repeat=True, metavar="KEY=VALUE")


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
        me, cfg = self.cfg.agent, self.cfg
        team = Team.from_welcome(welcome)
        if self.graph.number_of_nodes() != len(team.agents):
            raise ValueError(f"topology has {self.graph.number_of_nodes()} nodes but the task has "
                             f"{len(team.agents)} agents")
        self.E, self.spec = team.n_envs, team.agents[me]
        peers = {j: self.graph.nodes[j]["address"] for j in neighbours(self.graph, me)}
        plan = relay_plan(self.graph, cfg.kappa, cfg, team)
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
        self.relay = KHopRelay(RelayNode(me, plan), self.links, link_timeout_s=cfg.link_timeout_s,
                               round_timeout_s=round_timeout)
        self.core = build_core(me, cfg, self.graph, plan, team, self.relay.node, self.dir, self.incarnation,
                               LinkMailbox(self.links), self._comm_counters,
                               describe={"round_timeout_s": round_timeout,
                                         "links": {str(p): dataclasses.asdict(s) for p, s in my_links.items()}},
                               is_silent=lambda peer: peer in self.links.liveness.down)

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
        poller.register(self.links.inbox, zmq.POLLIN)
        # Emulated delays start on arrival, so with timed links neighbour frames are read as they come.
        # Otherwise a neighbour's STATE that comes before our STEP waits in the socket for the exchange
        # and the wait for the STEP is a blocking receive; heartbeats still go out at every timeout.
        try:
            while not self.stop_requested:
                if self.links.timed:
                    ready = dict(poller.poll(IDLE_MS))
                    self.links.pump()
                    msg = self.envlink.recv() if self.env in ready else None
                else:
                    msg = self.envlink.recv(IDLE_MS)
                    self.links.pump()
                if msg is None:
                    why = self.envlink.needs_hello()
                    if why:
                        log.warning("agent %d says HELLO again: %s", self.cfg.agent, why)
                        self.envlink.hello(resume=True)
                    continue
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
        mask = (P.check_array(msg, "mask", (self.E, self.spec.n_actions), np.uint8).astype(bool)
                if self.spec.action_mask else None)
        critic_in = self.relay.exchange(t, obs)
        a = msg.arrays
        action = self.core.step(t, actor_input(obs, self.relay.node, self.cfg.actor_mask), critic_in, a["reward"],
                                a["cost"], a["terminated"] | a["truncated"], mask)
        self.envlink.act(t, action)

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            self.stop_requested = True
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
