"""The cooperative stochastic game of the DPO paper (dpo.md §4.1): 100 states, 6 agents, 5 actions,
in two readings of "generated randomly".

The paper only says that "the reward function and the transition probability are both generated
randomly". Both games below keep the tables small enough for exact dynamic programming over all
5^6 = 15,625 joint actions (so the global optimum is known), share the paper's sizes, episodes of
H = 50 steps from a uniform start state, and one transition family: with probability ``p_move``
= 0.8 the next state is a *steered* state ``successor(s, a)``, otherwise it is uniform over all
S states, so P(s'|s, a) = p_move·[s' = successor(s, a)] + (1 − p_move)/S. They differ only in
how r(s, a) and successor(s, a) depend on the joint action a:

``coop-game`` (:class:`CoopGame`) — structured, close to additive per agent:

* reward  r(s, a) = ½·mean_i R1[i, s, a_i] + ½·mean_i R2[i, s, a_i, a_{i+1 mod N}],  R1, R2 ~ U(0, 1):
  every agent matters on its own and through its ring neighbour, so coordination pays;
* steered state ``(s + Σ_i D[i, s, a_i]) mod S`` with D ~ U{0..S−1}.

Per-agent main effects explain most of the variance of r over joint actions (about 63 %,
tests/test_tabular_coop_game.py), so each agent's own advantage is informative: the home ground of
independent learners such as IPPO (../shared/research/learner-audit.md Q3(a)).

``coop-game-joint`` (:class:`CoopGameJoint`) — the natural reading, one draw per joint action:

* reward  r(s, a) ~ U(0, 1) i.i.d. for every state and joint action (an [S, A^N] table);
* steered state ``successor(s, a)`` ~ U{0..S−1} i.i.d. for every state and joint action.

Main effects then explain only N(A−1)/(A^N − 1) ≈ 0.15 % of the variance in expectation: averaged
over the others' actions, an agent's own action says almost nothing about r; what it is worth
depends on what the others play. Why this generator:

* U(0, 1) rather than the U(−1, 1) of a third-party re-implementation (niql's
  ``CooperativeStochasticGame``; not the authors' code): in a fixed-horizon game an affine change of
  r changes no policy's ranking, and U(0, 1) keeps coop-game's scale (a uniform policy earns ≈ 25
  per episode in both), so the two games' returns and the family's learner defaults read alike;
* a drawn steered state instead of niql's dense Dirichlet(1) row per (s, a): that kernel is
  S·A^N·S = 100 × 15,625 × 100 floats (1.25 GB), and a Dirichlet(1) row over 100 states puts only
  a few per cent on any state, so the action would hardly steer. The point mass mixed with the
  uniform jump is random per joint action, stores one index per (s, a), keeps coop-game's
  steering strength (0.8) and noise, and keeps every exact computation O(S·A^N) per step.

Every agent observes the full state (one-hot, as in the paper) plus the fraction of the episode
elapsed, which keeps the finite-horizon problem Markov. The tables depend only on ``game_seed``
(default 0) so that runs with different ``seed`` face the same game, as the paper's five seeds do.

Exact tools (for the theory and for checking learners), shared by both games through
:class:`TabularCoopGame`, all by backward induction over the horizon on the game's own tables
(:meth:`TabularCoopGame.tables`):

* :meth:`~TabularCoopGame.optimal_return` / :meth:`~TabularCoopGame.optimal_policy` — the global
  optimum over joint actions and a product of per-agent deterministic policies that attains it;
* :meth:`~TabularCoopGame.evaluate` — the exact expected episode return J(π) of any joint tabular
  policy given as one table per agent (stationary ``[N, S, A]`` or time-dependent ``[N, H, S, A]``).

The constructor's size arguments build shrunken instances (e.g. 3 agents, 2 actions, 5 states)
on which these tools can be checked against brute force; the registered tasks use the paper's
sizes, and for those sizes coop-game's tables are exactly the ones drawn before the arguments
(and coop-game-joint) existed.
"""
from __future__ import annotations

from abc import abstractmethod

import numpy as np

from .base import AgentSpec, StepResult, TaskSpec, VecTask

N_STATES, N_AGENTS, N_ACTIONS, HORIZON, P_MOVE = 100, 6, 5, 50, 0.8
PAPER_SIZES = (N_STATES, N_AGENTS, N_ACTIONS, HORIZON)


def _spec(n_states: int, n_agents: int, n_actions: int, horizon: int, name: str, reading: str = "") -> TaskSpec:
    return TaskSpec(
        name=name,
        agents=tuple(AgentSpec(obs_dim=n_states + 1, act_kind="discrete", act_dim=1, n_actions=n_actions,
                               obs_desc=f"one-hot state ({n_states}) + elapsed fraction of the episode (1)")
                     for _ in range(n_agents)),
        episode_length=horizon,
        topology="coop-game" if (n_states, n_agents, n_actions, horizon) == PAPER_SIZES else "ring",
        description=f"DPO paper's cooperative stochastic game: {n_states} states, {n_agents} agents, "
                    f"{n_actions} actions, shared reward{reading}",
    )


class TabularCoopGame(VecTask):
    """What both readings of the game share: sizes, stepping, the joint tables and every exact tool.

    A subclass only draws its tables (:meth:`_draw`, from a generator seeded by ``game_seed``
    and the subclass's ``_TABLE_KEY``) and reads r(s, a) and the steered state off them
    (:meth:`reward`, :meth:`successor`); the kernel's form, p_move·[steered] + (1 − p_move)·uniform,
    is common, which is what lets the backward induction stay O(S·A^N) per step.
    """

    spec: TaskSpec
    _TABLE_KEY: int
    _READING: str = ""  # appended to the spec's description

    def __init__(self, n_envs: int, seed: int, game_seed: int = 0, *, n_states: int = N_STATES,
                 n_agents: int = N_AGENTS, n_actions: int = N_ACTIONS, horizon: int = HORIZON,
                 p_move: float = P_MOVE) -> None:
        super().__init__(n_envs, seed)
        name = type(self).spec.name
        if min(n_states, n_agents, n_actions, horizon) < 1 or not 0.0 <= p_move <= 1.0:
            raise ValueError(f"{name} sizes must be >= 1 and p_move in [0, 1]")
        self.S, self.N, self.A, self.H, self.p_move = n_states, n_agents, n_actions, horizon, float(p_move)
        if (n_states, n_agents, n_actions, horizon) != PAPER_SIZES:
            self.spec = _spec(n_states, n_agents, n_actions, horizon, f"{name}-custom", self._READING)
        self._draw(np.random.default_rng([game_seed, self._TABLE_KEY]))
        self.rng = np.random.default_rng(seed)
        self.state = np.zeros(n_envs, dtype=np.int64)
        self.t = np.zeros(n_envs, dtype=np.int64)
        self._rows = np.arange(n_envs)
        self._tables: dict | None = None
        self._optimal: tuple[np.ndarray, np.ndarray] | None = None

    # --- what a reading of the game defines ------------------------------------------------
    @abstractmethod
    def _draw(self, tables: np.random.Generator) -> None:
        """Draw the game's raw tables (stored on self) from ``tables``."""

    @abstractmethod
    def reward(self, s: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """r(s, a) as float32 for states s [B] and joint actions [B, N]."""

    @abstractmethod
    def successor(self, s: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """The state a joint action steers to (taken with probability p_move), for s [B], joint [B, N]."""

    # --- the game's tables, for exact evaluation -------------------------------------------
    def joint_actions(self) -> np.ndarray:
        """All A^N joint actions [A^N, N], agent 0 the most significant digit (C order)."""
        idx = np.arange(self.A ** self.N)
        return np.stack(np.unravel_index(idx, (self.A,) * self.N), axis=1)

    def tables(self) -> dict:
        """The game as arrays over states × joint actions, the input of every exact computation.

        ``reward`` [S, A^N] is r(s, a) exactly as :meth:`step` pays it (float32 values, held in
        float64); ``successor`` [S, A^N] is the steered state; ``p_move`` the probability of
        taking it (otherwise the next state is uniform); ``joint`` [A^N, N] decodes the columns;
        ``horizon`` the episode length; the start state is uniform.
        The transition kernel is P(s'|s, a) = p_move·[s' = successor(s, a)] + (1 − p_move)/S.
        """
        if self._tables is None:
            joint = self.joint_actions()
            states = np.arange(self.S)
            rewards = np.stack([self.reward(np.full(len(joint), s), joint) for s in states]).astype(np.float64)
            succ = np.stack([self.successor(np.full(len(joint), s), joint) for s in states])
            self._tables = {"reward": rewards, "successor": succ, "p_move": self.p_move, "joint": joint,
                            "horizon": self.H, "n_states": self.S, "n_agents": self.N, "n_actions": self.A}
        return self._tables

    def transition_matrix(self) -> np.ndarray:
        """The dense kernel P [S, A^N, S] (small instances only: S²·A^N floats)."""
        tb = self.tables()
        P = np.full((self.S, len(tb["joint"]), self.S), (1.0 - self.p_move) / self.S)
        s_idx, j_idx = np.meshgrid(np.arange(self.S), np.arange(len(tb["joint"])), indexing="ij")
        np.add.at(P, (s_idx, j_idx, tb["successor"]), self.p_move)
        return P

    def _backup(self, value: np.ndarray) -> np.ndarray:
        """Q_t[s, a] = r(s, a) + E[V_{t+1}(s')] for the next-step values ``value`` [S]."""
        tb = self.tables()
        return tb["reward"] + self.p_move * value[tb["successor"]] + (1.0 - self.p_move) * value.mean()

    def optimal_values(self) -> tuple[np.ndarray, np.ndarray]:
        """Backward induction over joint actions: V*[t, s] for t = 0..H (V*[H] = 0) and the greedy
        joint-action column [H, S] (ties broken towards the lowest index)."""
        if self._optimal is None:
            value = np.zeros((self.H + 1, self.S))
            greedy = np.zeros((self.H, self.S), dtype=np.int64)
            for t in range(self.H - 1, -1, -1):
                q = self._backup(value[t + 1])
                greedy[t] = q.argmax(axis=1)
                value[t] = q[np.arange(self.S), greedy[t]]
            self._optimal = (value, greedy)
        return self._optimal[0].copy(), self._optimal[1].copy()

    def optimal_return(self) -> float:
        """Expected episode return of the global optimum, by backward induction over the horizon."""
        return float(self.optimal_values()[0][0].mean())

    def optimal_policy(self) -> np.ndarray:
        """Per-agent deterministic time-dependent policies [N, H, S, A] (one-hot) whose product plays
        the optimal joint action: agent i plays digit i of the greedy joint action (every agent sees
        s and t, so a deterministic joint policy factorises)."""
        _, greedy = self.optimal_values()
        digits = self.tables()["joint"][greedy]  # [H, S, N]
        pol = np.zeros((self.N, self.H, self.S, self.A))
        for i in range(self.N):
            np.put_along_axis(pol[i], digits[..., i:i + 1], 1.0, axis=-1)
        return pol

    def _as_policy(self, policy: np.ndarray) -> np.ndarray:
        pol = np.asarray(policy, dtype=np.float64)
        if pol.shape == (self.N, self.S, self.A):
            pol = np.broadcast_to(pol[:, None], (self.N, self.H, self.S, self.A))
        if pol.shape != (self.N, self.H, self.S, self.A):
            raise ValueError(f"policy must be [N, S, A] = {(self.N, self.S, self.A)} or [N, H, S, A] = "
                             f"{(self.N, self.H, self.S, self.A)}, got {pol.shape}")
        if (pol < -1e-12).any() or not np.allclose(pol.sum(axis=-1), 1.0, atol=1e-6):
            raise ValueError("each policy row must be a probability distribution over actions")
        return pol

    def joint_policy(self, policy: np.ndarray, t: int) -> np.ndarray:
        """π_t(a | s) = Π_i π^i_t(a_i | s) as [S, A^N] for per-agent tables (see :meth:`evaluate`)."""
        pol = self._as_policy(policy)
        probs = pol[0, t]
        for i in range(1, self.N):  # outer products in C order: agent 0 is the most significant digit
            probs = (probs[:, :, None] * pol[i, t][:, None, :]).reshape(self.S, -1)
        return probs

    def policy_values(self, policy: np.ndarray) -> np.ndarray:
        """V^π[t, s] for t = 0..H of the product policy, by backward induction (V[H] = 0)."""
        stationary = np.ndim(policy) == 3
        pol = self._as_policy(policy)
        value = np.zeros((self.H + 1, self.S))
        probs = self.joint_policy(pol, 0) if stationary else None
        for t in range(self.H - 1, -1, -1):
            pi_t = probs if stationary else self.joint_policy(pol, t)
            value[t] = (pi_t * self._backup(value[t + 1])).sum(axis=1)
        return value

    def evaluate(self, policy: np.ndarray) -> float:
        """Exact J(π): the expected (undiscounted) episode return from a uniform start state of the
        joint policy π = Π_i π^i, each π^i a table [S, A] (stationary) or [H, S, A] (indexed by the
        elapsed step t, which every agent observes)."""
        return float(self.policy_values(policy)[0].mean())

    # --- VecTask ---------------------------------------------------------------------------
    def _obs(self) -> list[np.ndarray]:
        obs = np.zeros((self.n_envs, self.S + 1), dtype=np.float32)
        obs[self._rows, self.state] = 1.0
        obs[:, self.S] = self.t / self.H
        return [obs] * self.N  # every agent sees the same state; the array is read-only to callers

    def reset(self) -> list[np.ndarray]:
        self.state = self.rng.integers(0, self.S, self.n_envs)
        self.t[:] = 0
        return self._obs()

    def step(self, actions: list[np.ndarray]) -> StepResult:
        joint = np.clip(np.stack([np.asarray(a, dtype=np.int64).reshape(self.n_envs) for a in actions], axis=1),
                        0, self.A - 1)
        reward = self.reward(self.state, joint)
        moved = self.successor(self.state, joint)
        jump = self.rng.random(self.n_envs) >= self.p_move
        self.state = np.where(jump, self.rng.integers(0, self.S, self.n_envs), moved)
        self.t += 1
        truncated = self.t >= self.H
        if truncated.any():
            self.state[truncated] = self.rng.integers(0, self.S, int(truncated.sum()))
            self.t[truncated] = 0
        cost = np.zeros((self.n_envs, 0), dtype=np.float32)
        return StepResult(obs=self._obs(), reward=reward, cost=[cost] * self.N,
                          terminated=np.zeros(self.n_envs, dtype=bool), truncated=truncated)


class CoopGame(TabularCoopGame):
    """coop-game: r and the steered state built from per-agent and ring-pair tables (module docstring)."""

    spec = _spec(*PAPER_SIZES, "coop-game")
    _TABLE_KEY = 0xC00B

    def _draw(self, tables: np.random.Generator) -> None:
        self.r1 = tables.random((self.N, self.S, self.A)).astype(np.float32)
        self.r2 = tables.random((self.N, self.S, self.A, self.A)).astype(np.float32)
        self.shift = tables.integers(0, self.S, (self.N, self.S, self.A))

    def reward(self, s: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """r(s, a) for states s [B] and joint actions [B, N]."""
        agents = np.arange(self.N)
        nxt = np.roll(joint, -1, axis=1)
        own = self.r1[agents, s[:, None], joint].mean(axis=1)
        pair = self.r2[agents, s[:, None], joint, nxt].mean(axis=1)
        return (0.5 * own + 0.5 * pair).astype(np.float32)

    def successor(self, s: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """The state a joint action steers to (taken with probability p_move)."""
        agents = np.arange(self.N)
        return (s + self.shift[agents, s[:, None], joint].sum(axis=1)) % self.S


class CoopGameJoint(TabularCoopGame):
    """coop-game-joint: r(s, a) ~ U(0, 1) and the steered state ~ U{0..S−1}, one draw per state and
    joint action (module docstring)."""

    _READING = "; r and P drawn per joint action"
    spec = _spec(*PAPER_SIZES, "coop-game-joint", _READING)
    _TABLE_KEY = 0x101A7

    def _draw(self, tables: np.random.Generator) -> None:
        self.r_joint = tables.random((self.S, self.A ** self.N), dtype=np.float32)
        self.target = tables.integers(0, self.S, (self.S, self.A ** self.N))
        self._place = self.A ** np.arange(self.N - 1, -1, -1)  # agent 0 the most significant digit

    def _column(self, joint: np.ndarray) -> np.ndarray:
        """The joint action's column in the [S, A^N] tables (the order of :meth:`joint_actions`)."""
        return joint @ self._place

    def reward(self, s: np.ndarray, joint: np.ndarray) -> np.ndarray:
        return self.r_joint[s, self._column(joint)]

    def successor(self, s: np.ndarray, joint: np.ndarray) -> np.ndarray:
        return self.target[s, self._column(joint)]
