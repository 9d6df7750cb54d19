"""The cooperative stochastic game of the DPO paper (dpo.md §4.1): 100 states, 6 agents, 5 actions.

The paper only says that reward and transitions are "generated randomly"; we pick a generator
whose joint tables stay small enough for exact dynamic programming over all 5^6 = 15,625 joint
actions (so the global optimum is known) and whose structure gives each agent a learnable but
coupled signal:

* reward  r(s, a) = ½·mean_i R1[i, s, a_i] + ½·mean_i R2[i, s, a_i, a_{i+1 mod N}],  R1, R2 ~ U(0, 1):
  every agent matters on its own and through its ring neighbour, so coordination pays;
* transition: with probability ``p_move`` = 0.8 the next state is
  ``(s + Σ_i D[i, s, a_i]) mod S`` with D ~ U{0..S−1}, otherwise uniform over all S states.
  Joint actions therefore steer the state, and the game is stochastic.
* episodes last H = 50 steps; the start state is uniform.

Every agent observes the full state (one-hot, as in the paper) plus the fraction of the episode
elapsed, which keeps the finite-horizon problem Markov. The tables depend only on ``game_seed``
(default 0) so that runs with different ``seed`` face the same game, as the paper's five seeds do.
"""
from __future__ import annotations

import numpy as np

from .base import AgentSpec, StepResult, TaskSpec, VecTask

N_STATES, N_AGENTS, N_ACTIONS, HORIZON, P_MOVE = 100, 6, 5, 50, 0.8


class CoopGame(VecTask):
    spec = TaskSpec(
        name="coop-game",
        agents=tuple(AgentSpec(obs_dim=N_STATES + 1, act_kind="discrete", act_dim=1, n_actions=N_ACTIONS,
                               obs_desc="one-hot state (100) + elapsed fraction of the episode (1)")
                     for _ in range(N_AGENTS)),
        episode_length=HORIZON,
        topology="coop-game",
        description="DPO paper's cooperative stochastic game: 100 states, 6 agents, 5 actions, shared reward",
    )

    def __init__(self, n_envs: int, seed: int, game_seed: int = 0) -> None:
        super().__init__(n_envs, seed)
        tables = np.random.default_rng([game_seed, 0xC00B])
        self.r1 = tables.random((N_AGENTS, N_STATES, N_ACTIONS)).astype(np.float32)
        self.r2 = tables.random((N_AGENTS, N_STATES, N_ACTIONS, N_ACTIONS)).astype(np.float32)
        self.shift = tables.integers(0, N_STATES, (N_AGENTS, N_STATES, N_ACTIONS))
        self.rng = np.random.default_rng(seed)
        self.state = np.zeros(n_envs, dtype=np.int64)
        self.t = np.zeros(n_envs, dtype=np.int64)
        self._rows = np.arange(n_envs)

    # --- the game's tables, for exact evaluation -------------------------------------------
    def reward(self, s: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """r(s, a) for states s [B] and joint actions [B, N]."""
        agents = np.arange(N_AGENTS)
        nxt = np.roll(joint, -1, axis=1)
        own = self.r1[agents, s[:, None], joint].mean(axis=1)
        pair = self.r2[agents, s[:, None], joint, nxt].mean(axis=1)
        return (0.5 * own + 0.5 * pair).astype(np.float32)

    def successor(self, s: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """The state a joint action steers to (taken with probability P_MOVE)."""
        agents = np.arange(N_AGENTS)
        return (s + self.shift[agents, s[:, None], joint].sum(axis=1)) % N_STATES

    def optimal_return(self) -> float:
        """Expected episode return of the global optimum, by backward induction over the horizon."""
        joint = np.stack(np.unravel_index(np.arange(N_ACTIONS ** N_AGENTS), (N_ACTIONS,) * N_AGENTS), axis=1)
        value = np.zeros(N_STATES)
        rewards = np.stack([self.reward(np.full(len(joint), s), joint) for s in range(N_STATES)])
        succ = np.stack([self.successor(np.full(len(joint), s), joint) for s in range(N_STATES)])
        for _ in range(HORIZON):
            q = rewards + P_MOVE * value[succ] + (1 - P_MOVE) * value.mean()
            value = q.max(axis=1)
        return float(value.mean())

    # --- VecTask ---------------------------------------------------------------------------
    def _obs(self) -> list[np.ndarray]:
        obs = np.zeros((self.n_envs, N_STATES + 1), dtype=np.float32)
        obs[self._rows, self.state] = 1.0
        obs[:, N_STATES] = self.t / HORIZON
        return [obs] * N_AGENTS  # every agent sees the same state; the array is read-only to callers

    def reset(self) -> list[np.ndarray]:
        self.state = self.rng.integers(0, N_STATES, self.n_envs)
        self.t[:] = 0
        return self._obs()

    def step(self, actions: list[np.ndarray]) -> StepResult:
        joint = np.clip(np.stack([np.asarray(a, dtype=np.int64).reshape(self.n_envs) for a in actions], axis=1),
                        0, N_ACTIONS - 1)
        reward = self.reward(self.state, joint)
        moved = self.successor(self.state, joint)
        jump = self.rng.random(self.n_envs) >= P_MOVE
        self.state = np.where(jump, self.rng.integers(0, N_STATES, self.n_envs), moved)
        self.t += 1
        truncated = self.t >= HORIZON
        if truncated.any():
            self.state[truncated] = self.rng.integers(0, N_STATES, int(truncated.sum()))
            self.t[truncated] = 0
        cost = np.zeros((self.n_envs, 0), dtype=np.float32)
        return StepResult(obs=self._obs(), reward=reward, cost=[cost] * N_AGENTS,
                          terminated=np.zeros(self.n_envs, dtype=bool), truncated=truncated)
