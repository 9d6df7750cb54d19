"""`khop eval RUN_DIR`: score the learned joint policy on fresh episodes, learning nothing.

The agents are rebuilt from their checkpoints and play the run's task through the run's relay
(team.py). By default each samples its actions from its policy, as it acted in training (IQL and
IDDPG with their exploration); ``--deterministic`` plays the modes (argmax, Gaussian mean, greedy
Q, noiseless μ). K episodes are spread over the run's E env copies (copy e plays
⌈(K − e)/E⌉ of them, so a copy's short episodes cannot crowd out the others'), and every number is
a mean with its 95 % Student-t interval over the K episodes:

* return — the summed team reward of an episode;
* cost — the summed team cost (the agents' mean cost per step, as episodes.jsonl counts it), per
  cost and over all costs;
* violation rate — the share of episodes whose cost exceeds a limit (any limit, and per cost).

On the tabular games the exact J of the learned policy sits beside them (exact.py), with the
optimum and the uniform policy's score. The result goes to RUN_DIR/eval.json, one entry per mode
("sampled", "deterministic"; a new evaluation of a mode replaces the old), and the run's report is
rewritten to show it.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from .exact import exact_returns
from .stats import mean_ci
from .team import JudgeError, Player, load_team

DEFAULT_EPISODES = 10  # BenchMARL's evaluation_episodes (benchmarl/conf/experiment/base_experiment.yaml)
# evaluation env seed = run seed + this: a stream no training copy drew from (training seeds the task
# with --seed itself), so the scored episodes are not ones the agents trained on
EVAL_SEED_OFFSET = 1_000_003
EVAL_FILE = "eval.json"


def mode_name(deterministic: bool) -> str:
    return "deterministic" if deterministic else "sampled"


def evaluate(run_dir: Path, episodes: int = DEFAULT_EPISODES, deterministic: bool = False,
             env_seed: int | None = None, checkpoint: int | None = None) -> dict[str, Any]:
    """Play ``episodes`` episodes and return the evaluation record (see the module docstring)."""
    if episodes < 1:
        raise JudgeError(f"--episodes must be >= 1, got {episodes}")
    started = time.monotonic()
    team = load_team(run_dir, checkpoint)
    cfg, spec = team.cfg, team.spec
    seed = int(cfg.get("seed", 0)) + EVAL_SEED_OFFSET if env_seed is None else env_seed
    n_envs = int(cfg.get("envs", 1))
    rows = _play(Player(team, n_envs, seed, deterministic), episodes, spec.episode_length, spec.n_costs)
    limits = [float(v) for v in spec.cost_limits]
    costs = []
    for u, (name, limit) in enumerate(zip(spec.cost_names, limits)):
        values = [r["costs"][u] for r in rows]
        costs.append({"name": name, "limit": limit, **mean_ci(values),
                      "violation_rate": mean_ci(float(v > limit) for v in values)})
    violated = [float(any(c > lim for c, lim in zip(r["costs"], limits))) for r in rows]
    return {
        "mode": mode_name(deterministic), "episodes": episodes, "env_seed": seed, "task": cfg["task"],
        "algo": cfg.get("algo"), "checkpoints": [str(p) for p in team.checkpoints], "updates": team.updates,
        "return": mean_ci(r["return"] for r in rows),
        "cost": mean_ci(r["cost"] for r in rows) if spec.n_costs else None,
        "violation_rate": mean_ci(violated) if spec.n_costs else None,
        "costs": costs,
        "episode_length": mean_ci(r["length"] for r in rows),
        # SMAC's score: the share of evaluation episodes won (--deterministic: the greedy policy's)
        "win_rate": mean_ci(float(r["won"]) for r in rows) if all("won" in r for r in rows) else None,
        "exact": exact_returns(team),
        "relay": {"mode": cfg.get("relay", "sync"), "kappa": cfg.get("kappa"), "comm_budget": cfg.get("comm_budget"),
                  "emulated": "loss only (delay, jitter and bandwidth need a clock)"},
        "episode_rows": rows,
        "seconds": time.monotonic() - started,
        "time": time.time(),
    }


def _play(player: Player, episodes: int, episode_length: int, n_costs: int) -> list[dict[str, Any]]:
    """The first episodes of each copy, ⌈(K − e)/E⌉ for copy e, in the order they finish."""
    E = player.task.n_envs
    targets = np.array([(episodes + E - 1 - e) // E for e in range(E)])
    counted = np.zeros(E, dtype=np.int64)
    ret, length = np.zeros(E), np.zeros(E, dtype=np.int64)
    cost = np.zeros((E, n_costs))
    rows: list[dict[str, Any]] = []
    limit = (math.ceil(episodes / E) + 1) * max(1, episode_length)  # every task truncates at episode_length
    try:
        while (counted < targets).any():
            if player.t >= limit:
                raise JudgeError(f"{player.task.spec.name}: episodes did not end within {limit} steps")
            res = player.step()
            ret += res.reward
            if n_costs:
                cost += np.mean(res.cost, axis=0)
            length += 1
            for e in np.flatnonzero(res.terminated | res.truncated):
                if counted[e] < targets[e]:
                    rows.append({"env": int(e), "return": float(ret[e]), "cost": float(cost[e].sum()),
                                 "costs": cost[e].tolist(), "length": int(length[e]),
                                 **{k: v[e].item() for k, v in res.outcome.items()}})  # SMAX: won
                    counted[e] += 1
                ret[e], cost[e], length[e] = 0.0, 0.0, 0
    finally:
        player.close()
    return rows


def write_eval(run_dir: Path, record: dict[str, Any]) -> Path:
    """Store ``record`` under its mode in RUN_DIR/eval.json (other modes' entries are kept)."""
    path = Path(run_dir) / EVAL_FILE
    try:
        existing = json.loads(path.read_text())
    except (OSError, ValueError):
        existing = {}
    existing = existing if isinstance(existing, dict) else {}
    existing[record["mode"]] = record
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(existing, indent=1))
    tmp.replace(path)
    return path


def headline(record: dict[str, Any]) -> str:
    """One line for the console: return (and cost, violations, exact J) with their intervals."""
    def pm(s: dict | None) -> str:
        if not s or s["mean"] is None:
            return "n/a"
        return f"{s['mean']:.3f}" + (f" ± {s['ci95']:.3f}" if s["ci95"] is not None else "")

    parts = [f"{record['mode']} policy, {record['episodes']} episodes: return {pm(record['return'])}"]
    if record.get("win_rate") is not None:
        parts.append(f"win rate {pm(record['win_rate'])}")
    if record["cost"] is not None:
        parts.append(f"cost {pm(record['cost'])}")
        parts.append(f"violation rate {pm(record['violation_rate'])}")
    exact = record.get("exact") or {}
    if "optimum" in exact:
        j = exact["J_deterministic" if record["mode"] == "deterministic" else "J_sampled"]
        parts.append(f"exact J {j:.3f} (optimum {exact['optimum']:.3f}, uniform {exact['uniform']:.3f})")
    elif "unavailable" in exact:
        parts.append(f"exact J unavailable: {exact['unavailable']}")
    return ", ".join(parts)
