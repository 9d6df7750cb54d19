"""The agentd shadow-PG learner (``--algo shadow-pg``, scalable-general-utilities.md Alg. 1) on the
networked MDP, for several κ, with the learned policies scored exactly.

Each cell is a `khop run --inprocess` (identical to the distributed run, tests/test_inprocess.py):
8 agents on a line, the task's own instance (k_s = k_a = 2, δ = 0.5), utility "target"
f_i = −Σ_x (d_i(x) − d*(x))² with d* = (0.9, 0.1) for every agent, γ = 0.9 (the learner's default),
T = 32, E = 16. After training, each agent's policy π_i(a | x) is read from its checkpoint and
F(π) = (1/n)·Σ_i f_i(λ_i^π) is computed exactly (ExactSolver on 2^8 global states), next to F of
the uniform policy and a reference: the best deterministic local policy found by coordinate ascent.

    python -m experiments.shadow_pg_agentd --seeds 3 --steps 16000 --kappas 0 1 2
"""
from __future__ import annotations

import argparse
import json
import time
from functools import partial

import numpy as np

from agentd.learner.utility import target_utility
from envserver.tasks.networked_mdp import ExactSolver, NetworkedMDP
from experiments.common import RESULTS, Cell, ci95, learned_policy_table, run_cells, write_table

TARGET = np.array([0.9, 0.1])
GAMMA = 0.9


F_TARGET = partial(target_utility, target=TARGET)  # the learner's "target" utility with d* = TARGET


def reference_best(ex: ExactSolver, n: int, sweeps: int = 2) -> float:
    """A reference F: coordinate ascent over deterministic local policies (each agent in turn
    tries the 4 maps x → a, keeping the best), from the uniform policy. A lower bound on the
    optimum of the policy class (exact gradient ascent costs ~15 s per step here)."""
    theta = np.zeros((n, 2, 2))
    best = ex.utility_value(theta, F_TARGET)
    for _ in range(sweeps):
        for i in range(n):
            for acts in ((0, 0), (0, 1), (1, 0), (1, 1)):
                trial = theta.copy()
                trial[i] = -20.0
                trial[i, [0, 1], list(acts)] = 20.0
                value = ex.utility_value(trial, F_TARGET)
                if value > best:
                    best, theta = value, trial
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=16000)
    p.add_argument("--kappas", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fresh", action="store_true")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    # local policies (actor_input=local): the exact scoring reads each policy as a table over its own state
    over = ["rollout_len=32", "utility=target", "utility_target=0.9,0.1", "actor_input=local"]
    cells = [Cell("networked-mdp", "shadow-pg", seed, args.steps, 16, over, kappa=k)
             for k in args.kappas for seed in range(args.seeds)]
    run_cells(cells, "shadow_pg_agentd", workers=args.workers, fresh=args.fresh)

    mdp = NetworkedMDP(game_seed=0)  # the networked-mdp task's instance
    ex = ExactSolver(mdp, GAMMA)
    n = mdp.n_agents
    f_uniform = ex.utility_value(np.zeros((n, 2, 2)), F_TARGET)
    f_best = reference_best(ex, n)
    eye = np.eye(2)
    rows, raw = [], {}
    for k in args.kappas:
        finals = []
        for c in (c for c in cells if c.kappa == k):
            pi = np.stack([learned_policy_table(c.run_dir("shadow_pg_agentd"), i, eye) for i in range(n)])
            finals.append(ex.utility_value(np.log(np.maximum(pi, 1e-12)), F_TARGET))
        f = np.array(finals)
        raw[str(k)] = f.tolist()
        rows.append([k, round(f_uniform, 4), f"{f.mean():.4f} ± {ci95(f):.4f}", " / ".join(f"{v:.4f}" for v in f),
                     f"{(f.mean() - f_uniform) / (f_best - f_uniform):.0%}"])
    pre = (f"# Shadow-PG as an agentd learner on the networked MDP (scalable-general-utilities.md Alg. 1)\n\n"
           f"`python -m experiments.shadow_pg_agentd --seeds {args.seeds} --steps {args.steps} "
           f"--kappas {' '.join(map(str, args.kappas))}`\n\n"
           f"`khop run --inprocess --task networked-mdp --algo shadow-pg --kappa κ --steps {args.steps} --envs 16 "
           f"--set rollout_len=32 --set utility=target --set utility_target=0.9,0.1` per seed: 8 agents on a line, "
           f"Q-values shared over κ hops. F(π) = (1/n)·Σ_i −Σ_x (d_i(x) − d*(x))², d* = (0.9, 0.1), γ = {GAMMA}, "
           f"computed exactly for the learned policies. Uniform policy: F = {f_uniform:.4f}; the best "
           f"deterministic local policy found by coordinate ascent: F = {f_best:.4f} (a lower bound on the "
           "optimum). Last column: share of that gap closed.\n")
    write_table(RESULTS / "shadow_pg_agentd", ["κ", "F(uniform)", "F(learned) mean ± 95% CI", "per seed",
                                               "gap closed"], rows, pre)
    means = {k: float(np.mean(raw[str(k)])) for k in args.kappas}
    half = {k: float(ci95(np.array(raw[str(k)]))) for k in args.kappas}
    pairs = []
    for a, b in zip(args.kappas, args.kappas[1:]):
        apart = abs(means[a] - means[b]) > half[a] + half[b]
        pairs.append(f"κ={a} vs κ={b}: {'separated' if apart else 'overlapping'} 95% intervals")
    with open(RESULTS / "shadow_pg_agentd.md", "a") as fh:
        fh.write("\n**Paper vs here.** The paper has no experiment; Theorems 1–2 predict convergence to an "
                 "ε-stationary point up to an error that shrinks exponentially in κ. Here every κ improves on the "
                 f"uniform policy (F {f_uniform:.4f} → " + ", ".join(f"κ={k}: {v:.4f}" for k, v in means.items())
                 + f"; reference {f_best:.4f}) in {args.steps} env steps per run; " + "; ".join(pairs)
                 + ". Larger κ ending higher is the direction the theorems' κ-dependent error term suggests; "
                 "three seeds on one instance is not a measurement of its rate.\n")
    (RESULTS / "shadow_pg_agentd.json").write_text(json.dumps({"uniform": f_uniform, "best": f_best, "final": raw}))
    print((RESULTS / "shadow_pg_agentd.md").read_text())
    print(f"wall time {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
