"""A tabular, in-process reference of scalable-general-utilities.md Algorithm 1 (distributed policy
gradient with shadow reward and localized policy), run on the networked MDP with the
local-occupancy entropy utility, and checked against the exact solver.

One iteration t, for every agent i at once (the paper's lines 3–7):

  3  sample B trajectories of length H under π_θ from ξ (uniform local states);
  4  λ̃_i = (1/B)·Σ_τ Σ_k γ^k·e_i(s_i^k, a_i^k)                                   (eq. 20)
     r̃_i = ∇_{λ_i} f_i(λ̃_i),  f_i = entropy of the local state occupancy        (shadow reward)
  5  Q̃_i(s_{N_i^κ}, a_{N_i^κ}): the κ-truncated shadow Q of r̃_i, estimated by every-visit Monte
     Carlo over the truncated key (any estimator meeting Assumption 4 is allowed; returns are
     summed to the end of the trajectory and only visits at k < H − L enter the table, L chosen so
     γ^L < 0.01, which keeps the truncation-in-time bias below 1%);
  6  g̃_i = (1/B)·Σ_τ Σ_k γ^k·ψ_i(a_i^k | s_i^k)·(1/n)·Σ_{j ∈ N_i^κ} Q̃_j(s^k_{N_j^κ}, a^k_{N_j^κ})  (eq. 21;
     the paper prints Q̃_i inside the sum, eq. 15 and Prop. 2 make clear it is Q̃_j);
  7  θ_i ← θ_i + η·g̃_i                                                          (eq. 22).

The policy is the localized tabular softmax π^i(a_i | s_i) (the κ = 0 policy class; every κ here
is the radius of the critic/communication, as in khop). The distributed agentd learner
(``--algo shadow-pg``, agentd/learner/shadow_pg.py) is a practical variant of the same algorithm
(MLP actor, Adam, TD(λ) critic on lockstep samples), not a step-for-step copy of this reference.

    python -m experiments.shadow_pg
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from agentd.learner.utility import entropy_utility
from envserver.tasks.networked_mdp import ExactSolver, NetworkedMDP, softmax_policy
from experiments.common import RESULTS, ci95, figure, write_table


class ShadowPG:
    """Algorithm 1 with a Monte-Carlo truncated-Q oracle (see module doc)."""

    def __init__(self, mdp: NetworkedMDP, kappa: int, gamma: float = 0.9, batch: int = 64, horizon: int = 80,
                 lr: float = 5.0, floor: float = 1e-3, seed: int = 0, utility=entropy_utility) -> None:
        self.mdp, self.kappa, self.gamma = mdp, int(kappa), float(gamma)
        self.B, self.H, self.lr, self.floor = int(batch), int(horizon), float(lr), float(floor)
        self.utility = utility
        self.rng = np.random.default_rng(seed)
        self.n = mdp.n_agents
        self.ks, self.ka = mdp.n_local_states, mdp.n_local_actions
        self.balls = [mdp.ball(i, self.kappa) for i in range(self.n)]
        self.disc = self.gamma ** np.arange(self.H)
        self.q_horizon = max(1, self.H - math.ceil(math.log(0.01) / math.log(self.gamma)))

    def sample(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """B trajectories: states and actions [B, H, n] (line 3)."""
        pi = softmax_policy(theta)
        S = np.empty((self.B, self.H, self.n), dtype=np.int64)
        A = np.empty_like(S)
        s = self.rng.integers(0, self.ks, (self.B, self.n))
        agents = np.arange(self.n)
        for k in range(self.H):
            cdf = np.cumsum(pi[agents, s], axis=-1)  # [B, n, ka]
            a = np.minimum((self.rng.random((self.B, self.n, 1)) > cdf).sum(-1), self.ka - 1)
            S[:, k], A[:, k] = s, a
            s = self.mdp.sample_next(s, a, self.rng)
        return S, A

    def occupancy(self, S: np.ndarray, A: np.ndarray) -> np.ndarray:
        """λ̃_i [n, k_s, k_a] (eq. 20)."""
        lam = np.zeros((self.n, self.ks, self.ka))
        w = np.broadcast_to(self.disc[None, :], S.shape[:2])
        for i in range(self.n):
            np.add.at(lam[i], (S[:, :, i], A[:, :, i]), w)
        return lam / self.B

    def shadow_rewards(self, lam: np.ndarray) -> np.ndarray:
        """r̃_i = ∇f_i(λ̃_i) [n, k_s, k_a] (line 4)."""
        return np.stack([self.utility(lam[i], self.gamma, self.floor)[1] for i in range(self.n)])

    def _keys(self, S: np.ndarray, A: np.ndarray, j: int) -> tuple[np.ndarray, int]:
        members = self.balls[j]
        dims = (self.ks,) * len(members) + (self.ka,) * len(members)
        idx = tuple(S[:, :, m] for m in members) + tuple(A[:, :, m] for m in members)
        return np.ravel_multi_index(idx, dims), int(np.prod(dims))

    def truncated_q(self, S: np.ndarray, A: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Q̃_j evaluated at every visited (b, k): [B, H, n] (line 5, Monte Carlo)."""
        out = np.empty(S.shape, dtype=np.float64)
        for j in range(self.n):
            rew = r[j][S[:, :, j], A[:, :, j]]  # [B, H]
            G = np.zeros_like(rew)  # discounted return to the end of the trajectory
            acc = np.zeros(self.B)
            for k in range(self.H - 1, -1, -1):
                acc = rew[:, k] + self.gamma * acc
                G[:, k] = acc
            keys, size = self._keys(S, A, j)
            fit = np.s_[:, :self.q_horizon]
            tot = np.bincount(keys[fit].ravel(), weights=G[fit].ravel(), minlength=size)
            cnt = np.bincount(keys[fit].ravel(), minlength=size)
            table = np.where(cnt > 0, tot / np.maximum(cnt, 1), G[fit].mean())
            out[:, :, j] = table[keys]
        return out

    def gradient(self, theta: np.ndarray, S: np.ndarray, A: np.ndarray, q: np.ndarray) -> np.ndarray:
        """g̃_i [n, k_s, k_a] (eq. 21)."""
        pi = softmax_policy(theta)
        g = np.zeros_like(theta)
        eye_s, eye_a = np.eye(self.ks), np.eye(self.ka)
        for i in range(self.n):
            w = self.disc[None, :] * q[:, :, self.balls[i]].sum(axis=-1) / self.n  # [B, H]
            os_ = eye_s[S[:, :, i]] * w[..., None]  # [B, H, ks]
            g[i] = np.einsum("bhx,bha->xa", os_, eye_a[A[:, :, i]]) - pi[i] * os_.sum(axis=(0, 1))[:, None]
        return g / self.B

    def step(self, theta: np.ndarray) -> tuple[np.ndarray, dict]:
        S, A = self.sample(theta)
        lam = self.occupancy(S, A)
        r = self.shadow_rewards(lam)
        q = self.truncated_q(S, A, r)
        g = self.gradient(theta, S, A, q)
        return theta + self.lr * g, {"grad": g, "lam": lam}


def reset_advance_kernel(n: int, ks: int, ka: int = 2) -> np.ndarray:
    """Own dynamics that an agent fully controls: action 0 resets to state 0, action 1 advances
    one state (saturating). A uniform state occupancy needs a state-dependent policy."""
    K = np.zeros((n, ks, ka, ks))
    for s in range(ks):
        K[:, s, 0, 0] = 1.0
        K[:, s, 1, min(s + 1, ks - 1)] = 1.0
    return K


def build(n: int, ks: int, decay: float, game_seed: int) -> NetworkedMDP:
    return NetworkedMDP(n_agents=n, n_local_states=ks, n_local_actions=2, decay=decay, coupling=0.08, own_weight=0.7,
                        own_kernel=reset_advance_kernel(n, ks), game_seed=game_seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=5)
    p.add_argument("--local-states", type=int, default=3)
    p.add_argument("--decay", type=float, default=0.5)
    p.add_argument("--gamma", type=float, default=0.9)
    p.add_argument("--iters", type=int, default=150)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--horizon", type=int, default=80)
    p.add_argument("--lr", type=float, default=5.0)
    p.add_argument("--kappas", type=int, nargs="+", default=[0, 1, -1], help="-1: the graph's diameter")
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args(argv)
    t0 = time.monotonic()

    n, ks = args.agents, args.local_states
    theta0 = np.zeros((n, ks, 2))
    theta0[:, :, 0] = 2.0  # start near "always reset": the state occupancy piles up in state 0
    curves: dict[str, list[np.ndarray]] = {}
    best = -np.inf
    for seed in range(args.seeds):
        mdp = build(n, ks, args.decay, seed)  # the coupling kernels G and the noise differ by seed
        ex = ExactSolver(mdp, args.gamma)
        kappas = [mdp.diameter if k < 0 else k for k in args.kappas]
        # exact policy gradient (full information) with the same step size: the reference path
        th, F = theta0.copy(), []
        for _ in range(args.iters + 1):
            val, _, ev = ex.utility(th, entropy_utility)
            F.append(val)
            th = th + args.lr * ex.gradient(ev)
        curves.setdefault("exact ∇F", []).append(np.array(F))
        best = max(best, max(F))
        # exact κ = 0 truncated gradient: the truncation bias alone, without sampling noise
        th, F = theta0.copy(), []
        for _ in range(args.iters + 1):
            val, _, ev = ex.utility(th, entropy_utility)
            F.append(val)
            th = th + args.lr * ex.truncated_gradient(ev, 0)
        curves.setdefault("exact ĝ, κ=0", []).append(np.array(F))
        for kappa in kappas:
            alg = ShadowPG(mdp, kappa, args.gamma, args.batch, args.horizon, args.lr, seed=seed)
            th, F = theta0.copy(), []
            for _ in range(args.iters + 1):
                F.append(ex.utility_value(th, entropy_utility))
                th, _ = alg.step(th)
            name = f"Alg. 1, κ={kappa}" + (" (= diameter)" if kappa == mdp.diameter else "")
            curves.setdefault(name, []).append(np.array(F))
        print(f"seed {seed} done at {time.monotonic() - t0:.0f}s", flush=True)

    upper = math.log(ks)
    fig, axes = figure(1, 1, (7.0, 4.5))
    ax = axes[0, 0]
    for k, (name, cs) in enumerate(curves.items()):
        arr = np.array(cs)
        m, h = arr.mean(0), ci95(arr)
        ls = "--" if name.startswith("exact") else "-"
        ax.plot(m, ls=ls, label=name, color=f"C{k}")
        ax.fill_between(np.arange(len(m)), m - h, m + h, alpha=0.2, color=f"C{k}")
    ax.axhline(upper, color="k", ls=":", label=f"max entropy log {ks} = {upper:.4f}")
    ax.set_xlabel("iteration t")
    ax.set_ylabel("F(θ_t) = mean_i entropy of d_i (exact)")
    ax.set_title(f"Shadow-reward PG (Alg. 1), networked MDP: {n} agents on a line, δ = {args.decay}, "
                 f"{args.seeds} seeds", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "shadow_pg_entropy.png", dpi=120)

    f0 = float(np.mean([c[0] for c in curves["exact ∇F"]]))
    rows = []
    for name, cs in curves.items():
        arr = np.array(cs)
        final = arr[:, -1]
        frac = (arr - f0) / (upper - f0)
        hit = [int(np.argmax(f >= 0.95)) if (f >= 0.95).any() else -1 for f in frac]
        rows.append([name, round(f0, 4), f"{final.mean():.4f} ± {ci95(final):.4f}",
                     " / ".join(f"{v:.4f}" for v in final), f"{upper - final.mean():.2e}",
                     " / ".join(str(h) if h >= 0 else "never" for h in hit)])
    pre = (f"# Shadow-reward policy gradient (scalable-general-utilities.md Alg. 1) on an entropy utility\n\n"
           f"`python -m experiments.shadow_pg --agents {n} --local-states {ks} --decay {args.decay} "
           f"--gamma {args.gamma} --iters {args.iters} --batch {args.batch} --horizon {args.horizon} --lr {args.lr} "
           f"--seeds {args.seeds}`\n\n"
           f"Networked MDP: {n} agents on a line, {ks} local states, 2 actions (0 resets to state 0, 1 advances), "
           f"own weight 0.7, coupling 0.08·{args.decay}^(d−1), random coupling kernels per seed; γ = {args.gamma}; "
           f"utility F = (1/n)·Σ_i H(d_i), d_i the local discounted state occupancy; its maximum is log {ks} = "
           f"{upper:.4f} (best exact-PG value reached: {best:.4f}). Alg. 1: B = {args.batch} trajectories of "
           f"H = {args.horizon} steps per iteration, Monte-Carlo truncated Q, step η = {args.lr}; F(θ_t) is computed "
           "exactly. 'exact' rows follow the exact gradient (or the exact κ = 0 truncated gradient) with the same η."
           " Last column: first iteration reaching 95% of the way from F(θ_0) to the maximum, per seed.\n")
    final_alg = {name: float(np.array(cs)[:, -1].mean()) for name, cs in curves.items() if name.startswith("Alg")}
    epilogue = ("\n**Paper vs here.** Theorems 1–2: Alg. 1 reaches an ε-stationary point up to an error "
                "O(n·φ0^{2κ}) plus estimation terms; with a concave utility (entropy) and a rich enough policy class "
                "stationary points are global optima (Remark 2). The paper reports no experiment. Here every κ "
                "climbs from F(θ_0) = " + f"{f0:.4f}" + " to within "
                + f"{max(upper - v for v in final_alg.values()):.1e}" + " of log k_s (the exact-gradient path: "
                + f"{upper - float(np.array(curves['exact ∇F'])[:, -1].mean()):.1e}" + "), consistent with the "
                "theorems. κ = diameter is no better than κ = 0 here: its Q-table over all agents is estimated from the "
                "same samples with far fewer visits per entry (Remark 3's trade-off), while the truncation bias "
                "at κ = 0 is small for δ = " + f"{args.decay:g}" + " (the exact κ = 0 path matches the exact gradient's).\n")
    write_table(RESULTS / "shadow_pg_entropy",
                ["method", "F(θ_0)", f"F(θ_{args.iters}) mean ± 95% CI", "per seed", "gap to log k_s",
                 "iterations to 95%"], rows, pre)
    with open(RESULTS / "shadow_pg_entropy.md", "a") as fh:
        fh.write(epilogue)
    (RESULTS / "shadow_pg_entropy.json").write_text(json.dumps({k: np.array(v).tolist() for k, v in curves.items()}))
    print((RESULTS / "shadow_pg_entropy.md").read_text())
    print(f"wall time {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
