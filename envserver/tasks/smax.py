"""SMAX battles (JaxMARL's SMAC re-implementation, Rutherford et al. 2024) as khop tasks: ``smax-3m``,
``smax-2s3z``, ``smax-5m_vs_6m`` and the SMACv2-style ``smax-smacv2-5-units``.

Why two modules: ``khop tasks`` and ``khop run``'s checks need every task's spec, and a base install
has no jax. The spec is therefore plain arithmetic on SMAX's feature lists (below, checked against
the env when one is built), and jax is imported only when a task is built (smax_batch.py, behind
``pip install -e ".[smax]"``); without it, one line says what to install.

What khop serves (JaxMARL's ``HeuristicEnemySMAX``, the team of allies against its scripted enemies):

* agents = the allies ``ally_0 … ally_{n−1}``; each observes SMAX's ``unit_list`` observation;
* actions Discrete(5 + n_enemies): 0–3 move, 4 stop, 5 + j attack enemy j; the STEP's action mask
  is SMAX's ``get_avail_actions``: stop always, moves while alive, an attack while that enemy is
  alive and in range. The fallback action is stop (always available);
* reward: SMAX's team reward, the enemies' health lost this step as a fraction of their total,
  plus 1 when the battle is won (``won_battle_bonus``), so an episode's return is at most 2;
* an episode ends when one side is dead (*terminated*) or after 100 steps (*truncated*);
  ``won`` (every enemy dead, an ally alive) goes into episodes.jsonl, and the report's win rate
  is the share of finished episodes won;
* E copies are one ``jax.vmap`` of the env, jit-compiled once per (map, E) when the task is built.
"""
from __future__ import annotations

import importlib.util
from typing import ClassVar

import numpy as np

from .base import AgentSpec, StepResult, TaskSpec, VecTask

INSTALL_HINT = 'smax tasks need jax and jaxmarl: pip install -e ".[smax]"'
# SMAX's defaults (jaxmarl smax_env.SMAX.__init__): 6 unit types; a unit is seen as 7 features
# (health, relative x, y, last move x, y, last target, cooldown) + the type bits, oneself as 4
# (health, x, y, cooldown) + the type bits; 5 movement actions (4 moves and stop)
UNIT_TYPES, UNIT_FEATURES, OWN_FEATURES, MOVE_ACTIONS = 6, 7 + 6, 4 + 6, 5
STOP = MOVE_ACTIONS - 1  # "always can take the stop action" (SMAX.get_avail_actions)
EPISODE_LENGTH = 100  # SMAX max_steps
OBS_DESC = ("SMAX unit list: per other ally, then per enemy, health, position relative to self / sight "
            "range, last move, last target, weapon cooldown, 6 unit-type bits (zeros when out of sight or "
            "dead); then own health, position / map size, cooldown, 6 unit-type bits")


def obs_dim(n_allies: int, n_enemies: int) -> int:
    return UNIT_FEATURES * (n_allies - 1 + n_enemies) + OWN_FEATURES


def smax_installed() -> bool:
    """jaxmarl importable, without importing it (jax takes seconds to import)."""
    try:
        return importlib.util.find_spec("jaxmarl") is not None and importlib.util.find_spec("jax") is not None
    except (ImportError, ValueError):  # a blocked or half-removed package
        return False


def _spec(name: str, n_allies: int, n_enemies: int, what: str) -> TaskSpec:
    agent = AgentSpec(obs_dim=obs_dim(n_allies, n_enemies), act_kind="discrete", act_dim=1,
                      n_actions=MOVE_ACTIONS + n_enemies, obs_desc=OBS_DESC, action_mask=True)
    # complete graph: SMAC's allies fight as one squad and see each other within sight range
    return TaskSpec(name=name, agents=(agent,) * n_allies, episode_length=EPISODE_LENGTH, topology="complete",
                    description=f"SMAX {what}, enemies scripted by JaxMARL's heuristic; the smax extra")


class SmaxTask(VecTask):
    """E copies of one SMAX map; a subclass names the map and carries its spec."""

    map_name: ClassVar[str]
    spec: ClassVar[TaskSpec]

    @classmethod
    def check_installed(cls) -> None:
        if not smax_installed():
            raise ValueError(f"task {cls.spec.name!r}: {INSTALL_HINT}")

    def __init__(self, n_envs: int, seed: int) -> None:
        super().__init__(n_envs, seed)
        self.check_installed()
        try:
            from .smax_batch import SmaxBatch
        except ImportError as err:
            raise ValueError(f"task {self.spec.name!r}: {INSTALL_HINT} ({type(err).__name__}: {err})") from None
        self.batch = SmaxBatch(self.map_name, n_envs, seed)
        a = self.spec.agents[0]
        if (self.batch.n_allies, self.batch.obs_dim, self.batch.n_actions) != (self.spec.n_agents, a.obs_dim,
                                                                                a.n_actions):
            raise ValueError(f"task {self.spec.name!r}: this jaxmarl's SMAX has {self.batch.n_allies} allies, obs "
                             f"{self.batch.obs_dim}, {self.batch.n_actions} actions; khop expects {self.spec.n_agents}, "
                             f"{a.obs_dim}, {a.n_actions} (constraints.txt pins the jaxmarl it was written for)")
        self._masks: np.ndarray | None = None
        self._no_cost = [np.zeros((n_envs, 0), dtype=np.float32)] * self.spec.n_agents

    def reset(self) -> list[np.ndarray]:
        obs, self._masks = self.batch.reset()
        return list(obs)

    def step(self, actions: list[np.ndarray]) -> StepResult:
        out = self.batch.step(np.stack(actions, axis=1))
        self._masks = out.masks
        return StepResult(obs=list(out.obs), reward=out.reward, cost=self._no_cost, terminated=out.done & out.decided,
                          truncated=out.done & ~out.decided, outcome={"won": out.won})

    def action_masks(self) -> list[np.ndarray] | None:
        return None if self._masks is None else list(self._masks)

    def fallback_action(self, agent: int) -> np.ndarray:
        return np.full(self.n_envs, STOP, dtype=np.int64)


def _task(name: str, map_name: str, n_allies: int, n_enemies: int, what: str) -> type[SmaxTask]:
    return type(f"Smax_{map_name}", (SmaxTask,), {"map_name": map_name, "spec": _spec(name, n_allies, n_enemies, what),
                                                  "__module__": __name__})


# jaxmarl smax_env.MAP_NAME_TO_SCENARIO: (allies, enemies); unit types per SMAC's maps
Smax3m = _task("smax-3m", "3m", 3, 3, "3 marines vs 3")
Smax2s3z = _task("smax-2s3z", "2s3z", 5, 5, "2 stalkers + 3 zealots a side")
Smax5mVs6m = _task("smax-5m_vs_6m", "5m_vs_6m", 5, 6, "5 marines vs 6")
# SMACv2-style (Ellis et al. 2023): unit types drawn uniformly from the 6 per episode, start positions
# surrounded or reflected at random
SmaxSmacv2FiveUnits = _task("smax-smacv2-5-units", "smacv2_5_units", 5, 5, "SMACv2-style, 5 random units a side")
