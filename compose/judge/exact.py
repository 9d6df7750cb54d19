"""The exact expected return J of a learned joint policy on the tabular games, with the optimum and
the uniform policy's score beside it, from the games' own solvers.

* coop-game, coop-game-joint: every agent's π^i(·|o) is read off its learner for each of the H·S
  observations (t, s) and the product policy is evaluated by backward induction
  (:meth:`TabularCoopGame.evaluate`); the optimum is :meth:`TabularCoopGame.optimal_return`.
* matrix games: one observation, so π^i is two numbers; J, the optimum and the uniform score are
  :meth:`MatrixGame.evaluate` / :meth:`MatrixGame.optimum`.

The policy is read through the run's relay when an actor reads more than its own observation
(actor_input=khop, --actor-mask): one exchange over the table of observations, which is exact only
when that input is a function of the state — a sync relay delivering every hop every step over
reliable links. Otherwise, and for tasks without an episodic solver, the reason is returned
instead of a number.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from envserver.tasks import task_class
from envserver.tasks.coop_game import TabularCoopGame
from envserver.tasks.matrix_games import MatrixGame

from ..report.references import reference_scores
from .team import Team


def exact_returns(team: Team) -> dict[str, Any] | None:
    """``{"J_sampled", "J_deterministic", "optimum", "uniform", "solver"}`` for a tabular game,
    ``{"unavailable": reason}`` when its policy cannot be tabulated, None for other tasks."""
    cls = task_class(team.cfg["task"])
    if not issubclass(cls, (TabularCoopGame, MatrixGame)):
        if team.cfg["task"].startswith("networked-mdp"):
            return {"unavailable": "networked-mdp scores discounted per-agent utilities; there is no exact "
                                   "solver of its episode return here"}
        return None
    game = cls(1, 0)
    obs = _observation_table(game)
    inputs, reason = _policy_inputs(team, obs)
    if inputs is None:
        return {"unavailable": reason}
    tables = {mode: [lr.action_probs(x, c, mode == "deterministic") for lr, (x, c) in zip(team.learners, inputs)]
              for mode in ("sampled", "deterministic")}
    out: dict[str, Any] = {}
    for mode, probs in tables.items():
        if isinstance(game, TabularCoopGame):
            out[f"J_{mode}"] = game.evaluate(np.stack([p.reshape(game.H, game.S, game.A) for p in probs]))
        else:
            out[f"J_{mode}"] = game.evaluate(float(probs[0][0, 0]), float(probs[1][0, 0]))
    solver = ("backward induction over the horizon (TabularCoopGame.evaluate)" if isinstance(game, TabularCoopGame)
              else "expected payoff of the two mixed strategies (MatrixGame.evaluate)")
    return {**out, **reference_scores(team.cfg["task"]), "solver": solver}


def _observation_table(game: TabularCoopGame | MatrixGame) -> list[np.ndarray]:
    """Each agent's observation for every state the policy can be asked about, in the solver's
    order: (t, s) row-major for the coop games (one-hot s, then t/H, as ``_obs`` builds it)."""
    if isinstance(game, MatrixGame):
        return game.reset()
    t, s = np.meshgrid(np.arange(game.H), np.arange(game.S), indexing="ij")
    obs = np.zeros((game.H * game.S, game.S + 1), dtype=np.float32)
    obs[np.arange(game.H * game.S), s.ravel()] = 1.0
    obs[:, game.S] = t.ravel() / game.H
    return [obs] * game.N


def _policy_inputs(team: Team, obs: list[np.ndarray]) -> tuple[list[tuple[np.ndarray, np.ndarray]] | None, str]:
    """(actor input, κ-hop input) per agent for the table, or (None, why the policy is not tabular)."""
    rows = len(obs[0])
    if not team.cfg.get("actor_mask") and not any(lr.khop_actor for lr in team.learners):
        return [(o, np.zeros((rows, lr.critic_dim), np.float32)) for o, lr in zip(obs, team.learners)], ""
    cfg = team.cfg
    if cfg.get("relay", "sync") != "sync":
        return None, "the actors read an async relay's older rows: the policy is not a function of the state"
    net, trained = team.network(rows, seed=0), team.network(int(cfg.get("envs", 1)), seed=0)
    level = net.plan.level
    if level != trained.plan.level or level.period != 1 or level.hops != int(cfg["kappa"]):
        return None, "the communication budget holds or drops relayed rows: the policy is not a function of the state"
    if net.emulators:
        return None, "lossy links drop relayed rows at random: the policy is not a function of the state"
    return team.policy_inputs(net, 0, obs), ""
