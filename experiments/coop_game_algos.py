"""DPO vs IPPO (vs IQL, and the Fig. 8 ablations when registered) on the DPO paper's cooperative
stochastic game, against the global optimum (dpo.md §4.1 Fig. 1a; App. C Fig. 8).

``--task`` picks the reading of the game (envserver/tasks/coop_game.py): ``coop-game`` (default,
near-additive per agent) or ``coop-game-joint`` (r and P drawn per joint action). Runs and result
files are named by task, so the two games never share or overwrite each other's.

Every (algorithm, seed) cell is one `khop run --inprocess --task <task>` with the repository's
defaults for the game (agentd/learner/defaults.py: d_target 0.1, rollout 32 × 16 copies, one
minibatch, 15 epochs) — nothing is tuned here. For each run we report the mean episode return over
the last 10% of the budget and, in addition, the *exact* expected return J(π) of the joint policy
saved in the final checkpoints (TabularCoopGame.evaluate, backward induction), so sampling noise in
the last episodes does not blur the comparison.

    python -m experiments.coop_game_algos --algos dpo ippo iql --tag fig1a
    python -m experiments.coop_game_algos --algos dpo dpo-no-kl ippo ippo-kl iql --tag fig8
    python -m experiments.coop_game_algos --task coop-game-joint --algos dpo ippo iql --tag fig1a
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from envserver.tasks.coop_game import TabularCoopGame
from experiments.common import (
    RESULTS,
    Cell,
    available_algos,
    beta_at_floor,
    binned,
    cell_record,
    ci95,
    episode_curve,
    figure,
    final_return,
    learned_policy_table,
    rounded,
    run_cells,
    write_table,
)

TASKS = ("coop-game", "coop-game-joint")  # the two readings of dpo.md §4.1's game
COLORS = {"dpo": "tab:red", "ippo": "tab:blue", "iql": "tab:green", "dpo-no-kl": "tab:orange",
          "dpo-no-sqrt": "tab:purple", "ippo-kl": "tab:cyan"}


def game(task: str) -> TabularCoopGame:
    """The game every run of ``task`` plays (the tables depend on the game seed only)."""
    if task not in TASKS:
        raise ValueError(f"not a cooperative-game task: {task!r}; choose one of {', '.join(TASKS)}")
    from envserver.tasks import task_class

    return task_class(task)(1, 0)


def results_stem(task: str, name: str) -> Path:
    """experiments/results/coop_game_<name> or coop_game_joint_<name>: one set of files per game."""
    return RESULTS / f"{task.replace('-', '_')}_{name}"


def game_reference(task: str = "coop-game") -> dict:
    """The task's optimum and the uniform-random policy's return, both exact."""
    g = game(task)
    return {"optimum": g.optimal_return(), "uniform": g.evaluate(np.full((g.N, g.S, g.A), 1.0 / g.A))}


def exact_learned_return(run_dir: Path) -> tuple[float, float]:
    """J(π) of the product of the agents' final policies, each a table over (t, s), as learned
    (stochastic; IQL's ε-greedy) and made greedy (every agent plays its most likely action), on
    the game the run played (its config.json)."""
    g = game(json.loads((run_dir / "config.json").read_text())["task"])
    t, s = np.meshgrid(np.arange(g.H), np.arange(g.S), indexing="ij")
    obs = np.zeros((g.H * g.S, g.S + 1), dtype=np.float32)
    obs[np.arange(g.H * g.S), s.ravel()] = 1.0
    obs[:, g.S] = t.ravel() / g.H
    pol = np.stack([learned_policy_table(run_dir, i, obs).reshape(g.H, g.S, g.A) for i in range(g.N)])
    pol = pol / pol.sum(axis=-1, keepdims=True)
    greedy = np.zeros_like(pol)
    np.put_along_axis(greedy, pol.argmax(axis=-1)[..., None], 1.0, axis=-1)
    return g.evaluate(pol), g.evaluate(greedy)


def kl_and_beta(run_dir: Path) -> tuple[float, float | None]:
    """Medians over agents of the mean KL(π_old‖π_new) per update and of the final β1 (None without
    β1): why a d_target behaves as it does (coop_game_dtarget)."""
    kls, betas = [], []
    for d in sorted(run_dir.glob("agent-*")):
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines() if line.strip()]
        kls.append(np.mean([r["kl"] for r in rows if "kl" in r]))
        betas += [[r["beta1"] for r in rows if "beta1" in r][-1:]]
    beta = [b[0] for b in betas if b]
    return float(np.median(kls)), (float(np.median(beta)) if beta else None)


def run_record(run_dir: Path) -> dict:
    """What the tables and figures need of one finished run (committed as its cell record)."""
    x, y = episode_curve(run_dir)
    try:
        j, jg = exact_learned_return(run_dir)
    except Exception as err:  # noqa: BLE001 - a learner whose policy we cannot read: say so, go on
        print(f"  exact J unavailable for {run_dir.name}: {err}")
        j = jg = float("nan")
    def finite(v: float) -> float | None:
        return float(v) if np.isfinite(v) else None

    kl, beta1 = kl_and_beta(run_dir)
    return {"steps": rounded(x, 0), "returns": rounded(y), "final": finite(final_return(run_dir)),
            "exact": finite(j), "greedy": finite(jg), "beta_floor": beta_at_floor(run_dir),
            "kl_mean": kl, "beta1_final": beta1,
            "code_version": json.loads((run_dir / "config.json").read_text()).get("code_version", "")}


def summarise(cells: list[Cell], group: str, bins: int = 25) -> dict:
    """Per label: binned mean curve, CI, final returns and exact J per seed (from the cell records)."""
    out: dict[str, dict] = {}
    steps = max(c.steps for c in cells)
    edges = np.linspace(0, steps, bins + 1)
    for c in cells:
        r = cell_record(c, group, run_record)
        if r is None:
            print(f"  not finished, left out: {c.name}")
            continue
        rec = out.setdefault(c.label or c.algo, {"curves": [], "final": [], "exact": [], "greedy": [], "seeds": [],
                                                 "cells": [], "beta_floor": [], "kl": [], "beta1": []})
        rec["kl"].append(r.get("kl_mean"))
        rec["beta1"].append(r.get("beta1_final"))
        rec["beta_floor"].append(r["beta_floor"])
        rec["curves"].append(binned(np.array(r["steps"]), np.array(r["returns"]), edges))
        rec["final"].append(float("nan") if r["final"] is None else r["final"])
        rec["exact"].append(float("nan") if r["exact"] is None else r["exact"])
        rec["greedy"].append(float("nan") if r["greedy"] is None else r["greedy"])
        rec["seeds"].append(c.seed)
        rec["cells"].append(c)
    for rec in out.values():
        rec["curves"] = np.array(rec["curves"])
    return {"edges": edges, "labels": out}


def plot_curves(summary: dict, ref: dict, path: Path, title: str) -> None:
    fig, axes = figure(1, 1, (7.0, 4.5))
    ax = axes[0, 0]
    mid = 0.5 * (summary["edges"][1:] + summary["edges"][:-1])
    for i, (label, rec) in enumerate(summary["labels"].items()):
        m = np.nanmean(rec["curves"], axis=0)
        h = ci95(rec["curves"], axis=0)
        color = COLORS.get(label, f"C{i}")
        ax.plot(mid, m, label=f"{label} ({len(rec['seeds'])} seeds)", color=color)
        ax.fill_between(mid, m - h, m + h, color=color, alpha=0.2)
    ax.axhline(ref["optimum"], color="k", ls="--", label=f"global optimum {ref['optimum']:.2f}")
    ax.axhline(ref["uniform"], color="gray", ls=":", label=f"uniform random {ref['uniform']:.2f}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return (50 steps)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table_rows(summary: dict, ref: dict) -> list[list]:
    rows = []
    span = ref["optimum"] - ref["uniform"]
    for label, rec in summary["labels"].items():
        f, e = np.array(rec["final"]), np.array(rec["exact"])
        rows.append([label, len(f), f"{f.mean():.2f} ± {ci95(f):.2f}", " / ".join(f"{v:.2f}" for v in f),
                     f"{np.nanmean(e):.2f}" if np.isfinite(e).any() else "n/a",
                     " / ".join(f"{v:.2f}" for v in e),
                     f"{100 * (np.nanmean(e) - ref['uniform']) / span:.1f}%" if np.isfinite(e).any() else "n/a",
                     f"{np.nanmean(rec['greedy']):.2f} ± {ci95(np.array(rec['greedy'])):.2f}",
                     " / ".join("–" if b is None else f"{100 * b:.0f}%" for b in rec["beta_floor"])])
    return rows


def verdict(summary: dict) -> str:
    """The paper's claim next to ours, from the numbers (exact J of the final policies)."""
    means = {k: float(np.nanmean(v["exact"])) for k, v in summary["labels"].items()}
    halfw = {k: float(ci95(np.array(v["exact"]))) for k, v in summary["labels"].items()}
    order = sorted(means, key=means.get, reverse=True)
    ranking = " > ".join(f"{k} {means[k]:.2f} ± {halfw[k]:.2f}" for k in order)
    text = ("\n**Paper vs here.** dpo.md Fig. 1a / Fig. 8: DPO ends highest; IPPO, IPPO-KL and DPO_w/o_kl "
            "are close to each other and below DPO; IQL below IPPO. Here (exact J of the final joint "
            f"policy, mean ± 95% CI over seeds): {ranking}. ")
    if "dpo" in means:
        others = [k for k in means if k != "dpo"]
        beaten = [k for k in others if means[k] > means["dpo"]]
        if beaten:
            text += (f"**Disagrees**: {', '.join(beaten)} end above DPO at this budget. ")
        else:
            text += "**Agrees** on DPO ending highest. "
    if "iql" in means and "ippo" in means:
        text += "IQL below IPPO: " + ("agrees." if means["iql"] < means["ippo"] else "**disagrees**.")
    greedy = {k: float(np.nanmean(v["greedy"])) for k, v in summary["labels"].items()}
    text += (" Made greedy (each agent's most likely action; IQL then drops its ε, which the PyMARL schedule "
             "anneals over 50k transitions, longer than these runs): "
             + " > ".join(f"{k} {greedy[k]:.2f}" for k in sorted(greedy, key=greedy.get, reverse=True)) + ".")
    floors = {k: [b for b in v["beta_floor"] if b is not None] for k, v in summary["labels"].items()}
    floors = {k: b for k, b in floors.items() if b}
    if floors:
        text += (" β at its floor 1e-6 (the KL penalties inactive) on " + ", ".join(
            f"{k} {100 * float(np.mean(b)):.0f}%" for k, b in floors.items()) + " of second-half updates.")
    return text + "\n"


HEADER = ["algorithm", "seeds", "final return (last 10%, mean ± 95% CI)", "per seed",
          "exact J(π_final) mean", "exact J per seed", "gap to optimum closed (exact J)",
          "exact J of the greedy π_final (mean ± 95% CI)",
          "β at its floor (share of 2nd-half updates, per seed)"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=TASKS, default="coop-game")
    p.add_argument("--algos", nargs="+", default=["dpo", "ippo", "iql"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--envs", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tag", default="fig1a")
    p.add_argument("--fresh", action="store_true")
    args = p.parse_args(argv)

    algos, missing = available_algos(args.algos)
    if missing:
        print(f"not registered (skipped): {', '.join(missing)}")
    cells = [Cell(args.task, a, s, args.steps, args.envs) for a in algos for s in range(args.seeds)]
    t0 = time.monotonic()
    run_cells(cells, args.task, args.workers, args.fresh, record=run_record)  # runs/experiments/<task>/ per game
    ref = game_reference(args.task)
    summary = summarise(cells, args.task)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = results_stem(args.task, args.tag)
    plot_curves(summary, ref, stem.with_suffix(".png"),
                f"{args.task}: {', '.join(algos)} ({args.steps:,} steps, {args.seeds} seeds)")
    task_arg = f"--task {args.task} " if args.task != "coop-game" else ""
    pre = (f"# {args.task}, {', '.join(algos)} ({args.tag})\n\n"
           f"`python -m experiments.coop_game_algos {task_arg}--algos {' '.join(args.algos)} --seeds {args.seeds} "
           f"--steps {args.steps} --envs {args.envs} --tag {args.tag}`\n\n"
           f"Global optimum (backward induction over 5^6 joint actions): {ref['optimum']:.3f}; "
           f"uniform random policy: {ref['uniform']:.3f}. Budget {args.steps:,} env steps per run "
           f"({args.envs} copies), {args.seeds} seeds, in-process; the paper used 5 seeds and a longer "
           "budget (its Fig. 1a axis is not in the text).\n"
           + (f"\nNot registered, skipped: {', '.join(missing)}.\n" if missing else ""))
    write_table(stem, HEADER, table_rows(summary, ref), pre)
    with open(stem.with_suffix(".md"), "a") as fh:
        fh.write(verdict(summary))
    (stem.with_suffix(".json")).write_text(json.dumps(
        {"ref": ref, "steps": args.steps, "envs": args.envs, "seeds": args.seeds,
         "labels": {k: {"final": v["final"], "exact": v["exact"], "greedy": v["greedy"], "seeds": v["seeds"],
                        "curve_mean": np.nanmean(v["curves"], axis=0).tolist()}
                    for k, v in summary["labels"].items()},
         "bin_edges": summary["edges"].tolist()}, indent=1))
    print((stem.with_suffix(".md")).read_text())
    print(f"wall time {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
