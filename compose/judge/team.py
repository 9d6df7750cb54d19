"""A run's trained agents, rebuilt from their checkpoints and played through the relay they trained with.

Why rebuild rather than read weights: each agent's ``learner_config.json`` records the algorithm,
its critic input size and every hyperparameter it ran with, so :func:`~agentd.learner.make_learner`
builds the very learner the agent had and ``load_checkpoint`` restores all of it (normalisers
included). The relay is the run's own: the same :class:`~agentd.relay.RelayPlan` (graph, κ, relay
mode, budget level) driven in memory by :class:`~agentd.memory_network.MemoryNetwork`, as
``khop run --inprocess`` drives it, so a κ-hop actor and ``--actor-mask`` see what they saw in
training. Emulated loss is kept (seeded per link); delay, jitter and bandwidth need a clock and are
left out, which changes nothing on a sync relay whose rounds complete.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentd.learner import Learner, LearnerConfig, make_learner
from agentd.learner.checkpoint import checkpoint_name, list_checkpoints
from agentd.core import pin_threads
from agentd.links import LinkSpec, link_specs
from agentd.memory_network import MemoryNetwork
from agentd import assembly
from agentd.relay import actor_input
from envserver.tasks import StepResult, TaskSpec, VecTask, make_task, task_spec
from topologies import TopologyError, resolve_topology

from ..run.config import recorded_config


class JudgeError(ValueError):
    """A run that cannot be played or judged; the message is the one line the user sees."""


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise JudgeError(f"{what}: {path} is missing") from None
    except (OSError, ValueError) as err:
        raise JudgeError(f"{what}: {path} is unreadable ({first_line(err)})") from None
    if not isinstance(data, dict):
        raise JudgeError(f"{what}: {path} does not hold a JSON object")
    return data


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@dataclass
class Team:
    """Every agent's learner at one checkpoint, with what is needed to play them."""

    run_dir: Path
    cfg: dict[str, Any]  # the run's config.json
    spec: TaskSpec
    graph: Any
    learners: list[Learner]
    checkpoints: list[Path]

    @property
    def updates(self) -> list[int]:
        return [int(lr.n_updates) for lr in self.learners]

    def network(self, n_envs: int, seed: int) -> MemoryNetwork:
        """A fresh in-memory relay for ``n_envs`` copies with the run's plan and emulated loss."""
        run = recorded_config(self.cfg)  # the run's options, with their declared defaults where not recorded
        plan = assembly.relay_plan(self.graph, run.kappa, run, assembly.Team.from_spec(self.spec, n_envs))
        loss_only = LinkSpec(loss=run.link_loss)
        emulation = {(src, dst): dataclasses.replace(s, delay_ms=0.0, jitter_ms=0.0, bandwidth_bps=0.0)
                     for dst in self.graph.nodes for src, s in link_specs(self.graph, dst, loss_only).items()}
        net = MemoryNetwork(plan, emulation, seed=seed)
        for i, learner in enumerate(self.learners):
            if net.nodes[i].critic_dim != learner.critic_dim:
                raise JudgeError(f"agent {i}: its learner reads {learner.critic_dim} κ-hop inputs but the run's "
                                 f"relay plan gives {net.nodes[i].critic_dim}; topology.json or config.json changed")
        return net

    def policy_inputs(self, net: MemoryNetwork, t: int, obs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(actor input, κ-hop input) per agent for step ``t``: one relay exchange, as in training."""
        critic_ins = net.exchange(t, obs)
        mask = bool(self.cfg.get("actor_mask", False))
        return [(actor_input(obs[i], net.nodes[i], mask), critic_ins[i]) for i in range(len(self.learners))]


def load_team(run_dir: Path, checkpoint: int | None = None) -> Team:
    """The run's agents at their newest checkpoint (or at update ``checkpoint``).

    The newest file is taken as it is: a damaged one is an error naming the agent and the file,
    never a silent fall-back to an older policy (training's resume does fall back; a judgment of
    "the learned policy" must not)."""
    pin_threads()  # batch-of-E forwards: extra BLAS threads only fight on a busy machine (as in agentd)
    run_dir = Path(run_dir)
    cfg = read_json(run_dir / "config.json", "run")
    try:
        spec = task_spec(cfg["task"])
    except (KeyError, ValueError) as err:
        raise JudgeError(f"run: {run_dir / 'config.json'} names no known task ({first_line(err)})") from None
    topo = run_dir / "topology.json"
    try:
        graph = resolve_topology(str(topo) if topo.exists() else (cfg.get("topology") or spec.topology), spec.n_agents)
    except TopologyError as err:
        raise JudgeError(f"run: topology: {first_line(err)}") from None
    learners, paths = [], []
    for i in range(spec.n_agents):
        path = _checkpoint_path(run_dir, i, checkpoint)
        learners.append(_learner(run_dir, cfg, spec, graph, i, path))
        paths.append(path)
    return Team(run_dir, cfg, spec, graph, learners, paths)


def _checkpoint_path(run_dir: Path, agent: int, update: int | None) -> Path:
    directory = run_dir / f"agent-{agent}" / "checkpoints"
    if update is not None:
        path = directory / checkpoint_name(update)
        if not path.exists():
            raise JudgeError(f"agent {agent}: {path} does not exist (no checkpoint at update {update})")
        return path
    found = list_checkpoints(directory)
    if not found:
        raise JudgeError(f"agent {agent}: no checkpoint in {directory}")
    return found[0]


def _learner(run_dir: Path, cfg: dict[str, Any], spec: TaskSpec, graph: Any, agent: int, path: Path) -> Learner:
    lc = read_json(run_dir / f"agent-{agent}" / "learner_config.json", f"agent {agent}")
    fields = {f.name for f in dataclasses.fields(LearnerConfig)}
    a = assembly.actor_spec(spec.agents[agent], len(graph.adj[agent]), bool(cfg.get("actor_mask")))
    try:
        learner = make_learner(lc["algo"], a, int(lc["critic_dim"]), spec.n_agents, int(cfg.get("envs", 1)),
                               seed=agent, overrides={k: v for k, v in lc.items() if k in fields},
                               cost_limits=spec.cost_limits, episode_length=spec.episode_length)
    except (KeyError, ValueError, TypeError) as err:
        raise JudgeError(f"agent {agent}: cannot rebuild its learner from "
                         f"{run_dir / f'agent-{agent}' / 'learner_config.json'} ({first_line(err)})") from None
    try:
        learner.load_checkpoint(path)
    except (ValueError, KeyError, RuntimeError) as err:
        reason = first_line(err).replace(f"checkpoint {path} ", "")  # checkpoint.load names the file too
        raise JudgeError(f"agent {agent}: checkpoint {path} cannot be loaded: {reason}") from None
    return learner


class Player:
    """E copies of the run's task played by the team, step by step (``deterministic``: modes, not samples).

    ``seed`` seeds the task, the relay's loss and every learner's sampling generators, so an
    evaluation is reproducible and independent of the training's random streams."""

    def __init__(self, team: Team, n_envs: int, seed: int, deterministic: bool) -> None:
        self.team, self.deterministic = team, deterministic
        self.task: VecTask = make_task(team.cfg["task"], n_envs=n_envs, seed=seed)
        self.net = team.network(n_envs, seed)
        for i, learner in enumerate(team.learners):  # own streams: a reseed, not the checkpoint's RNG state
            learner.gen.manual_seed(seed * 1000 + i)
            learner.np_rng = np.random.default_rng([seed, i])
        self.obs = self.task.reset()
        self.masks = self.task.action_masks()  # the available actions, where the task masks them
        self.t = 0

    def step(self) -> StepResult:
        inputs = self.team.policy_inputs(self.net, self.t, self.obs)
        actions = [lr.policy_action(x, c, self.deterministic, self._mask(i))
                   for i, (lr, (x, c)) in enumerate(zip(self.team.learners, inputs))]
        res = self.task.step(actions)
        self.obs, self.masks, self.t = res.obs, self.task.action_masks(), self.t + 1
        return res

    def _mask(self, agent: int) -> np.ndarray | None:
        return self.masks[agent] if self.masks is not None and self.task.spec.agents[agent].action_mask else None

    def close(self) -> None:
        self.task.close()
