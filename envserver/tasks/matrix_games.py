"""The four two-player matrix games of the DPO paper (dpo.md appendix C, Table 3 and Fig. 11), as
one-step VecTasks, plus the paper's *exact* iteration (17) solved numerically.

Table 3: agent 0 picks the row (action 0 with probability p), agent 1 the column (action 0 with
probability q); the joint actions (0,0), (0,1), (1,0), (1,1) pay a, b, c, d:

    Matrix Game 1  (a, b, c, d) = (5, 7, 6, 4)
    Matrix Game 2  (a, b, c, d) = (1, 3, 5, 4)
    Matrix Game 3  (a, b, c, d) = (7, 1, 1, 3)
    Matrix Game 4  (a, b, c, d) = (20, 0, 0, 10)

so J(π) = pq·a + p(1−q)·b + (1−p)q·c + (1−p)(1−q)·d. Each episode is one step (the paper's J is
the expected payoff of one play); the observation is a constant 1, the reward the payoff of the
joint action, shared by both agents.

The exact iteration (dpo.md eq. 17/18), for every agent i at once from the joint policy π_t:

    π^i_{t+1} = argmax_{π^i}  (1/N)·L^i(π^i) − M̂·sqrt(KL(π^i_t ‖ π^i)) − C·KL(π^i_t ‖ π^i),
    L^i(π^i) = Σ_{a_i} π^i(a_i)·A^i_t(a_i),   A^i_t(a_i) = E_{a_{−i}∼π^{−i}_t}[R(a_i, a_{−i})] − J(π_t),

maximised over the probability simplex of agent i (for two actions a bounded 1-D problem, solved
on each side of π^i_t, where the objective is smooth, and checked on a dense grid).

The constant M̂. The paper's derivation (eq. 13–16) gives M̂ = M̃·sqrt((N−1)/N) with
M̃ = 2·r_max/(1−γ); a one-step game has γ = 0, so M̂ = sqrt((N−1)/N)·2·r_max, r_max = max |R|
(:func:`theory_m_hat`). Typeset, Theorem 3.3 reads M̂ = sqrt((N−1)/N · 2r_max/(1−γ)) (the square
root over everything), which does not scale with the rewards; :func:`literal_m_hat` returns it so
both readings can be compared. Note (Pinsker, KL ≥ 2·TV²) that with the derivation's M̂ the
surrogate is < 0 for every π^i ≠ π^i_t, whatever the game: (1/N)·(L^i(π^i) − L^i(π^i_t)) ≤
TV·range(A^i)/N ≤ TV·2M/N while M̂·sqrt(KL) ≥ sqrt(2)·M̂·TV = 2M·sqrt(2(N−1)/N)·TV. The iteration
with the theorem's constant therefore never leaves its starting point — monotone, trivially.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np

from .base import AgentSpec, StepResult, TaskSpec, VecTask

PAYOFFS: dict[int, tuple[float, float, float, float]] = {
    1: (5.0, 7.0, 6.0, 4.0),
    2: (1.0, 3.0, 5.0, 4.0),
    3: (7.0, 1.0, 1.0, 3.0),
    4: (20.0, 0.0, 0.0, 10.0),
}
C_PAPER = 10.0  # dpo.md appendix C: "We choose C = 10 in all the experiments"


def payoff_matrix(game: int | str | np.ndarray) -> np.ndarray:
    """R[a_0, a_1, ...] for a game number 1..4, a task name ``matrix-game-k``, or an explicit array."""
    if isinstance(game, str):
        if not game.startswith("matrix-game-"):
            raise ValueError(f"not a matrix game: {game!r}")
        game = int(game.rsplit("-", 1)[1])
    if isinstance(game, (int, np.integer)):
        if int(game) not in PAYOFFS:
            raise ValueError(f"matrix game must be one of {sorted(PAYOFFS)}, got {game}")
        a, b, c, d = PAYOFFS[int(game)]
        return np.array([[a, b], [c, d]], dtype=np.float64)
    R = np.asarray(game, dtype=np.float64)
    if R.ndim < 2:
        raise ValueError("a payoff tensor needs one axis per agent (at least 2)")
    return R


# --------------------------------------------------------------------------- exact quantities


def joint_return(R: np.ndarray, policies: Sequence[np.ndarray]) -> float:
    """J(π) = E_{a∼Π_i π^i}[R(a)]."""
    out = R
    for pi in policies:
        out = np.tensordot(pi, out, axes=(0, 0))  # contract the leading (current agent's) axis
    return float(out)


def individual_payoff(R: np.ndarray, policies: Sequence[np.ndarray], i: int) -> np.ndarray:
    """E_{a_{−i}∼π^{−i}}[R(a_i, a_{−i})] for every a_i."""
    out = np.moveaxis(R, i, 0)
    for j, pi in enumerate(policies):
        if j != i:
            out = np.tensordot(out, pi, axes=(1, 0))  # axis 1 is always the next remaining agent
    return out


def individual_advantage(R: np.ndarray, policies: Sequence[np.ndarray], i: int) -> np.ndarray:
    """A^i(a_i) = E_{π^{−i}}[A(a_i, a_{−i})] = E_{π^{−i}}[R(a_i, a_{−i})] − J(π) (dpo.md eq. 7)."""
    return individual_payoff(R, policies, i) - joint_return(R, policies)


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p ‖ q) for distributions on the same finite set (0·log 0 = 0; +inf off q's support)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    mask = p > 0
    if np.any(q[mask] <= 0):
        return float("inf")
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def theory_m_hat(R: np.ndarray, gamma: float = 0.0) -> float:
    """M̂ = sqrt((N−1)/N)·2·r_max/(1−γ) (dpo.md eq. 13–16 with M̃ = 2r_max/(1−γ)); γ = 0 for one step."""
    n = R.ndim
    return float(np.sqrt((n - 1) / n) * 2.0 * np.abs(R).max() / (1.0 - gamma))


def literal_m_hat(R: np.ndarray, gamma: float = 0.0) -> float:
    """M̂ as Theorem 3.3 is typeset: sqrt((N−1)/N · 2·r_max/(1−γ))."""
    n = R.ndim
    return float(np.sqrt((n - 1) / n * 2.0 * np.abs(R).max() / (1.0 - gamma)))


def surrogate(pi: np.ndarray, pi_old: np.ndarray, adv: np.ndarray, n_agents: int, m_hat: float, c: float) -> float:
    """Agent i's decentralized surrogate (dpo.md eq. 17) at π^i = ``pi``; 0 at π^i = π^i_old."""
    d = kl(pi_old, pi)
    if not np.isfinite(d):
        return -np.inf
    d = max(d, 0.0)  # rounding can make a KL of nearly equal distributions −1e−17
    return float(np.dot(pi, adv) / n_agents - m_hat * np.sqrt(d) - c * d)


def _surrogate_2(p: np.ndarray, p_old: float, adv: np.ndarray, n_agents: int, m_hat: float, c: float) -> np.ndarray:
    """:func:`surrogate` for two actions, vectorised over p = π^i(action 0) ∈ (0, 1)."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.zeros_like(p)
        if p_old > 0:
            d = d + p_old * np.log(p_old / p)
        if p_old < 1:
            d = d + (1 - p_old) * np.log((1 - p_old) / (1 - p))
    d = np.maximum(d, 0.0)
    out = (p * adv[0] + (1 - p) * adv[1]) / n_agents - m_hat * np.sqrt(d) - c * d
    return np.where(np.isfinite(out), out, -np.inf)


def _golden_max(f, lo: float, hi: float, tol: float = 1e-13, iters: int = 200) -> float:
    """Golden-section search for the maximiser of f on [lo, hi] (f unimodal there)."""
    g = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        if b - a < tol:
            break
        if fc >= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return (a + b) / 2.0


def _maximise_2(fun, p_old: float, grid: int = 4001, eps: float = 1e-12) -> float:
    """argmax over p ∈ [0, 1] of the vectorised fun(p): a dense grid, then golden-section refinement
    between the best grid point's neighbours, separately on each side of p_old (the surrogate has
    a cusp at p_old and is smooth on either side). p_old itself (surrogate 0) is always a
    candidate, so a step never lowers the surrogate."""
    f1 = lambda x: float(fun(np.array([x]))[0])
    xs = np.linspace(eps, 1.0 - eps, grid)
    vals = fun(xs)
    cands = [p_old]
    for left in (True, False):
        idx = np.flatnonzero(xs < p_old if left else xs > p_old)
        if len(idx) == 0:
            continue
        k = int(idx[int(np.argmax(vals[idx]))])
        lo, hi = float(xs[max(k - 1, 0)]), float(xs[min(k + 1, grid - 1)])
        lo, hi = (lo, min(hi, p_old)) if left else (max(lo, p_old), hi)
        cands += [float(xs[k]), _golden_max(f1, lo, hi)]
    best = max(cands, key=f1)
    return best if f1(best) > f1(p_old) else p_old


def _maximise_simplex(fun, pi_old: np.ndarray, starts: int = 8, seed: int = 0) -> np.ndarray:
    """argmax over the probability simplex (k > 2 actions): SLSQP from π_old and random interior
    starts. Needs scipy (two-action games, the paper's, do not)."""
    from scipy.optimize import minimize

    k = len(pi_old)
    rng = np.random.default_rng(seed)
    best, best_val = pi_old.copy(), fun(pi_old)
    inits = [0.5 * pi_old + 0.5 / k] + [rng.dirichlet(np.ones(k)) for _ in range(starts)]
    cons = ({"type": "eq", "fun": lambda x: x.sum() - 1.0},)
    for x0 in inits:
        res = minimize(lambda x: -fun(np.clip(x, 1e-12, 1.0)), x0, method="SLSQP", bounds=[(1e-12, 1.0)] * k,
                       constraints=cons, options={"ftol": 1e-14, "maxiter": 500})
        x = np.clip(res.x, 1e-12, 1.0)
        x /= x.sum()
        v = fun(x)
        if v > best_val:
            best, best_val = x, v
    return best


def dpo_step(R: np.ndarray, policies: Sequence[np.ndarray], m_hat: float, c: float) -> list[np.ndarray]:
    """One step of iteration (17)/(18): every agent maximises its own surrogate against π_t."""
    n = R.ndim
    new = []
    for i, pi_old in enumerate(policies):
        adv = individual_advantage(R, policies, i)
        if len(pi_old) == 2:
            fun2 = partial(_surrogate_2, p_old=float(pi_old[0]), adv=adv, n_agents=n, m_hat=m_hat, c=c)
            p = _maximise_2(fun2, float(pi_old[0]))
            new.append(np.array([p, 1.0 - p]))
        else:
            fun = partial(surrogate, pi_old=pi_old, adv=adv, n_agents=n, m_hat=m_hat, c=c)
            new.append(_maximise_simplex(fun, np.asarray(pi_old, dtype=np.float64)))
    return new


def exact_dpo_iteration(game: int | str | np.ndarray, steps: int = 50, M: float | str | None = None,
                        C: float = C_PAPER, init: Sequence[float] | Sequence[np.ndarray] | None = None) -> dict:
    """Run iteration (17) exactly for ``steps`` steps; return J(π_t) for t = 0..steps.

    ``M`` is the coefficient M̂ of sqrt(KL): a number, ``"theory"`` / None (:func:`theory_m_hat`)
    or ``"literal"`` (:func:`literal_m_hat`). ``init`` gives each agent's starting policy, either
    as the probability of action 0 (two actions: the paper's p, q) or as full distributions;
    default uniform. Returns ``{"J": [steps+1], "policies": [steps+1, N, k], "M_hat", "C",
    "surrogate_gain": [steps] (Σ_i surrogate_i at π_{t+1}, ≥ 0 by construction)}``.
    """
    R = payoff_matrix(game)
    n = R.ndim
    if M is None or M == "theory":
        m_hat = theory_m_hat(R)
    elif M == "literal":
        m_hat = literal_m_hat(R)
    else:
        m_hat = float(M)
    if init is None:
        pols = [np.full(k, 1.0 / k) for k in R.shape]
    else:
        pols = [np.array([float(x), 1.0 - float(x)]) if np.ndim(x) == 0 else np.asarray(x, dtype=np.float64)
                for x in init]
    if len(pols) != n:
        raise ValueError(f"init needs one policy per agent ({n})")
    history, js, gains = [np.stack(pols)], [joint_return(R, pols)], []
    for _ in range(steps):
        new = dpo_step(R, pols, m_hat, C)
        gains.append(sum(surrogate(new[i], pols[i], individual_advantage(R, pols, i), n, m_hat, C)
                         for i in range(n)))
        pols = new
        history.append(np.stack(pols))
        js.append(joint_return(R, pols))
    return {"J": np.array(js), "policies": np.stack(history), "M_hat": m_hat, "C": float(C),
            "surrogate_gain": np.array(gains), "payoff": R}


# --------------------------------------------------------------------------- VecTask


class MatrixGame(VecTask):
    """One-step two-player matrix game (dpo.md Table 3); subclasses fix the payoffs."""

    game: int = 0
    spec: TaskSpec

    def __init__(self, n_envs: int, seed: int) -> None:
        super().__init__(n_envs, seed)
        self.R = payoff_matrix(self.game).astype(np.float32)
        self._obs = np.ones((n_envs, 1), dtype=np.float32)

    def optimum(self) -> float:
        """The best joint action's payoff (a deterministic joint policy attains it)."""
        return float(self.R.max())

    def evaluate(self, p: float, q: float) -> float:
        """Exact J(π) of the joint policy (p, q) (probabilities of action 0)."""
        return joint_return(self.R.astype(np.float64), [np.array([p, 1 - p]), np.array([q, 1 - q])])

    def reset(self) -> list[np.ndarray]:
        return [self._obs, self._obs]

    def step(self, actions: list[np.ndarray]) -> StepResult:
        a0, a1 = (np.clip(np.asarray(a, dtype=np.int64).reshape(self.n_envs), 0, 1) for a in actions)
        reward = self.R[a0, a1].astype(np.float32)
        cost = np.zeros((self.n_envs, 0), dtype=np.float32)
        return StepResult(obs=[self._obs, self._obs], reward=reward, cost=[cost, cost],
                          terminated=np.ones(self.n_envs, dtype=bool), truncated=np.zeros(self.n_envs, dtype=bool))


def _game_class(k: int) -> type[MatrixGame]:
    a, b, c, d = PAYOFFS[k]
    spec = TaskSpec(
        name=f"matrix-game-{k}",
        agents=tuple(AgentSpec(obs_dim=1, act_kind="discrete", act_dim=1, n_actions=2,
                               obs_desc="constant 1 (a one-shot game has no state)") for _ in range(2)),
        episode_length=1,
        topology="complete",
        description=f"DPO paper's Matrix Game {k} (Table 3): one-step, 2 agents x 2 actions, "
                    f"payoffs (a,b,c,d) = ({a:g},{b:g},{c:g},{d:g}), shared reward",
    )
    return type(f"MatrixGame{k}", (MatrixGame,), {"game": k, "spec": spec, "__doc__": spec.description})


MatrixGame1 = _game_class(1)
MatrixGame2 = _game_class(2)
MatrixGame3 = _game_class(3)
MatrixGame4 = _game_class(4)
