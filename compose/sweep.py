"""`khop sweep`: a grid of runs — κ × communication budget × algorithm × seed, plus relay mode,
task, steps, envs and topology, each fixed or listed — with a combined report.

    OUT/sweep.json            the resolved spec (what was asked for)
    OUT/runs/<cell>/          one ordinary `khop run` directory per cell
    OUT/logs/<cell>.log       that run's console output
    OUT/report/sweep.csv      one row per cell: axes, final return and cost, bytes per agent-step …
    OUT/report/sweep.md       the same aggregated over seeds, with the return-vs-bytes Pareto frontier
    OUT/report/pareto.png     final return and cost against bytes per agent-step
    OUT/report/curves.png     learning curves per κ (mean over seeds), one column per budget

Cells run as `khop run` subprocesses, at most ``--jobs`` at a time (default 1: a distributed run
already uses every core of a 2-core machine; an ``--inprocess`` run uses one). A sweep is
resumable: a cell is finished when its run directory records ``run_status.json`` state
"finished" and a report; finished cells are skipped, any other cell directory (interrupted,
failed, half written) is removed and run again from scratch. A cell directory whose config.json
disagrees with the spec is an error, never silently reused. Ctrl-C stops the running cells (they
write their partial reports), writes the combined report of what is finished, and exits 130.

Final return / cost = the mean over the last quarter of a run's episodes (as `khop report`);
bytes per agent-step = wire bytes an agent sent per env step, averaged over agents.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .launcher import LaunchError, RunConfig, comm_args, validate

#: axes a sweep may list; every cell takes one value of each
AXES = ("task", "algo", "relay", "kappa", "budget", "seed", "steps", "envs", "topology")
#: settings fixed for the whole sweep
FIXED = ("overrides", "link_delay_ms", "link_jitter_ms", "link_loss", "link_bandwidth_bps", "round_timeout_ms",
         "budget_max_period", "deadline_s", "checkpoint_every", "actor_mask", "inprocess")
NONE_WORDS = ("none", "null", "off", "inf", "")


class SweepError(LaunchError):
    """A bad sweep spec; one line for the user."""


def _budget(v: Any) -> float | None:
    if v is None or (isinstance(v, str) and v.strip().lower() in NONE_WORDS):
        return None
    try:
        b = float(v)
    except (TypeError, ValueError):
        raise SweepError(f"budget values are numbers of bytes or 'none', got {v!r}") from None
    if not (0 < b < math.inf):
        raise SweepError(f"budget values must be > 0 bytes, got {v!r}")
    return b


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool):
        raise SweepError(f"{what} values must be integers, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise SweepError(f"{what} values must be integers, got {v!r}") from None
    if not f.is_integer():
        raise SweepError(f"{what} values must be integers, got {v!r}")
    return int(f)


_CAST = {"task": str, "algo": str, "relay": str, "topology": str, "budget": _budget,
         "kappa": lambda v: _int(v, "kappa"), "seed": lambda v: _int(v, "seed"),
         "steps": lambda v: _int(v, "steps"), "envs": lambda v: _int(v, "envs")}


@dataclass
class SweepSpec:
    out: Path = Path("sweeps/sweep")
    task: list = field(default_factory=lambda: ["coop-game"])
    algo: list = field(default_factory=lambda: ["dpo"])
    relay: list = field(default_factory=lambda: ["sync"])
    kappa: list = field(default_factory=lambda: [1])
    budget: list = field(default_factory=lambda: [None])
    seed: list = field(default_factory=lambda: [0])
    steps: list = field(default_factory=lambda: [48_000])
    envs: list = field(default_factory=lambda: [16])
    topology: list = field(default_factory=lambda: [""])
    overrides: list = field(default_factory=list)
    link_delay_ms: float = 0.0
    link_jitter_ms: float = 0.0
    link_loss: float = 0.0
    link_bandwidth_bps: float = 0.0
    round_timeout_ms: float | None = None
    budget_max_period: int = 4
    deadline_s: float = 30.0
    checkpoint_every: int = 10
    actor_mask: bool = False
    inprocess: bool = False
    jobs: int = 1

    @classmethod
    def from_mapping(cls, data: dict[str, Any], base: "SweepSpec | None" = None) -> "SweepSpec":
        """Spec keys as in the CLI (``seeds`` = ``seed``, ``set`` = ``overrides``; lists or scalars;
        list values may also be comma-separated strings)."""
        spec = base or cls()
        aliases = {"seeds": "seed", "set": "overrides", "kappas": "kappa", "budgets": "budget", "algos": "algo",
                   "tasks": "task", "deadline": "deadline_s"}
        known = {f.name for f in fields(cls)}
        for key, value in data.items():
            name = aliases.get(key, key).replace("-", "_")
            if name not in known:
                raise SweepError(f"unknown sweep key {key!r}; known: {', '.join(sorted(known | set(aliases)))}")
            if value is None and name not in ("budget", "round_timeout_ms"):
                continue
            if name in AXES:
                items = value if isinstance(value, list) else (
                    [x.strip() for x in value.split(",")] if isinstance(value, str) and name != "topology"
                    else [value])
                if not items:
                    raise SweepError(f"sweep axis {key!r} is empty")
                setattr(spec, name, [_CAST[name](x) for x in items])
            elif name == "overrides":
                setattr(spec, name, list(value) if isinstance(value, list) else [value])
            elif name == "out":
                spec.out = Path(value)
            else:
                setattr(spec, name, value)
        if spec.jobs < 1:
            raise SweepError(f"--jobs must be >= 1, got {spec.jobs}")
        return spec

    @classmethod
    def from_file(cls, path: Path, base: "SweepSpec | None" = None) -> "SweepSpec":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise SweepError(f"cannot read sweep spec {path}: {err.strerror}") from None
        try:
            data = tomllib.loads(text) if Path(path).suffix.lower() == ".toml" else json.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as err:
            raise SweepError(f"sweep spec {path} is not valid {'TOML' if str(path).endswith('.toml') else 'JSON'}: "
                             f"{err}") from None
        if not isinstance(data, dict):
            raise SweepError(f"sweep spec {path} must be a table/object of keys")
        return cls.from_mapping(data, base)

    def cells(self) -> list["Cell"]:
        varying = {a for a in ("steps", "envs", "topology") if len(getattr(self, a)) > 1}
        out = []
        for values in itertools.product(*(getattr(self, a) for a in AXES)):
            out.append(Cell(dict(zip(AXES, values)), varying))
        names = [c.name for c in out]
        if len(set(names)) != len(names):
            raise SweepError("two cells of the grid would share a directory (a value is listed twice?)")
        return out

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


def budget_label(b: float | None) -> str:
    return "none" if b is None else f"{b:g}"


def _slug(v: Any) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in str(v)).strip("-") or "default"


@dataclass
class Cell:
    axes: dict[str, Any]
    varying: set = field(default_factory=set)

    @property
    def name(self) -> str:
        a = self.axes
        b = budget_label(a["budget"])
        parts = [a["task"], a["algo"], a["relay"], f"k{a['kappa']}", f"b{b}", f"s{a['seed']}"]
        parts += [f"n{a['steps']}"] if "steps" in self.varying else []
        parts += [f"e{a['envs']}"] if "envs" in self.varying else []
        parts += [f"t{_slug(a['topology'])}"] if "topology" in self.varying else []
        return "_".join(_slug(p) for p in parts)

    def run_config(self, spec: SweepSpec, run_dir: Path) -> RunConfig:
        a = self.axes
        return RunConfig(task=a["task"], algo=a["algo"], topology=a["topology"], kappa=a["kappa"], steps=a["steps"],
                         envs=a["envs"], seed=a["seed"], run_dir=run_dir, overrides=list(spec.overrides),
                         deadline_s=spec.deadline_s, checkpoint_every=spec.checkpoint_every, progress=False,
                         inprocess=spec.inprocess, relay=a["relay"], comm_budget=a["budget"],
                         budget_max_period=spec.budget_max_period, link_delay_ms=spec.link_delay_ms,
                         link_jitter_ms=spec.link_jitter_ms, link_loss=spec.link_loss,
                         link_bandwidth_bps=spec.link_bandwidth_bps, round_timeout_ms=spec.round_timeout_ms,
                         actor_mask=spec.actor_mask)


def run_command(cfg: RunConfig) -> list[str]:
    """The `khop run` command line that runs one cell."""
    cmd = [sys.executable, "-m", "compose.cli", "run", "--run-dir", str(cfg.run_dir), "--no-progress",
           "--task", cfg.task, "--algo", cfg.algo, "--kappa", str(cfg.kappa), "--steps", str(cfg.steps),
           "--envs", str(cfg.envs), "--seed", str(cfg.seed), "--deadline", str(cfg.deadline_s),
           "--checkpoint-every", str(cfg.checkpoint_every), *comm_args(cfg)]
    if cfg.topology:
        cmd += ["--topology", cfg.topology]
    if cfg.inprocess:
        cmd.append("--inprocess")
    for kv in cfg.overrides:
        cmd += ["--set", kv]
    return cmd


# --------------------------------------------------------------------------- resume


_MATCH_KEYS = ("task", "algo", "kappa", "steps", "envs", "seed", "overrides", "relay", "comm_budget",
               "budget_max_period", "link_delay_ms", "link_jitter_ms", "link_loss", "link_bandwidth_bps",
               "round_timeout_ms", "actor_mask", "inprocess")


def cell_state(run_dir: Path, cfg: RunConfig) -> str:
    """"absent", "finished", or "unfinished"; raises SweepError if the directory holds another run."""
    config_file = run_dir / "config.json"
    if not run_dir.exists():
        return "absent"
    if config_file.exists():
        try:
            recorded = json.loads(config_file.read_text())
        except ValueError:
            return "unfinished"
        want = asdict(cfg)
        for key in _MATCH_KEYS:
            if key in recorded and recorded[key] != want[key]:
                raise SweepError(f"{run_dir} holds a run with {key}={recorded[key]!r}, but this sweep asks for "
                                 f"{want[key]!r}; use another --out")
    try:
        status = json.loads((run_dir / "run_status.json").read_text())
    except (OSError, ValueError):
        return "unfinished"
    if status.get("state") == "finished" and (run_dir / "report" / "summary.md").exists():
        return "finished"
    return "unfinished"


# --------------------------------------------------------------------------- running


class Sweep:
    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        self.out = Path(spec.out)
        self.cells = spec.cells()
        self.interrupted = False
        self.configs = {c.name: c.run_config(spec, self.out / "runs" / c.name) for c in self.cells}
        for name, cfg in self.configs.items():  # every cell is checked before anything runs
            try:
                validate(cfg)
            except LaunchError as err:
                raise SweepError(f"cell {name}: {err}") from None

    def run(self, dry_run: bool = False) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "sweep.json").write_text(json.dumps(self.spec.to_json(), indent=1))
        states = {c.name: cell_state(self.out / "runs" / c.name, self.configs[c.name]) for c in self.cells}
        pending = [c for c in self.cells if states[c.name] != "finished"]
        done = len(self.cells) - len(pending)
        print(f"khop sweep: {len(self.cells)} cells, {done} finished (skipped), {len(pending)} to run, "
              f"{self.spec.jobs} at a time -> {self.out}", flush=True)
        if dry_run:
            for c in pending:
                print("  " + " ".join(run_command(self.configs[c.name])))
            return 0
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def interrupt(signum: int, _frame: object) -> None:
            self.interrupted = True
        for sig in previous:
            signal.signal(sig, interrupt)
        failed = []
        try:
            failed = self._run_cells(pending, states)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        report_dir = write_sweep_report(self.out, self.cells)
        print(f"khop sweep: report in {report_dir}", flush=True)
        if self.interrupted:
            print("khop sweep: interrupted; rerun the same command to resume", file=sys.stderr)
            return 130
        if failed:
            print(f"khop sweep: {len(failed)} cell(s) failed: {', '.join(failed)}; see {self.out / 'logs'}",
                  file=sys.stderr)
            return 1
        return 0

    def _run_cells(self, pending: list[Cell], states: dict[str, str]) -> list[str]:
        running: dict[str, tuple[subprocess.Popen, Any, float]] = {}
        failed: list[str] = []
        queue = list(pending)
        logs = self.out / "logs"
        logs.mkdir(exist_ok=True)
        n_total, n_done = len(pending), 0
        try:
            while (queue or running) and not self.interrupted:
                while queue and len(running) < self.spec.jobs and not self.interrupted:
                    cell = queue.pop(0)
                    run_dir = self.out / "runs" / cell.name
                    if states[cell.name] == "unfinished":
                        print(f"  {cell.name}: removing the unfinished run and starting again", flush=True)
                        shutil.rmtree(run_dir)
                    log = open(logs / f"{cell.name}.log", "wb")
                    proc = subprocess.Popen(run_command(self.configs[cell.name]), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                    running[cell.name] = (proc, log, time.monotonic())
                    print(f"  started {cell.name}", flush=True)
                time.sleep(0.2)
                for name, (proc, log, started) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    log.close()
                    del running[name]
                    n_done += 1
                    ok = proc.returncode == 0
                    if not ok and proc.returncode != 130:
                        failed.append(name)
                    print(f"  [{n_done}/{n_total}] {name}: {'finished' if ok else f'exit {proc.returncode}'} "
                          f"in {time.monotonic() - started:.0f} s", flush=True)
        finally:
            for proc, _log, _ in running.values():  # interrupted: let every cell stop cleanly
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            for name, (proc, log, _) in running.items():
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log.close()
        return failed


# --------------------------------------------------------------------------- the combined report


def cell_row(cell: Cell, run_dir: Path) -> dict[str, Any]:
    """One CSV row: the cell's axes, its state and the numbers the frontier is drawn from."""
    from .report import summarize

    row: dict[str, Any] = {**cell.axes, "budget": budget_label(cell.axes["budget"]), "cell": cell.name}
    try:
        status = json.loads((run_dir / "run_status.json").read_text()).get("state", "unknown")
    except (OSError, ValueError):
        status = "absent" if not run_dir.exists() else "unfinished"
    row["status"] = status
    if not (run_dir / "config.json").exists():
        return row
    s = summarize(run_dir)
    cfg = s["config"]
    plan = cfg.get("comm_plan") or {}
    limits = cfg.get("cost_limits") or []
    row.update({
        "plan": f"{plan.get('dtype', '?')}/every {plan.get('period', '?')}/{plan.get('hops', '?')} hops" if plan else "",
        "episodes": s["episodes"], "env_steps": s["last_env_step"],
        "final_return": s["last_quarter_return"], "final_cost": s["last_quarter_cost"],
        "cost_limit": sum(limits) if limits else None,
        "bytes_per_agent_step": s["bytes_per_agent_step"],
        **{f"bytes_per_agent_step_{ph}": v for ph, v in s["bytes_per_agent_step_by_phase"].items()},
        "presence_mean": s["presence_mean"], "msgs_lost": s["msgs_lost_total"],
        "wall_time_s": s["wall_time_s"],
    })
    return row


GROUP_AXES = ("task", "algo", "relay", "kappa", "budget", "steps", "envs", "topology")


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals)) if len(vals) > 1 else 0.0


def aggregate(rows: list[dict]) -> list[dict]:
    """Rows grouped over seeds (finished cells only), with the Pareto flag: within a (task, algo,
    steps, envs, topology), no other group sends fewer or equal bytes with a higher or equal
    return, one of them strictly."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("status") == "finished":
            groups.setdefault(tuple(str(r[a]) for a in GROUP_AXES), []).append(r)
    out = []
    for key, rs in groups.items():
        g = dict(zip(GROUP_AXES, (rs[0][a] for a in GROUP_AXES)))
        g["seeds"] = len(rs)
        g["plan"] = rs[0].get("plan", "")
        for name in ("final_return", "final_cost", "bytes_per_agent_step", "presence_mean"):
            g[name], g[name + "_std"] = _mean_std([r.get(name) for r in rs])
        g["cost_limit"] = rs[0].get("cost_limit")
        out.append(g)
    for g in out:
        peers = [h for h in out if all(h[a] == g[a] for a in ("task", "algo", "steps", "envs", "topology"))]
        g["pareto"] = g["final_return"] is not None and g["bytes_per_agent_step"] is not None and not any(
            h is not g and h["final_return"] is not None and h["bytes_per_agent_step"] is not None
            and h["bytes_per_agent_step"] <= g["bytes_per_agent_step"] and h["final_return"] >= g["final_return"]
            and (h["bytes_per_agent_step"] < g["bytes_per_agent_step"] or h["final_return"] > g["final_return"])
            for h in peers)
    out.sort(key=lambda g: (g["task"], g["algo"], str(g["relay"]), g["kappa"],
                            math.inf if g["budget"] == "none" else float(g["budget"])))
    return out


def _fmt(v: Any, std: Any = None, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        s = f"{v:,.{digits}f}"
        return s + (f" ± {std:,.{digits}f}" if std else "")
    return str(v)


def render_markdown(groups: list[dict], rows: list[dict], spec: dict | None) -> str:
    lines = ["# Sweep report", ""]
    if spec:
        axes = ", ".join(f"{a} = {', '.join(str('none' if v is None else v) for v in spec.get(a, []))}"
                         for a in AXES if spec.get(a))
        lines += [f"Grid: {axes}.", ""]
        fixed = {k: spec[k] for k in FIXED if k in spec and spec[k] not in (None, [], 0, 0.0, False)}
        if fixed:
            lines += ["Fixed: " + ", ".join(f"{k} = {v}" for k, v in fixed.items()) + ".", ""]
    states: dict[str, int] = {}
    for r in rows:
        states[r["status"]] = states.get(r["status"], 0) + 1
    lines += ["Cells: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + ".", "",
              "Final return / cost: mean of the last quarter of each run's episodes, then mean ± std over "
              "seeds. Bytes: wire bytes sent per agent per env step (one transition of one env copy). "
              "★ = on the return-vs-bytes Pareto frontier of its task and algorithm.", "",
              "| task | algo | relay | κ | budget | plan | bytes / agent-step | final return | final cost "
              "(limit) | presence | seeds | frontier |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in groups:
        limit = f" ({_fmt(g['cost_limit'], digits=0)})" if g.get("cost_limit") is not None else ""
        lines.append(
            f"| {g['task']} | {g['algo']} | {g['relay']} | {g['kappa']} | {g['budget']} | {g['plan']} | "
            f"{_fmt(g['bytes_per_agent_step'], digits=1)} | {_fmt(g['final_return'], g['final_return_std'])} | "
            f"{_fmt(g['final_cost'], g['final_cost_std'])}{limit} | {_fmt(g['presence_mean'])} | {g['seeds']} | "
            f"{'★' if g['pareto'] else ''} |")
    lines += ["", "![pareto](pareto.png)", "", "![curves](curves.png)", ""]
    return "\n".join(lines)


def _panel_keys(groups: list[dict]) -> list[tuple[str, str]]:
    return sorted({(g["task"], g["algo"]) for g in groups})


def plot_pareto(groups: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    panels = _panel_keys(groups) or [("", "")]
    fig = Figure(figsize=(6 * len(panels), 8), dpi=100, layout="constrained")
    axes = fig.subplots(2, len(panels), squeeze=False)
    for col, (task, algo) in enumerate(panels):
        gs = [g for g in groups if (g["task"], g["algo"]) == (task, algo) and g["final_return"] is not None
              and g["bytes_per_agent_step"] is not None]
        ax_r, ax_c = axes[0][col], axes[1][col]
        for ax, key, label in ((ax_r, "final_return", "final return"), (ax_c, "final_cost", "final cost")):
            ax.set_title(f"{task} / {algo}" if ax is ax_r else "")
            ax.set_xlabel("bytes sent per agent per env step")
            ax.set_ylabel(label)
            ax.set_xscale("symlog", linthresh=10)
            ax.grid(alpha=0.3)
            for kappa in sorted({g["kappa"] for g in gs}):
                pts = [g for g in gs if g["kappa"] == kappa and g[key] is not None]
                ax.errorbar([g["bytes_per_agent_step"] for g in pts], [g[key] for g in pts],
                            yerr=[g[key + "_std"] or 0 for g in pts], fmt="o", capsize=3, label=f"κ = {kappa}")
                for g in pts:
                    ax.annotate(f"{g['budget']}" + ("" if g["relay"] == "sync" else f" {g['relay']}"),
                                (g["bytes_per_agent_step"], g[key]), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
        front = sorted((g for g in gs if g["pareto"]), key=lambda g: g["bytes_per_agent_step"])
        if front:
            ax_r.plot([g["bytes_per_agent_step"] for g in front], [g["final_return"] for g in front], "k--", lw=1,
                      label="Pareto frontier")
        limits = {g["cost_limit"] for g in gs if g.get("cost_limit") is not None}
        for lim in limits:
            ax_c.axhline(lim, color="red", ls="--", lw=1, label="cost limit")
        for ax in (ax_r, ax_c):
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.savefig(path)


def _curve(run_dir: Path, grid: np.ndarray, key: str) -> np.ndarray:
    """Episode metric averaged within each bin of env steps (NaN where no episode ended)."""
    from .report import _episode_cost, _num, load_episodes

    eps = load_episodes(run_dir)
    get = (lambda e: _num(e.get("episode_return"))) if key == "return" else _episode_cost
    pts = [(float(e["env_step"]), get(e)) for e in eps]
    pts = [(x, y) for x, y in pts if y is not None]
    out = np.full(len(grid) - 1, np.nan)
    if not pts:
        return out
    x, y = map(np.asarray, zip(*pts))
    idx = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, len(grid) - 2)
    for b in range(len(grid) - 1):
        sel = y[idx == b]
        if len(sel):
            out[b] = sel.mean()
    return out


def plot_curves(out_dir: Path, cells: list[Cell], rows: list[dict], path: Path, bins: int = 25) -> None:
    """Learning curves per κ: one column per (task, algo, budget), rows return and cost, lines per κ
    (and relay mode when several), mean over finished seeds."""
    from matplotlib.figure import Figure

    finished = {r["cell"] for r in rows if r.get("status") == "finished"}
    done = [c for c in cells if c.name in finished]
    columns = sorted({(c.axes["task"], c.axes["algo"], budget_label(c.axes["budget"])) for c in done},
                     key=lambda k: (k[0], k[1], math.inf if k[2] == "none" else float(k[2])))
    fig = Figure(figsize=(4.5 * max(1, len(columns)), 7), dpi=100, layout="constrained")
    axes = fig.subplots(2, max(1, len(columns)), squeeze=False)
    relays = {c.axes["relay"] for c in done}
    for col, (task, algo, budget) in enumerate(columns):
        mine = [c for c in done if (c.axes["task"], c.axes["algo"]) == (task, algo)
                and budget_label(c.axes["budget"]) == budget]
        steps = max(c.axes["steps"] for c in mine)
        grid = np.linspace(0, steps, bins + 1)
        centres = (grid[:-1] + grid[1:]) / 2
        for row, key in enumerate(("return", "cost")):
            ax = axes[row][col]
            ax.set_title(f"{task} / {algo} / budget {budget}" if row == 0 else "", fontsize=9)
            ax.set_xlabel("env step")
            ax.set_ylabel(f"episode {key}")
            ax.grid(alpha=0.3)
            for kappa, relay in sorted({(c.axes["kappa"], c.axes["relay"]) for c in mine}):
                curves = [_curve(out_dir / "runs" / c.name, grid, key) for c in mine
                          if (c.axes["kappa"], c.axes["relay"]) == (kappa, relay)]
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # bins where no seed finished an episode
                    mean = np.nanmean(np.vstack(curves), axis=0) if curves else np.array([])
                ok = np.isfinite(mean) if len(mean) else np.zeros(0, bool)
                if ok.any():  # bins where no episode ended are skipped, not drawn as gaps
                    label = f"κ = {kappa}" + (f" ({relay})" if len(relays) > 1 else "")
                    ax.plot(centres[ok], mean[ok], lw=1.5, marker="o" if ok.sum() <= 12 else None, ms=4,
                            label=label)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    if not columns:
        axes[0][0].text(0.5, 0.5, "no finished cells", ha="center", va="center", transform=axes[0][0].transAxes)
    fig.savefig(path)


def write_sweep_report(out_dir: Path, cells: list[Cell] | None = None) -> Path:
    """Write OUT/report/{sweep.csv, sweep.md, pareto.png, curves.png} from whatever has finished."""
    out_dir = Path(out_dir)
    try:
        spec_json = json.loads((out_dir / "sweep.json").read_text())
    except (OSError, ValueError):
        spec_json = None
    if cells is None:
        if spec_json is None:
            raise SweepError(f"{out_dir} is not a sweep directory (no sweep.json)")
        cells = SweepSpec.from_mapping({k: v for k, v in spec_json.items() if k != "out"}).cells()
    report = out_dir / "report"
    report.mkdir(parents=True, exist_ok=True)
    rows = [cell_row(c, out_dir / "runs" / c.name) for c in cells]
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    with open(report / "sweep.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    groups = aggregate(rows)
    (report / "sweep.md").write_text(render_markdown(groups, rows, spec_json), encoding="utf-8")
    plot_pareto(groups, report / "pareto.png")
    plot_curves(out_dir, cells, rows, report / "curves.png")
    return report


# --------------------------------------------------------------------------- CLI


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a grid (κ × budget × algo × seed …), resumable, with a combined report")
    p.add_argument("--spec", type=Path, default=None, help="JSON or TOML file with the same keys as these options")
    p.add_argument("--out", type=Path, default=None, help="sweep directory (default sweeps/sweep)")
    lists = p.add_argument_group("axes (comma-separated lists)")
    for name, help_ in (("task", "tasks"), ("algo", "learners"), ("relay", "sync and/or async"),
                        ("kappa", "e.g. 0,1,2"), ("budget", "bytes per agent per env step, or none; e.g. none,2000,500"),
                        ("seeds", "e.g. 0,1,2"), ("steps", "env steps per run"), ("envs", "env copies per run")):
        lists.add_argument(f"--{name}", default=None, help=help_)
    lists.add_argument("--topology", action="append", default=None, help="repeatable; default: the task's graph")
    p.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                   help="learner hyperparameter for every cell, repeatable")
    for flag, kind in (("--link-delay-ms", float), ("--link-jitter-ms", float), ("--link-loss", float),
                       ("--link-bandwidth-bps", float), ("--round-timeout-ms", float), ("--budget-max-period", int),
                       ("--deadline", float), ("--checkpoint-every", int)):
        p.add_argument(flag, type=kind, default=None, help="as for `khop run`, for every cell")
    p.add_argument("--inprocess", action="store_true", default=None, help="run each cell with `khop run --inprocess`")
    p.add_argument("--jobs", type=int, default=None, help="cells running at once (default 1)")
    p.add_argument("--dry-run", action="store_true", help="print what would run and exit")
    p.add_argument("--report-only", action="store_true", help="rewrite OUT/report from the finished cells")


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    spec = SweepSpec.from_file(args.spec) if args.spec else SweepSpec()
    given = {k: getattr(args, k) for k in ("task", "algo", "relay", "kappa", "budget", "seeds", "steps", "envs",
                                           "topology", "overrides", "link_delay_ms", "link_jitter_ms", "link_loss",
                                           "link_bandwidth_bps", "round_timeout_ms", "budget_max_period", "deadline",
                                           "checkpoint_every", "inprocess", "jobs", "out")
             if getattr(args, k, None) is not None}
    return SweepSpec.from_mapping(given, spec)


def cmd_sweep(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    if args.report_only:
        print(write_sweep_report(spec.out, spec.cells() if (args.spec or args.kappa) else None) / "sweep.md")
        return 0
    return Sweep(spec).run(dry_run=args.dry_run)
