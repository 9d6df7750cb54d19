"""The assembly of one agent: relay plan, actor input, learner, update exchange and
learner_config.json, built the same way by the agent process (agentd/agent.py) and by the
in-process runner (compose/run/inprocess.py).

Why one function: the two modes must differ only in their transport (sockets or memory) and in
who owns the loop. Everything an agent *is* — what its critic and actor see, which learner and
exchange it runs, what it records about itself — is decided here, once, from the run's options
and what the envserver says about the task (:class:`Team`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from envserver.tasks.base import AgentSpec
from topologies import neighbours

from .comm import CommConfig, learner_overrides
from .core import AgentCore
from .relay import RelayNode, RelayPlan
from .update_phase import Mailbox


@dataclass(frozen=True)
class Team:
    """What the envserver's WELCOME tells every agent about the task."""
    task: str
    agents: Sequence[AgentSpec]
    n_envs: int
    cost_limits: tuple[float, ...]
    episode_length: int | None

    @classmethod
    def from_welcome(cls, welcome: Mapping[str, Any]) -> "Team":
        return cls(welcome["task"], [AgentSpec(**a) for a in welcome["agents"]], welcome["n_envs"],
                   tuple(welcome["cost_limits"]), welcome["episode_length"])

    @classmethod
    def from_spec(cls, spec: Any, n_envs: int) -> "Team":
        """The same facts from the task's own spec (in process, where there is no WELCOME)."""
        return cls(spec.name, list(spec.agents), n_envs, tuple(spec.cost_limits), spec.episode_length)


def relay_plan(graph: Any, kappa: int, comm: CommConfig, team: Team) -> RelayPlan:
    """The plan every agent of the run derives alike (who sends which rows when, in what dtype)."""
    return RelayPlan(graph, kappa, [a.obs_dim for a in team.agents], team.n_envs, comm.relay, comm.comm_budget,
                     comm.budget_max_period)


def actor_spec(spec: AgentSpec, n_neighbours: int, actor_mask: bool) -> AgentSpec:
    """What the actor reads: its own observation, plus its direct neighbours' presence bits with
    --actor-mask (a κ-hop actor reads the critic's input instead: the learner's ``actor_input``)."""
    return dataclasses.replace(spec, obs_dim=spec.obs_dim + n_neighbours) if actor_mask else spec


def update_protocol(me: int, graph: Any, plan: RelayPlan, seed: int, mailbox: Mailbox, learner: Any,
                    slot_s: float = 30.0, is_silent: Callable[[int], bool] = lambda _peer: False) -> Any:
    """The exchange ``learner`` takes part in at each update — a token walk for a sequential
    learner, a Q-value exchange for shadow-PG — or None when it updates alone. ``slot_s`` bounds
    each wait (the link timeout); ``is_silent`` says which neighbours not to wait for at all."""
    from .qvals import QExchange
    from .token_walk import TokenWalker

    if learner.sequential:
        return TokenWalker(me, graph, seed, mailbox, slot_s=slot_s, is_silent=is_silent)
    if learner.shares_q:
        return QExchange(me, plan, mailbox, slot_s=slot_s, is_silent=is_silent)
    return None


def build_core(me: int, cfg: Any, graph: Any, plan: RelayPlan, team: Team, node: RelayNode, agent_dir: Path,
               incarnation: int, mailbox: Mailbox, comm_counters: Callable[[], dict[str, Any]],
               describe: Mapping[str, Any] = (), is_silent: Callable[[int], bool] = lambda _peer: False) -> AgentCore:
    """Agent ``me``'s learner and its per-step logic. ``cfg`` holds the communication options and
    ``algo``, ``kappa``, ``seed``, ``overrides`` and ``checkpoint_every`` (an AgentConfig or a
    RunConfig); ``describe``: what the transport adds to learner_config.json."""
    return AgentCore(me, cfg.algo, actor_spec(team.agents[me], len(node.neighbours), cfg.actor_mask), node.critic_dim, len(team.agents), team.n_envs, team.task, cfg.seed,
                     learner_overrides(cfg.overrides, cfg.actor_input), agent_dir, cfg.checkpoint_every, incarnation,
                     comm_counters=comm_counters,
                     describe={"kappa": cfg.kappa, "neighbours": neighbours(graph, me),
                               "khop_ball": {str(k): v for k, v in node.ball.items()},
                               "comm_plan": plan.describe(me), "actor_mask": cfg.actor_mask, **dict(describe)},
                     cost_limits=team.cost_limits, episode_length=team.episode_length,
                     protocol_for=lambda learner: update_protocol(me, graph, plan, cfg.seed, mailbox, learner,
                                                                  slot_s=cfg.link_timeout_s, is_silent=is_silent))
