"""Serve any PettingZoo ``ParallelEnv`` as a khop task: ``--task pettingzoo:package.module:factory``.

Why a class per name: the launcher reads ``task_class(name).spec`` before any envserver exists, so
the spec must live on a class. :func:`pettingzoo_task_class` imports the module, calls the factory
once to read the agents and spaces, and returns a :class:`PettingZooTask` subclass carrying that
spec; it is cached per name, so the probe env is built once per process.

Mapping (the README's "Particle tasks and PettingZoo" section is the user-facing copy):

* agents → ids 0..N−1 in ``possible_agents`` order;
* observation ``Box`` → flattened float32 (obs_dim = its size); ``Discrete(n)`` → one-hot (n);
* action ``Discrete(n, start)`` → discrete with n choices, khop action k ↦ ``start + k``;
  ``Box`` → continuous with act_dim = its size: a Box with one low and one high for every entry
  keeps them as ``act_low``/``act_high``; a finite Box with per-entry bounds is offered as [−1, 1]
  and mapped affinely onto its bounds; actions are clipped into the Box before ``step``;
* any other space is refused with one line naming the agent and the space;
* team reward = the **mean** of the rewards of the agents that acted this step (mean, not sum, so
  the scale does not grow with N; for MPE's shared rewards it is the shared reward itself);
* action masks: a Discrete agent whose ``info["action_mask"]`` (PettingZoo's convention: 1 = the
  action at that position of the space is legal) is there at reset gets ``action_mask``: its STEP
  carries the mask of its latest info (all ones once it is done), so the actor picks legal actions
  and the envserver refuses others;
* costs: ``info["cost"]`` (a number or a vector) per agent, if the probe env reports it at reset or
  after one step of fallback actions; cost_limits from an env attribute ``cost_limits``, else ∞
  (no limit drawn). Otherwise the task has no cost;
* an agent that is done before the others keeps its last observation, its actions are dropped; a
  copy's episode ends when every agent is done (or ``env.agents`` is empty): *terminated* if any
  agent terminated in that last step, else *truncated*; the copy then auto-resets;
* copy e is first reset with a seed drawn from (run seed, e), later resets continue its RNG;
* episode_length from ``max_cycles`` (MPE, butterfly) or ``episode_length`` on the env or its
  ``unwrapped``, else 0 (unknown).
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import os
import sys
from typing import Any, Callable, ClassVar

import numpy as np

from .base import AgentSpec, StepResult, TaskSpec, VecTask

PREFIX = "pettingzoo:"
_CACHE: dict[str, type[PettingZooTask]] = {}


def _line(text: object) -> str:
    return " ".join(str(text).split())


# --- spaces ------------------------------------------------------------------------------
class _ObsMap:
    """One agent's observation space → flat float32 rows."""

    def __init__(self, agent: str, space: Any) -> None:
        from gymnasium import spaces

        self.one_hot: int | None = None
        if isinstance(space, spaces.Box):
            self.dim = int(np.prod(space.shape, dtype=np.int64))
        elif isinstance(space, spaces.Discrete):
            self.dim = self.one_hot = int(space.n)
            self.start = int(space.start)
        else:
            raise ValueError(f"agent {agent!r} has unsupported observation space {_line(space)}; "
                             "khop serves Box and Discrete observations")

    def __call__(self, obs: Any) -> np.ndarray:
        if self.one_hot is not None:
            row = np.zeros(self.one_hot, dtype=np.float32)
            row[int(obs) - self.start] = 1.0
            return row
        return np.asarray(obs, dtype=np.float32).reshape(-1)


class _ActMap:
    """khop's action row for one copy → the action the ParallelEnv's space accepts."""

    def __init__(self, agent: str, space: Any) -> None:
        from gymnasium import spaces

        self.space = space
        if isinstance(space, spaces.Discrete):
            self.kind, self.start = "discrete", int(space.start)
            self.spec = AgentSpec(obs_dim=0, act_kind="discrete", act_dim=1, n_actions=int(space.n))
            return
        if not isinstance(space, spaces.Box):
            raise ValueError(f"agent {agent!r} has unsupported action space {_line(space)}; "
                             "khop serves Box and Discrete actions")
        self.kind = "continuous"
        low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
        dim = int(np.prod(space.shape, dtype=np.int64))
        self.rescale = not (np.all(low == low.flat[0]) and np.all(high == high.flat[0]))
        if self.rescale and not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(f"agent {agent!r} has action space {_line(space)} with per-entry bounds that are "
                             "not all finite; khop needs one low and one high, or finite bounds to rescale")
        self.low, self.high = low, high
        lo, hi = (-1.0, 1.0) if self.rescale else (float(low.flat[0]), float(high.flat[0]))
        self.spec = AgentSpec(obs_dim=0, act_kind="continuous", act_dim=dim, act_low=lo, act_high=hi)

    def __call__(self, row: np.ndarray) -> Any:
        if self.kind == "discrete":
            return int(row) + self.start
        a = np.asarray(row, dtype=np.float64).reshape(self.space.shape)
        if self.rescale:
            a = self.low + (np.clip(a, -1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)
        return np.clip(a, self.low, self.high).astype(self.space.dtype)


# --- the adapter -------------------------------------------------------------------------
class PettingZooTask(VecTask):
    """E instances of one ParallelEnv stepped one after another (PettingZoo has no batched API)."""

    spec: ClassVar[TaskSpec]
    factory: ClassVar[Callable[[], Any]]

    def __init__(self, n_envs: int, seed: int) -> None:
        super().__init__(n_envs, seed)
        self.envs = [make_env(self.factory, self.spec.name) for _ in range(n_envs)]
        if len({id(env) for env in self.envs}) < n_envs:
            raise ValueError(f"task {self.spec.name!r}: the factory returned the same env twice; "
                             "each of the E copies needs its own instance")
        self.names, self.obs_maps, self.act_maps = _layout(self.spec.name, self.envs[0])
        if [_shape(a) for a in _agent_specs(self.obs_maps, self.act_maps)] != [_shape(a) for a in self.spec.agents]:
            raise ValueError(f"task {self.spec.name}: the env's agents or spaces differ from the task's spec")
        n = len(self.names)
        self.obs = [np.zeros((n_envs, m.dim), dtype=np.float32) for m in self.obs_maps]
        self.alive = [set(self.names) for _ in range(n_envs)]
        self.n_costs = self.spec.n_costs
        seeds = np.random.SeedSequence([seed, 0x9E77]).spawn(n_envs)
        self._first_seeds = [int(s.generate_state(1)[0] % 2**31) for s in seeds]
        self._zero_cost = np.zeros(self.n_costs, dtype=np.float32)
        self.n = n
        self.masks = [np.ones((n_envs, a.n_actions), dtype=bool) if a.action_mask else None for a in self.spec.agents]

    def _reset_copy(self, e: int, seed: int | None) -> None:
        obs, infos = self.envs[e].reset(seed=seed)
        for i, name in enumerate(self.names):
            if name in obs:
                self.obs[i][e] = self.obs_maps[i](obs[name])
        self.alive[e] = set(self.names)
        self._take_masks(e, infos)

    def _take_masks(self, e: int, infos: dict) -> None:
        """Copy e's masks from its agents' infos; an info without one (or a done agent, whose actions
        are dropped) leaves every action legal."""
        for i, name in enumerate(self.names):
            m = self.masks[i]
            if m is None:
                continue
            info = infos.get(name) if name in self.alive[e] else None
            m[e] = np.asarray(info["action_mask"], dtype=bool) if isinstance(info, dict) and "action_mask" in info else True

    def action_masks(self) -> list[np.ndarray] | None:
        if not any(a.action_mask for a in self.spec.agents):
            return None
        return [m.copy() if m is not None else np.ones((self.n_envs, a.n_actions), dtype=bool)
                for m, a in zip(self.masks, self.spec.agents)]

    def reset(self) -> list[np.ndarray]:
        for e in range(self.n_envs):
            self._reset_copy(e, self._first_seeds[e])
        return [o.copy() for o in self.obs]

    def _cost(self, info: Any) -> np.ndarray:
        if not self.n_costs or not isinstance(info, dict) or "cost" not in info:
            return self._zero_cost
        c = np.asarray(info["cost"], dtype=np.float32).reshape(-1)
        return c if c.size == self.n_costs else self._zero_cost

    def step(self, actions: list[np.ndarray]) -> StepResult:
        reward = np.zeros(self.n_envs, dtype=np.float32)
        cost = [np.zeros((self.n_envs, self.n_costs), dtype=np.float32) for _ in range(self.n)]
        terminated = np.zeros(self.n_envs, dtype=bool)
        truncated = np.zeros(self.n_envs, dtype=bool)
        for e, env in enumerate(self.envs):
            acting = [i for i, name in enumerate(self.names) if name in self.alive[e]]
            obs, rew, term, trunc, infos = env.step(
                {self.names[i]: self.act_maps[i](actions[i][e]) for i in acting})
            rewards = [float(rew.get(self.names[i], 0.0)) for i in acting]
            reward[e] = sum(rewards) / len(rewards) if rewards else 0.0
            ended_by_term = False
            for i in acting:
                name = self.names[i]
                if name in obs:
                    self.obs[i][e] = self.obs_maps[i](obs[name])
                cost[i][e] = self._cost(infos.get(name))
                if term.get(name, False) or trunc.get(name, False):
                    self.alive[e].discard(name)
                    ended_by_term |= bool(term.get(name, False))
            if not self.alive[e] or not env.agents:
                terminated[e], truncated[e] = ended_by_term, not ended_by_term
                self._reset_copy(e, None)
            else:
                self._take_masks(e, infos)
        return StepResult(obs=[o.copy() for o in self.obs], reward=reward, cost=cost,
                          terminated=terminated, truncated=truncated)

    def close(self) -> None:
        for env in self.envs:
            try:
                env.close()
            except Exception:  # noqa: BLE001 - a third-party close must not stop the server's shutdown
                pass


# --- building the class from a name ------------------------------------------------------
def load_factory(name: str) -> Callable[[], Any]:
    """``pettingzoo:package.module:factory`` → the factory callable; ValueError naming the problem.

    The current directory is searched last (as ``python -m`` would search it first), so a user's
    own module next to them works from ``khop run`` too, whose sys.path[0] is its script folder.
    """
    target = name[len(PREFIX):]
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise ValueError(f"task {name!r} must look like pettingzoo:package.module:factory")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - any import failure is the user's to read, in one line
        raise ValueError(f"task {name!r}: cannot import {module_name!r}: {type(err).__name__}: {_line(err)}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"task {name!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"task {name!r}: {attr!r} is a {type(obj).__name__}, not a callable factory")
    return obj


def make_env(factory: Callable[[], Any], task: str) -> Any:
    """Call the factory; anything but a ParallelEnv (or an exception) is a one-line ValueError."""
    try:
        from pettingzoo import AECEnv, ParallelEnv
    except ImportError:
        raise ValueError(f"task {task!r} needs PettingZoo: pip install 'khop[pettingzoo]'") from None
    try:
        env = factory()
    except Exception as err:  # noqa: BLE001 - the factory is user code
        raise ValueError(f"task {task!r}: the factory raised {type(err).__name__}: {_line(err)}") from None
    if not isinstance(env, ParallelEnv):
        hint = " (an AECEnv: pass its parallel_env factory)" if isinstance(env, AECEnv) else ""
        raise ValueError(f"task {task!r}: the factory returned a {type(env).__name__}, "
                         f"not a pettingzoo.ParallelEnv{hint}")
    return env


def _layout(task: str, env: Any) -> tuple[list[str], list[_ObsMap], list[_ActMap]]:
    names = list(getattr(env, "possible_agents", None) or [])
    if not names:
        raise ValueError(f"task {task!r}: the env has no possible_agents")
    try:
        obs_maps = [_ObsMap(a, env.observation_space(a)) for a in names]
        act_maps = [_ActMap(a, env.action_space(a)) for a in names]
    except ValueError as err:
        raise ValueError(f"task {task!r}: {err}") from None
    return names, obs_maps, act_maps


def _agent_specs(obs_maps: list[_ObsMap], act_maps: list[_ActMap]) -> list[AgentSpec]:
    out = []
    for o, a in zip(obs_maps, act_maps):
        s = a.spec
        out.append(AgentSpec(obs_dim=o.dim, act_kind=s.act_kind, act_dim=s.act_dim, n_actions=s.n_actions,
                             act_low=s.act_low, act_high=s.act_high,
                             obs_desc="one-hot observation" if o.one_hot is not None else "flattened observation"))
    return out


def _shape(a: AgentSpec) -> tuple:
    """An AgentSpec without its description: what must agree between a spec and a live env."""
    return a.obs_dim, a.act_kind, a.act_dim, a.n_actions, a.act_low, a.act_high


def _episode_length(env: Any) -> int:
    for holder in (env, getattr(env, "unwrapped", None)):
        for attr in ("max_cycles", "episode_length"):
            value = getattr(holder, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return 0


def _probe(env: Any, act_maps: list[_ActMap], names: list[str]) -> tuple[int, list[bool]]:
    """(how many costs ``info["cost"]`` carries, which agents' reset infos carry an action_mask of
    their Discrete space's size): look at reset's infos, then for costs one fallback step's."""
    _obs, infos = env.reset(seed=0)
    masked = [m.kind == "discrete" and isinstance(infos.get(n), dict) and "action_mask" in infos[n]
              and np.size(infos[n]["action_mask"]) == m.spec.n_actions for n, m in zip(names, act_maps)]
    return _probe_costs(env, act_maps, names, infos), masked


def _probe_costs(env: Any, act_maps: list[_ActMap], names: list[str], infos: dict) -> int:
    for info in infos.values():
        if isinstance(info, dict) and "cost" in info:
            return int(np.asarray(info["cost"]).size)
    fallback = {n: m(np.zeros(m.spec.act_dim)) if m.kind == "continuous" else m(0)
                for n, m in zip(names, act_maps) if n in env.agents}
    infos = env.step(fallback)[4]
    for info in infos.values():
        if isinstance(info, dict) and "cost" in info:
            return int(np.asarray(info["cost"]).size)
    return 0


def build_spec(name: str, env: Any) -> TaskSpec:
    """The TaskSpec of a ParallelEnv instance (which it resets and steps once to look for costs)."""
    names, obs_maps, act_maps = _layout(name, env)
    try:
        n_costs, masked = _probe(env, act_maps, names)
    except Exception as err:  # noqa: BLE001 - user code
        raise ValueError(f"task {name!r}: reset/step of the env raised {type(err).__name__}: {_line(err)}") from None
    cost_names = ("cost",) if n_costs == 1 else tuple(f"cost{k}" for k in range(n_costs))
    limits = getattr(env.unwrapped, "cost_limits", None) or getattr(env, "cost_limits", None)
    cost_limits = (tuple(float(x) for x in np.asarray(limits, dtype=np.float64).reshape(-1))
                   if limits is not None and np.size(limits) == n_costs else (math.inf,) * n_costs)
    meta = getattr(env, "metadata", None) or {}
    label = meta.get("name", "") if isinstance(meta, dict) else ""
    agents = tuple(dataclasses.replace(a, action_mask=m) for a, m in zip(_agent_specs(obs_maps, act_maps), masked))
    return TaskSpec(name=name, agents=agents, episode_length=_episode_length(env),
                    cost_names=cost_names, cost_limits=cost_limits, topology="complete",
                    description=f"PettingZoo ParallelEnv {label or name[len(PREFIX):]}; team reward = mean",
                    extra={"pettingzoo_agents": names})


def pettingzoo_task_class(name: str) -> type[PettingZooTask]:
    """The cached PettingZooTask subclass for ``pettingzoo:package.module:factory``."""
    if name not in _CACHE:
        factory = load_factory(name)
        env = make_env(factory, name)
        try:
            spec = build_spec(name, env)
        finally:
            try:
                env.close()
            except Exception:  # noqa: BLE001
                pass
        _CACHE[name] = type("PettingZoo_" + getattr(factory, "__name__", "factory"), (PettingZooTask,),
                            {"spec": spec, "factory": staticmethod(factory), "__module__": __name__})
    return _CACHE[name]
