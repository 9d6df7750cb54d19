"""A networked MDP with spatially decaying coupling (scalable-general-utilities.md §2, §3.1), its
exact solver for small instances, and the `networked-mdp` VecTask.

Model. n agents on a graph; agent i has a local state s_i ∈ {0..k_s−1} and action a_i ∈ {0..k_a−1}.
Local next states are drawn independently given the global (s, a) (the paper's transition
decomposition), each from a mixture whose weights decay with graph distance:

    P_i(· | s, a) = ω·K_i(· | s_i, a_i) + Σ_{j≠i} w_ij·G_j(· | s_j, a_j) + u_i·Uniform,
    w_ij = c·δ^{d(i,j)−1},   u_i = 1 − ω − Σ_{j≠i} w_ij ≥ 0,

K_i (own dynamics) and G_j (how agent j's state and action push everyone else) are random tables
fixed by ``game_seed``. Every agent influences every other one, but agent j's influence on agent i
is at most w_ij, so the matrix of Assumption 1 (eq. 11) obeys
M_ij = w_ij·max TV(G_j(·|x), G_j(·|x')) ≤ c·δ^{d(i,j)−1} for j ≠ i and M_ii ≤ ω: ``decay`` = δ
is the tunable spatial decay rate (Assumption 1 holds with any β < ln(1/δ) for which ρ(β) < 1/γ).
:meth:`NetworkedMDP.decay_matrix` computes M from the transition function by brute force.

Exact solver (:class:`ExactSolver`, small instances: k_s^n global states, k_a^n global actions).
For the localized softmax tabular policy π^i(a_i | s_i) = softmax(θ_i[s_i])_{a_i} (each agent acts
on its own state, the κ = 0 member of the paper's policy class) and per-agent rewards
r_j(s_j, a_j) it gives the discounted occupancy λ^π (eq. 2), the local occupancies λ_i (eq. 4),
the Q-functions Q_j(s, a) (eq. 7), the exact gradient (eq. 10) and the κ-truncated gradient of
eq. (15) with the truncated Q̂_j of eq. (14) (agents outside N_j^κ fixed to state 0 and action 0).
For a general utility F(θ) = (1/n)·Σ_i f_i(λ_i) pass the shadow rewards r_i = ∇f_i(λ_i) (Lemma 1);
:meth:`ExactSolver.utility` takes f_i as a function, e.g. the learner's
``agentd.learner.utility.entropy_utility`` (the utilities are the learner's objectives; the task
does not import the learner).

The VecTask (`networked-mdp`): 8 agents on a line, k_s = k_a = 2, δ = 0.5, 50-step episodes,
agent i observes the one-hot of its own local state only, and the team reward is the linear
utility r(s, a) = (1/n)·Σ_i R[i, s_i, a_i] with R ~ U(0, 1).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from .base import AgentSpec, StepResult, TaskSpec, VecTask

N_AGENTS, N_LOCAL_STATES, N_LOCAL_ACTIONS, HORIZON = 8, 2, 2, 50
OWN_WEIGHT, COUPLING, DECAY = 0.4, 0.15, 0.5
Utility = Callable[[np.ndarray, float], tuple[float, np.ndarray]]  # f(λ_i, γ) → (f_i(λ_i), ∇f_i [k_s, k_a])


def line_graph(n: int) -> nx.Graph:
    """The path 0–1–…–(n−1), the same graph as `--topology line`."""
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from((i, i + 1) for i in range(n - 1))
    return g


@dataclass
class NetworkedMDP:
    """The model: tables, coupling weights and the local transition function (see module doc)."""

    n_agents: int = N_AGENTS
    n_local_states: int = N_LOCAL_STATES
    n_local_actions: int = N_LOCAL_ACTIONS
    decay: float = DECAY  # δ: influence of an agent at distance d is at most c·δ^(d−1)
    coupling: float = COUPLING  # c: weight of a direct neighbour's kernel
    own_weight: float = OWN_WEIGHT  # ω: weight of the agent's own kernel
    game_seed: int = 0
    graph: nx.Graph | None = None  # default: a line of n_agents
    dirichlet: float = 0.5  # concentration of the random kernels (small: near-deterministic rows)
    own_kernel: np.ndarray | None = None  # optional K [n, k_s, k_a, k_s] replacing the random own kernels
    start: np.ndarray | None = None  # ξ's local part [k_s]: every agent's reset state is drawn from it; None = uniform
    K: np.ndarray = field(init=False, repr=False)  # [n, k_s, k_a, k_s] own kernels
    G: np.ndarray = field(init=False, repr=False)  # [n, k_s, k_a, k_s] influence kernels (agent j's push)
    R: np.ndarray = field(init=False, repr=False)  # [n, k_s, k_a] local rewards of the linear task
    W: np.ndarray = field(init=False, repr=False)  # [n, n] mixture weights, W[i, i] = ω
    dist: np.ndarray = field(init=False, repr=False)  # [n, n] hop distances

    def __post_init__(self) -> None:
        n, ks, ka = self.n_agents, self.n_local_states, self.n_local_actions
        if min(n, ks, ka) < 1:
            raise ValueError("networked MDP sizes must be >= 1")
        if not 0.0 <= self.decay <= 1.0 or self.coupling < 0 or not 0.0 <= self.own_weight <= 1.0:
            raise ValueError("need 0 <= decay <= 1, coupling >= 0, 0 <= own_weight <= 1")
        g = self.graph if self.graph is not None else line_graph(n)
        if sorted(g.nodes) != list(range(n)) or not nx.is_connected(g):
            raise ValueError(f"graph must be connected with nodes 0..{n - 1}")
        self.graph = g
        lengths = dict(nx.all_pairs_shortest_path_length(g))
        self.dist = np.array([[lengths[i][j] for j in range(n)] for i in range(n)], dtype=np.int64)
        W = np.where(self.dist > 0, self.coupling * self.decay ** np.maximum(self.dist - 1, 0), 0.0)
        np.fill_diagonal(W, self.own_weight)
        if (W.sum(axis=1) > 1.0 + 1e-12).any():
            raise ValueError(f"mixture weights exceed 1 (max row sum {W.sum(axis=1).max():.3f}); "
                             "lower coupling, decay or own_weight")
        self.W = W
        rng = np.random.default_rng([self.game_seed, 0x4E7])
        self.K = rng.dirichlet(np.full(ks, self.dirichlet), size=(n, ks, ka))
        if self.own_kernel is not None:
            K = np.asarray(self.own_kernel, dtype=np.float64)
            if K.shape != (n, ks, ka, ks) or (K < 0).any() or not np.allclose(K.sum(axis=-1), 1.0):
                raise ValueError(f"own_kernel must be [n, k_s, k_a, k_s] = {(n, ks, ka, ks)} rows of distributions")
            self.K = K
        self.G = rng.dirichlet(np.full(ks, self.dirichlet), size=(n, ks, ka))
        self.R = rng.random((n, ks, ka))
        self.start = np.full(ks, 1.0 / ks) if self.start is None else np.asarray(self.start, dtype=np.float64)
        if self.start.shape != (ks,) or (self.start < 0).any() or not np.isclose(self.start.sum(), 1.0):
            raise ValueError(f"start must be a distribution over the {ks} local states, got {self.start.tolist()}")

    @property
    def noise_weight(self) -> np.ndarray:
        """u_i = 1 − Σ_j W[i, j], the weight of the uniform component."""
        return 1.0 - self.W.sum(axis=1)

    @property
    def diameter(self) -> int:
        return int(self.dist.max())

    def ball(self, i: int, kappa: int) -> np.ndarray:
        """N_i^κ as a sorted array of agent ids."""
        return np.flatnonzero(self.dist[i] <= kappa)

    def local_probs(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """P_i(s'_i = x | s, a) for a batch: states, actions [B, n] → [B, n, k_s]."""
        states, actions = np.asarray(states), np.asarray(actions)
        n = self.n_agents
        agents = np.arange(n)
        own = self.K[agents, states, actions]  # [B, n, k_s]
        push = self.G[agents, states, actions]  # [B, n(j), k_s]: what agent j pushes towards
        off = self.W - np.diag(np.diag(self.W))
        probs = self.own_weight * own + np.einsum("ij,bjx->bix", off, push)
        return probs + self.noise_weight[None, :, None] / self.n_local_states

    def sample_next(self, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw s' [B, n] given (s, a) [B, n] (independent local draws, the transition decomposition)."""
        cdf = np.cumsum(self.local_probs(states, actions), axis=-1)
        u = rng.random(cdf.shape[:-1] + (1,))
        return np.minimum((u > cdf).sum(axis=-1), self.n_local_states - 1)

    def decay_matrix(self) -> np.ndarray:
        """Assumption 1's M [n, n] (eq. 11) by brute force over global (s, a): for every i and j, the
        largest TV between P_i(·|s, a) and P_i(·|s, a) with agent j's (s_j, a_j) changed. Small
        instances only (k_s^n·k_a^n·k_s·k_a evaluations per j)."""
        n, ks, ka = self.n_agents, self.n_local_states, self.n_local_actions
        grid = np.stack(np.unravel_index(np.arange((ks * ka) ** n), (ks * ka,) * n), axis=1)  # [B, n] pairs
        s, a = grid // ka, grid % ka
        base = self.local_probs(s, a)  # [B, n, k_s]
        M = np.zeros((n, n))
        for j in range(n):
            for x in range(ks * ka):
                s2, a2 = s.copy(), a.copy()
                s2[:, j], a2[:, j] = x // ka, x % ka
                tv = 0.5 * np.abs(self.local_probs(s2, a2) - base).sum(axis=-1)  # [B, n]
                M[:, j] = np.maximum(M[:, j], tv.max(axis=0))
        return M

    def assumption1_rho(self, beta: float, M: np.ndarray | None = None) -> float:
        """ρ(β) = max_i Σ_j e^{β·d(i,j)}·M_ij (eq. 12); Assumption 1 needs ρ(β) < 1/γ."""
        M = self.decay_matrix() if M is None else M
        return float((np.exp(beta * self.dist) * M).sum(axis=1).max())


# --------------------------------------------------------------------------- policies


def softmax_policy(theta: np.ndarray) -> np.ndarray:
    """π^i(a | x) = softmax(θ[i, x])_a for θ [n, k_s, k_a]."""
    z = theta - theta.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- exact solver


class ExactSolver:
    """Everything of §2–3 computed exactly by enumerating global states and actions.

    Indexing: global state s ∈ [0, k_s^n) and action a ∈ [0, k_a^n) in C order, agent 0 the most
    significant digit; ``S_loc`` [S, n] and ``A_loc`` [A, n] decode them. ξ draws every local state
    independently from ``mdp.start`` (uniform by default), matching the VecTask's reset.
    """

    def __init__(self, mdp: NetworkedMDP, gamma: float = 0.9, max_entries: int = 1 << 22) -> None:
        if not 0.0 <= gamma < 1.0:
            raise ValueError("gamma must be in [0, 1)")
        self.mdp, self.gamma = mdp, float(gamma)
        n, ks, ka = mdp.n_agents, mdp.n_local_states, mdp.n_local_actions
        self.n, self.S, self.A = n, ks ** n, ka ** n
        if self.S * self.A > 1 << 24:
            raise ValueError(f"{self.S}x{self.A} global state-action pairs is too large for the exact solver")
        self.S_loc = np.stack(np.unravel_index(np.arange(self.S), (ks,) * n), axis=1)
        self.A_loc = np.stack(np.unravel_index(np.arange(self.A), (ka,) * n), axis=1)
        self.xi = mdp.start[self.S_loc].prod(axis=1)
        self._chunk = max(1, max_entries // (self.A * self.S))
        # P_i(s'_i | s, a) for all (s, a): [S, A, n, k_s]
        s_rep = np.repeat(self.S_loc, self.A, axis=0)
        a_rep = np.tile(self.A_loc, (self.S, 1))
        self.local = mdp.local_probs(s_rep, a_rep).reshape(self.S, self.A, n, ks)
        # the dense kernel is kept when it fits in max_entries floats, else rebuilt chunk by chunk
        self._dense = self._build(0, self.S) if self.S * self.A * self.S <= max_entries else None

    # ----- transitions
    def _build(self, s_lo: int, s_hi: int) -> np.ndarray:
        loc = self.local[s_lo:s_hi]  # [c, A, n, k_s]
        out = loc[:, :, 0, :]
        for i in range(1, self.n):
            out = (out[..., :, None] * loc[:, :, i, None, :]).reshape(out.shape[0], self.A, -1)
        return out

    def _next_dist(self, s_lo: int, s_hi: int) -> np.ndarray:
        """P(s' | s, a) for s in [s_lo, s_hi): [c, A, S'] = Π_i P_i(s'_i | s, a)."""
        if self._dense is not None:
            return self._dense[s_lo:s_hi]
        return self._build(s_lo, s_hi)

    def _chunks(self):
        step = self.S if self._dense is not None else self._chunk
        for lo in range(0, self.S, step):
            yield lo, min(self.S, lo + step)

    def transition(self) -> np.ndarray:
        """The dense kernel P [S, A, S'] (small instances only)."""
        return self._next_dist(0, self.S)

    def joint_policy(self, pi_local: np.ndarray) -> np.ndarray:
        """π(a | s) = Π_i π^i(a_i | s_i) as [S, A] from per-agent tables [n, k_s, k_a]."""
        out = np.ones((self.S, self.A))
        for i in range(self.n):
            out *= pi_local[i][self.S_loc[:, i]][:, self.A_loc[:, i]]
        return out

    def state_transition(self, pi: np.ndarray) -> np.ndarray:
        """P_π [S, S'] = Σ_a π(a|s)·P(s'|s, a)."""
        out = np.empty((self.S, self.S))
        for lo, hi in self._chunks():
            out[lo:hi] = np.einsum("ca,cas->cs", pi[lo:hi], self._next_dist(lo, hi))
        return out

    # ----- evaluation
    def occupancy(self, theta: np.ndarray) -> dict:
        """The policy's occupancy: ``pi_local``, ``pi`` [S, A], ``P_pi`` [S, S], ``d`` [S] (discounted
        state occupancy, Σ = 1/(1−γ)), ``lam`` [S, A] (eq. 2), ``lam_local`` [n, k_s, k_a] (eq. 4)."""
        pi_local = softmax_policy(np.asarray(theta, dtype=np.float64))
        pi = self.joint_policy(pi_local)
        P_pi = self.state_transition(pi)
        d = np.linalg.solve((np.eye(self.S) - self.gamma * P_pi).T, self.xi)
        lam = d[:, None] * pi
        lam_local = np.zeros((self.n, self.mdp.n_local_states, self.mdp.n_local_actions))
        for i in range(self.n):
            np.add.at(lam_local[i], (self.S_loc[:, i][:, None], self.A_loc[:, i][None, :]), lam)
        return {"pi_local": pi_local, "pi": pi, "P_pi": P_pi, "d": d, "lam": lam, "lam_local": lam_local}

    def evaluate(self, theta: np.ndarray, rewards: np.ndarray | None = None, occ: dict | None = None) -> dict:
        """Exact quantities of the softmax policy θ [n, k_s, k_a] under local rewards
        ``rewards`` [n, k_s, k_a] (default: the model's R): :meth:`occupancy`'s entries plus
        ``V`` [S, n] and ``Q`` [S, A, n] (Q_j under reward r_j, eq. 7) and ``value`` [n]
        (⟨r_j, λ_j⟩). ``occ``: a precomputed :meth:`occupancy` of the same θ."""
        rewards = self.mdp.R if rewards is None else np.asarray(rewards, dtype=np.float64)
        ev = dict(occ) if occ is not None else self.occupancy(theta)
        pi = ev["pi"]
        r_sa = np.stack([rewards[j][self.S_loc[:, j]][:, self.A_loc[:, j]] for j in range(self.n)], axis=-1)
        r_pi = np.einsum("sa,saj->sj", pi, r_sa)
        V = np.linalg.solve(np.eye(self.S) - self.gamma * ev["P_pi"], r_pi)  # [S, n]
        Q = np.empty((self.S, self.A, self.n))
        for lo, hi in self._chunks():
            Q[lo:hi] = r_sa[lo:hi] + self.gamma * np.einsum("cas,sj->caj", self._next_dist(lo, hi), V)
        value = np.einsum("nxb,nxb->n", ev["lam_local"], rewards)
        ev.update({"V": V, "Q": Q, "value": value, "rewards": rewards})
        return ev

    def utility_value(self, theta: np.ndarray, f: Utility) -> float:
        """F(θ) = (1/n)·Σ_i f_i(λ_i) alone, f(λ_i, γ) → (f_i, ∇f_i) (e.g. agentd.learner.utility)."""
        lam = self.occupancy(theta)["lam_local"]
        return float(np.mean([f(lam[i], self.gamma)[0] for i in range(self.n)]))

    def utility(self, theta: np.ndarray, f: Utility) -> tuple[float, np.ndarray, dict]:
        """F(θ) = (1/n)·Σ_i f_i(λ_i), the shadow rewards ∇f_i(λ_i) [n, k_s, k_a], and :meth:`evaluate`
        under those shadow rewards (so ``Q`` holds the shadow Q-functions of Lemma 1 and
        :meth:`gradient` gives ∇F)."""
        occ = self.occupancy(theta)
        vals, grads = zip(*(f(occ["lam_local"][i], self.gamma) for i in range(self.n)))
        shadow = np.stack(grads)
        return float(np.mean(vals)), shadow, self.evaluate(theta, shadow, occ)

    # ----- gradients
    def _score_weighted(self, ev: dict, i: int, q: np.ndarray) -> np.ndarray:
        """Σ_{s,a} λ(s,a)·ψ_i(a_i|s_i)·q(s,a) for the tabular softmax of agent i → [k_s, k_a]."""
        ks, ka = self.mdp.n_local_states, self.mdp.n_local_actions
        w = ev["lam"] * q  # [S, A]
        # Σ_{s: s_i = x} Σ_{a: a_i = b} w(s, a), and Σ_{s: s_i = x} Σ_a w(s, a)
        by_xb = np.zeros((ks, ka))
        np.add.at(by_xb, (self.S_loc[:, i][:, None], self.A_loc[:, i][None, :]), w)
        return by_xb - ev["pi_local"][i] * by_xb.sum(axis=1, keepdims=True)

    def gradient(self, ev: dict) -> np.ndarray:
        """The exact policy gradient ∇_{θ_i} F for every i (eq. 10) → [n, k_s, k_a], where F is the
        average of the values of the rewards ``ev`` was computed with: (1/n)·Σ_j ⟨r_j, λ_j⟩."""
        qbar = ev["Q"].mean(axis=-1)
        return np.stack([self._score_weighted(ev, i, qbar) for i in range(self.n)])

    def truncated_q(self, ev: dict, kappa: int, s_bar: int = 0, a_bar: int = 0) -> np.ndarray:
        """Q̂_j(s, a) = Q_j(s_{N_j^κ}, s̄, a_{N_j^κ}, ā) (eq. 14) broadcast back to [S, A, n]."""
        ks, ka = self.mdp.n_local_states, self.mdp.n_local_actions
        out = np.empty_like(ev["Q"])
        for j in range(self.n):
            inside = self.mdp.dist[j] <= kappa
            s_m = np.where(inside[None, :], self.S_loc, s_bar)
            a_m = np.where(inside[None, :], self.A_loc, a_bar)
            s_idx = np.ravel_multi_index(tuple(s_m.T), (ks,) * self.n)
            a_idx = np.ravel_multi_index(tuple(a_m.T), (ka,) * self.n)
            out[:, :, j] = ev["Q"][s_idx[:, None], a_idx[None, :], j]
        return out

    def truncated_gradient(self, ev: dict, kappa: int) -> np.ndarray:
        """ĝ_i (eq. 15): the score-weighted (1/n)·Σ_{j ∈ N_i^κ} Q̂_j → [n, k_s, k_a]."""
        qhat = self.truncated_q(ev, kappa)
        out = []
        for i in range(self.n):
            members = self.mdp.dist[i] <= kappa
            out.append(self._score_weighted(ev, i, qhat[:, :, members].sum(axis=-1) / self.n))
        return np.stack(out)


# --------------------------------------------------------------------------- VecTask


class NetworkedMDPTask(VecTask):
    spec = TaskSpec(
        name="networked-mdp",
        agents=tuple(AgentSpec(obs_dim=N_LOCAL_STATES, act_kind="discrete", act_dim=1, n_actions=N_LOCAL_ACTIONS,
                               obs_desc=f"one-hot of its own local state ({N_LOCAL_STATES})")
                     for _ in range(N_AGENTS)),
        episode_length=HORIZON,
        topology="line",
        description=f"networked MDP (scalable-general-utilities §2): {N_AGENTS} agents on a line, local "
                    f"states/actions {N_LOCAL_STATES}x{N_LOCAL_ACTIONS}, influence decaying as {DECAY}^(d-1); "
                    f"team reward mean_i R_i(s_i, a_i)",
    )

    def __init__(self, n_envs: int, seed: int, game_seed: int = 0, mdp: NetworkedMDP | None = None) -> None:
        super().__init__(n_envs, seed)
        self.mdp = mdp if mdp is not None else NetworkedMDP(game_seed=game_seed)
        if mdp is not None:
            n, ks, ka = mdp.n_agents, mdp.n_local_states, mdp.n_local_actions
            self.spec = TaskSpec(
                name="networked-mdp-custom",
                agents=tuple(AgentSpec(obs_dim=ks, act_kind="discrete", act_dim=1, n_actions=ka,
                                       obs_desc=f"one-hot of its own local state ({ks})") for _ in range(n)),
                episode_length=HORIZON, topology="line", description="networked MDP (custom instance)")
        self.rng = np.random.default_rng(seed)
        n = self.mdp.n_agents
        self.state = np.zeros((n_envs, n), dtype=np.int64)
        self.t = np.zeros(n_envs, dtype=np.int64)
        self._eye = np.eye(self.mdp.n_local_states, dtype=np.float32)

    def _obs(self) -> list[np.ndarray]:
        return [self._eye[self.state[:, i]] for i in range(self.mdp.n_agents)]

    def _fresh(self, k: int) -> np.ndarray:
        """k rows of initial local states drawn from ξ; a uniform start keeps integers(), so the seeded
        episodes of `networked-mdp` are the ones they were before ``start`` existed."""
        m = self.mdp
        if np.allclose(m.start, 1.0 / m.n_local_states):
            return self.rng.integers(0, m.n_local_states, (k, m.n_agents))
        return self.rng.choice(m.n_local_states, size=(k, m.n_agents), p=m.start)

    def reset(self) -> list[np.ndarray]:
        self.state = self._fresh(self.n_envs)
        self.t[:] = 0
        return self._obs()

    def step(self, actions: list[np.ndarray]) -> StepResult:
        m = self.mdp
        act = np.clip(np.stack([np.asarray(a, dtype=np.int64).reshape(self.n_envs) for a in actions], axis=1),
                      0, m.n_local_actions - 1)
        agents = np.arange(m.n_agents)
        reward = m.R[agents, self.state, act].mean(axis=1).astype(np.float32)
        self.state = m.sample_next(self.state, act, self.rng)
        self.t += 1
        truncated = self.t >= self.spec.episode_length
        if truncated.any():
            self.state[truncated] = self._fresh(int(truncated.sum()))
            self.t[truncated] = 0
        cost = np.zeros((self.n_envs, 0), dtype=np.float32)
        return StepResult(obs=self._obs(), reward=reward, cost=[cost] * m.n_agents,
                          terminated=np.zeros(self.n_envs, dtype=bool), truncated=truncated)


def ring_task(n: int) -> type[NetworkedMDPTask]:
    """The networked MDP with ``n`` agents on a ring: the scaling task of the benchmark suite
    (bench/scaling.py), since no other task has tens of agents. Same tables and decay as
    `networked-mdp`; only the agent count and the graph differ."""
    ring = nx.cycle_graph(n)
    spec = TaskSpec(
        name=f"networked-mdp-ring{n}",
        agents=tuple(AgentSpec(obs_dim=N_LOCAL_STATES, act_kind="discrete", act_dim=1, n_actions=N_LOCAL_ACTIONS,
                               obs_desc=f"one-hot of its own local state ({N_LOCAL_STATES})") for _ in range(n)),
        episode_length=HORIZON, topology="ring",
        description=f"networked MDP as networked-mdp, {n} agents on a ring (the benchmark's scaling task)")

    def __init__(self, n_envs: int, seed: int, game_seed: int = 0) -> None:
        NetworkedMDPTask.__init__(self, n_envs, seed, mdp=NetworkedMDP(n_agents=n, graph=ring, game_seed=game_seed))
        self.spec = spec

    return type(f"NetworkedMDPRing{n}", (NetworkedMDPTask,), {"spec": spec, "__init__": __init__})


RING_SIZES = (16, 32, 64, 128, 256)  # 128 and 256: the memory benchmark's large swarms (bench/memory.py)
NetworkedMDPRing16, NetworkedMDPRing32, NetworkedMDPRing64, NetworkedMDPRing128, NetworkedMDPRing256 = (
    ring_task(n) for n in RING_SIZES)


class NetworkedMDPStart0(NetworkedMDPTask):
    """`networked-mdp` with every agent starting each episode in local state 0: a start distribution
    ξ far from the uniform one the entropy utility wants, so that the discounted occupancy from ξ
    (eq. 4) and the episode's time-average have different optima (experiments/shadow_pg_occupancy.py)."""

    spec = dataclasses.replace(NetworkedMDPTask.spec, name="networked-mdp-start0",
                               description="networked MDP as networked-mdp, every agent starting each episode "
                                           "in local state 0")

    def __init__(self, n_envs: int, seed: int, game_seed: int = 0) -> None:
        start = np.eye(N_LOCAL_STATES)[0]
        super().__init__(n_envs, seed, mdp=NetworkedMDP(game_seed=game_seed, start=start))
        self.spec = NetworkedMDPStart0.spec
