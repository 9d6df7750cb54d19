"""Shared plumbing for the reproduction scripts: run `khop run --inprocess` (or, for
``Cell.distributed``, `khop run` with one process per agent) for a grid of (algorithm, seed,
override) cells, read the run directories back, bin learning curves across seeds, and write
figures / Markdown / CSV tables into experiments/results/.

Runs are cached: a cell whose run directory holds a finished run (run_status.json "finished" and a
report) is read back, not rerun, so a figure that combines earlier cells (Fig. 8 reuses Fig. 1a's
runs) costs only the new ones. A cell killed before it finished (the script interrupted, the
session ended) is continued where its checkpoints left it when it is distributed (`khop run
--resume`), and started over when it ran in-process (nothing there to resume from). Pass
``--fresh`` to a script to rerun everything.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import warnings

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
RUNS = ROOT / "runs" / "experiments"  # runs/ is git-ignored
RECORDS = RESULTS / "cells"  # committed: one small JSON per finished cell (cell_record)

# two-sided 95% Student-t quantiles by degrees of freedom (scipy is not a dependency)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def ci95(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Half-width of the 95% confidence interval of the mean (Student t), 0 for one value."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    if n < 2:
        return np.zeros(np.delete(values.shape, axis))
    return _T95.get(n - 1, 1.96) * values.std(axis=axis, ddof=1) / math.sqrt(n)


def available_algos(requested: list[str]) -> tuple[list[str], list[str]]:
    """Split ``requested`` into (registered, missing) learners (`khop algos`)."""
    from agentd.learner import algo_names

    names = set(algo_names())
    return [a for a in requested if a in names], [a for a in requested if a not in names]


@dataclass
class Cell:
    """One `khop run --inprocess`: task, algo, seed, step budget and learner overrides."""

    task: str
    algo: str
    seed: int
    steps: int
    envs: int = 16
    overrides: list[str] = field(default_factory=list)
    label: str = ""  # what the cell stands for in a figure (default: algo)
    kappa: int = 1
    distributed: bool = False  # `khop run` with real agent processes instead of --inprocess

    @property
    def name(self) -> str:
        tag = "".join(f"-{o.replace('=', '').replace(',', '_')}" for o in self.overrides)
        k = f"-k{self.kappa}" if self.kappa != 1 else ""  # κ = 1 cells keep their (cached) names
        return f"{self.task}-{self.algo}{tag}{k}-n{self.steps}-e{self.envs}-s{self.seed}"

    def run_dir(self, group: str) -> Path:
        return RUNS / group / self.name

    def command(self, group: str) -> list[str]:
        d = str(self.run_dir(group))
        if self.distributed:  # the product: `khop run`, an envserver and one agentd process per agent
            cmd = [sys.executable, "-m", "compose.cli", "run", "--no-progress", "--task", self.task,
                   "--algo", self.algo, "--seed", str(self.seed), "--steps", str(self.steps), "--envs",
                   str(self.envs), "--kappa", str(self.kappa), "--run-dir", d]
        else:  # = `khop run --inprocess --no-progress ...`, through the library API (experiments/run_cell.py)
            cmd = [sys.executable, "-m", "experiments.run_cell", "--task", self.task,
                   "--algo", self.algo, "--seed", str(self.seed), "--steps", str(self.steps), "--envs", str(self.envs),
                   "--kappa", str(self.kappa), "--run-dir", d]
        for o in self.overrides:
            cmd += ["--set", o]
        return cmd

    def resume_command(self, group: str) -> list[str]:
        """`khop run --resume`: the killed run's processes again, from their checkpoints and clock."""
        return [sys.executable, "-m", "compose.cli", "run", "--no-progress", "--resume", str(self.run_dir(group))]


def finished(run_dir: Path) -> bool:
    """A complete run: run_status.json says finished (an interrupted run also writes a report);
    directories from before run_status.json existed count by their report alone."""
    if not ((run_dir / "report" / "summary.md").exists() and (run_dir / "envserver" / "episodes.jsonl").exists()):
        return False
    try:
        return json.loads((run_dir / "run_status.json").read_text()).get("state") == "finished"
    except FileNotFoundError:
        return True
    except ValueError:
        return False


def record_path(cell: Cell, group: str) -> Path:
    """Where a finished cell's committed summary lives: experiments/results/cells/<group>/<name>.json."""
    return RECORDS / group / f"{cell.name}.json"


def cell_record(cell: Cell, group: str, make: Callable[[Path], dict]) -> dict | None:
    """The summary an experiment needs of one finished cell: read back from its committed record,
    or made from its run directory by ``make`` and written as that record; None while the cell has
    not finished. Run directories (runs/, not committed) do not outlive a session's work tree; the
    records do, so a finished cell is never rerun by a later session."""
    path = record_path(cell, group)
    if path.exists():
        return json.loads(path.read_text())
    d = cell.run_dir(group)
    if not finished(d):
        return None
    record = make(d)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, separators=(",", ":")))
    return record


def rounded(x: np.ndarray, digits: int = 4) -> list[float]:
    """An array as a JSON list, rounded (cell records stay small)."""
    return [round(float(v), digits) for v in x]


def cell_plan(cell: Cell, group: str) -> str:
    """What a cell needs: "cached" (finished, or recorded), "resume" (a distributed run that was cut
    short and left its config.json, checkpoints and clock) or "fresh" (absent, or nothing worth resuming)."""
    d = cell.run_dir(group)
    if finished(d) or record_path(cell, group).exists():
        return "cached"
    if cell.distributed and (d / "config.json").exists():
        return "resume"
    return "fresh"


def run_cells(cells: list[Cell], group: str, workers: int = 2, fresh: bool = False,
              record: Callable[[Path], dict] | None = None) -> dict[str, float]:
    """Run every unfinished cell (``workers`` at a time); return wall seconds per cell run now.
    Each `khop run` dies with this script (SIGTERM: it stops its agents, which checkpoint), so a
    killed script leaves resumable cells, never a run still writing into its directory. With
    ``record``, each cell's record (:func:`cell_record`) is written as soon as it finishes."""
    from compose.run.launcher import die_with_parent

    todo: list[tuple[Cell, str]] = []
    for c in cells:
        d = c.run_dir(group)
        if fresh:
            shutil.rmtree(d, ignore_errors=True)
            record_path(c, group).unlink(missing_ok=True)
        plan = cell_plan(c, group)
        if plan == "cached":
            continue
        if plan == "fresh" and d.exists():  # a killed in-process attempt, or one killed before it began
            shutil.rmtree(d)
        todo.append((c, plan))
    times: dict[str, float] = {}
    failed: list[str] = []

    def one(job: tuple[Cell, str]) -> None:
        c, plan = job
        t0 = time.monotonic()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        cmd = c.resume_command(group) if plan == "resume" else c.command(group)
        # a file, not a pipe: a run told to stop because this script died must still be able to
        # write its last lines (into a pipe nobody reads it would fail on EPIPE, not stop cleanly)
        log_path = RUNS / group / "logs" / f"{c.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            code = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=env, check=False, preexec_fn=die_with_parent).returncode
        times[c.name] = time.monotonic() - t0
        status = "ok" if code == 0 else f"FAILED rc={code}"
        print(f"  {c.name}{' (resumed)' if plan == 'resume' else ''}: {status} in {times[c.name]:.0f}s", flush=True)
        if code != 0:
            failed.append(f"{c.name} (rc {code}), see {log_path}:\n{log_path.read_text()[-2000:]}")
        elif record is not None:
            cell_record(c, group, record)

    n_resume = sum(plan == "resume" for _, plan in todo)
    print(f"{len(cells) - len(todo)} cached, {len(todo)} to run ({n_resume} resumed; {workers} at a time)", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, todo))
    if failed:
        raise RuntimeError(f"{len(failed)} cell(s) failed: " + "\n".join(failed))
    return times


def episode_curve(run_dir: Path, key: str = "episode_return") -> tuple[np.ndarray, np.ndarray]:
    """(env_step, ``key``) of every finished episode, in order (``key``: episode_return, episode_cost)."""
    from compose.report import load_episodes

    rows = load_episodes(run_dir)
    return (np.array([r["env_step"] for r in rows], dtype=np.float64),
            np.array([r[key] for r in rows], dtype=np.float64))


def binned(steps: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of ``values`` in each [edges[k], edges[k+1]) bin (NaN where empty)."""
    out = np.full(len(edges) - 1, np.nan)
    idx = np.digitize(steps, edges) - 1
    for k in range(len(out)):
        sel = idx == k
        if sel.any():
            out[k] = values[sel].mean()
    return out


def final_return(run_dir: Path, frac: float = 0.1) -> float:
    """Mean episode return over the last ``frac`` of the env-step budget."""
    steps, ret = episode_curve(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    sel = steps > (1.0 - frac) * cfg["steps"]
    return float(ret[sel].mean()) if sel.any() else float("nan")


def beta_at_floor(run_dir: Path) -> float | None:
    """Share of the second half's updates (all agents) at which every adaptive β of the run sat at
    its floor beta_min — where DPO's KL penalties are inactive (learner-audit.md finding 9); None
    for learners without β."""
    at_floor = []
    for d in sorted(run_dir.glob("agent-*")):
        floor = json.loads((d / "learner_config.json").read_text()).get("beta_min")
        if floor is None:  # the algorithm has no β (its config holds only the keys it reads)
            continue
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines() if line.strip()]
        betas = [[v for k, v in r.items() if k in ("beta1", "beta2")] for r in rows]
        betas = [b for b in betas[len(betas) // 2:] if b]
        at_floor += [all(v <= floor * (1 + 1e-9) for v in b) for b in betas]
    return float(np.mean(at_floor)) if at_floor else None


def write_table(path_stem: Path, header: list[str], rows: list[list], preamble: str = "") -> None:
    """Write ``path_stem``.md (with ``preamble`` above the table) and ``path_stem``.csv."""
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    with open(path_stem.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)

    def cell(x) -> str:
        if isinstance(x, float):
            return "n/a" if not math.isfinite(x) else f"{x:.4g}"
        return str(x)

    lines = [preamble.rstrip() + "\n"] if preamble else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    path_stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def sweep_parser(doc: str, algos: list[str], *, seeds: int, steps: int, envs: int, jobs: int,
                 jobs_help: str) -> argparse.ArgumentParser:
    """The options every (algorithm × seed) sweep shares, with the script's own defaults."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--algos", nargs="+", default=list(algos))
    p.add_argument("--seeds", type=int, default=seeds, help="seeds 0 … N−1")
    p.add_argument("--steps", type=int, default=steps, help="env steps per run")
    p.add_argument("--envs", type=int, default=envs)
    p.add_argument("--jobs", type=int, default=jobs, help=jobs_help)
    p.add_argument("--report-only", action="store_true", help="write the results from the finished runs, run none")
    return p


def parse_sweep(p: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Parse and check a sweep's command line: (args with ``argv`` as given, the registered learners)."""
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    algos, unknown = available_algos(args.algos)
    if unknown:
        p.error(f"unknown algorithm(s): {', '.join(unknown)}; see `khop algos`")
    if min(args.seeds, args.steps, args.envs, args.jobs) < 1:
        p.error("--seeds, --steps, --envs and --jobs must be >= 1")
    return args, algos


def curve_mean(curves: np.ndarray) -> np.ndarray:
    """Mean over seeds per bin; NaN where no seed finished an episode in the bin (a resumed run
    loses the episodes in progress at the kill, so a bin can be empty)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(curves, axis=0)


def seed_bands(ax, edges: np.ndarray, curves: dict[str, np.ndarray], colors: dict[str, str],
               bounds: tuple[float, float] | None = None) -> None:
    """One line per label: the mean over seeds (rows of its ``[seeds, bins]`` array) per bin and its
    95 % band, optionally clipped to ``bounds`` (a share stays in [0, 1])."""
    mid = 0.5 * (edges[1:] + edges[:-1])
    for i, (label, c) in enumerate(curves.items()):
        m, h = curve_mean(c), ci95(c, axis=0)
        lo, hi = (m - h, m + h) if bounds is None else (np.clip(m - h, *bounds), np.clip(m + h, *bounds))
        color = colors.get(label, f"C{i}")
        ax.plot(mid, m, color=color, marker=".", label=f"{label} ({c.shape[0]} seeds)")
        ax.fill_between(mid, lo, hi, color=color, alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.grid(alpha=0.3)


def print_results(stems: list[Path], failure: Exception | None) -> int:
    """Print each result's Markdown, then the failure if any: the script's exit code."""
    for stem in stems:
        print(stem.with_suffix(".md").read_text())
    if failure is not None:
        print(failure, file=sys.stderr)
        return 1
    return 0


def figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (6.0, 4.0)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    return fig, axes


# ----------------------------------------------------------------------------- learned policies


def learned_policy_table(run_dir: Path, agent: int, obs: np.ndarray) -> np.ndarray:
    """π^i(·|o) for each row of ``obs`` [B, obs_dim], from agent ``agent``'s newest checkpoint.

    Policy-gradient learners: the actor's softmax. IQL: its ε-greedy behaviour policy at the final
    ε (greedy in Q, ε spread uniformly). Uses the learner's own classes read-only.
    """
    import torch

    from agentd.learner import ALGOS, make_learner
    from agentd.learner.base import Learner
    from envserver.tasks import task_spec

    cfg = json.loads((run_dir / "config.json").read_text())
    lc = json.loads((run_dir / f"agent-{agent}" / "learner_config.json").read_text())
    used = ALGOS[lc["algo"]].used_keys()  # files written before the algorithms owned their keys hold every field
    spec = task_spec(cfg["task"])
    learner = make_learner(lc["algo"], spec.agents[agent], int(lc["critic_dim"]), spec.n_agents, int(cfg["envs"]),
                           seed=0, overrides={k: v for k, v in lc.items() if k in used}, task="")
    ckpt = Learner.latest_checkpoint(run_dir / f"agent-{agent}" / "checkpoints")
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint for agent {agent} in {run_dir}")
    learner.load_checkpoint(ckpt)
    x = obs.astype(np.float32)
    if learner.cfg.normalize_obs:
        x = learner.obs_norm.normalize(x).astype(np.float32)
    if learner.khop_actor:
        raise TypeError("the policy table is read off the local observation; this actor is κ-hop")
    with torch.no_grad():
        if hasattr(learner, "actor"):
            return torch.exp(learner.actor(torch.from_numpy(x))).double().numpy()
        if hasattr(learner, "q"):
            q = learner.q(torch.from_numpy(x)).numpy()
            k = q.shape[1]
            eps = float(learner.epsilon())
            out = np.full(q.shape, eps / k)
            out[np.arange(len(q)), q.argmax(axis=1)] += 1.0 - eps
            return out
    raise TypeError(f"cannot read a policy table from a {lc['algo']} learner")
