"""`khop slurm`: one SLURM batch job per run — `sbatch job.sbatch` runs the envserver and the N agents
as job steps across the allocation (compose/cluster/slurm_job.py), then writes the report.

What it writes, for `-o job.sbatch`: the job file, whose `#SBATCH` lines ask for N+1 one-CPU tasks
(one per process: each is single-threaded, OMP_NUM_THREADS=1 as under `khop run`) and whose last line
is `python -m compose.cluster.slurm_job` with `khop run`'s options — every path in them absolute,
since the job runs elsewhere. It creates the run directory (SLURM writes the job's output there from
its first second), and checks everything that can be checked before anything is submitted: the run's
options exactly as `khop run` checks them (a topology that does not match the task, a `--curve`
directory without the agents' keys, …), and the node count against the processes and, where `sinfo`
answers, against the partition's nodes and CPUs.

Submitting the same file again continues the run (from the agents' checkpoints and the envserver's
clock); `#SBATCH --requeue` lets SLURM do so by itself after a node failure.
"""
from __future__ import annotations

import argparse
import copy
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from envserver.options import copy_options, from_namespace, to_argv

from ..run.config import LaunchError, RunConfig, validate

# `khop run` options with no meaning in a batch job: no terminal to draw on, no single process,
# and resuming is what submitting the job file again does
NOT_FOR_SLURM = ("help", "progress", "inprocess", "resume", "zygote")  # zygote: each process is its own srun step
# SIGTERM to the job's launcher this long before the time limit: it stops the steps (15 s grace for the
# agents' last checkpoint, compose/cluster/slurm_job.py) and writes the report, so resubmitting resumes
STOP_BEFORE_LIMIT_S = 90
DOWN_STATES = ("down", "drain", "drng", "fail", "maint", "inval")  # sinfo %t prefixes of nodes no job gets


def job_text(cfg: RunConfig, spec, *, name: str, out: Path, python: str, workdir: Path, nodes: int | None,
             partition: str | None, time_limit: str | None, extra: list[str], argv: list[str]) -> str:
    """The batch script. ``argv``: `khop run`'s options for the job's launcher."""
    n = spec.n_agents + 1
    run_dir = cfg.run_dir
    spread = [f"--nodes={nodes}", f"--ntasks-per-node={per_node(n, nodes)}"] if nodes else []
    directives = [f"--job-name=khop-{name}", f"--ntasks={n}", "--cpus-per-task=1", *spread,
                  *([f"--partition={partition}"] if partition else []),
                  *([f"--time={time_limit}"] if time_limit else []),
                  f"--chdir={workdir}", f"--output={run_dir}/slurm-%j.out", "--open-mode=append", "--requeue",
                  f"--signal=B:TERM@{STOP_BEFORE_LIMIT_S}", *extra]
    written_by = shlex.join(["khop", *sys.argv[1:]]) if sys.argv[1:2] == ["slurm"] else "khop slurm"
    lines = [
        "#!/bin/bash",
        f"# khop run {name}: {cfg.task}, {cfg.algo}, kappa {cfg.kappa}, {spec.n_agents} agents, {cfg.steps} env steps",
        f"# written by: {written_by}",
        "#",
        f"# submit:        sbatch {out.name}     (again after a time limit, scancel or failure: the run resumes)",
        "# processes:     squeue -s -j JOBID     (one step per process: envserver, agent-0 … "
        f"agent-{spec.n_agents - 1})",
        f"# run directory: {run_dir}   (the job's output: slurm-JOBID.out; at the end report/)",
        f"# needs on every node, at these paths: {python} (khop installed), {workdir}, {run_dir}",
        *[f"#SBATCH {d}" for d in directives],
        "",
        "export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1",
        shlex.join(["exec", python, "-m", "compose.cluster.slurm_job", *argv]),
        "",
    ]
    return "\n".join(lines)


def per_node(n_processes: int, nodes: int) -> int:
    """The most processes one of ``nodes`` nodes gets: --ntasks-per-node, which sbatch takes as a
    maximum beside --ntasks, so SLURM cannot pack most of the run onto one node."""
    return -(-n_processes // nodes)


def partition_nodes(partition: str | None) -> tuple[str, list[int]] | None:
    """(partition, CPUs of each node a job can get there) from `sinfo`; None where it does not answer
    (no SLURM client here, no controller reachable) and the node count cannot be checked."""
    if shutil.which("sinfo") is None:
        return None
    try:
        res = subprocess.run(["sinfo", "-h", "-N", "-o", "%N|%c|%P|%t"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    rows = [line.split("|") for line in res.stdout.splitlines() if line.count("|") == 3]
    if partition is None:
        partition = next((p.rstrip("*") for _, _, p, _ in rows if p.endswith("*")), None)
        if partition is None:
            return None
    cpus = {node: int(c) for node, c, p, state in rows
            if p.rstrip("*") == partition and not state.startswith(DOWN_STATES)}
    return partition, list(cpus.values())


def check_nodes(nodes: int | None, n_processes: int, partition: tuple[str, list[int]] | None) -> None:
    """The node count against the run and, where known, the partition: LaunchError naming the problem."""
    if nodes is not None and nodes > n_processes:
        raise LaunchError(f"--nodes {nodes}: the run has {n_processes} processes (the envserver and "
                          f"{n_processes - 1} agents), one CPU each; it can use at most {n_processes} nodes")
    if partition is None:
        return
    name, cpus = partition
    if nodes is not None and nodes > len(cpus):
        raise LaunchError(f"--nodes {nodes}: partition {name} has {len(cpus)} node(s) up")
    best = sorted(cpus, reverse=True)[:nodes or len(cpus)]
    room = sum(min(c, per_node(n_processes, nodes)) for c in best) if nodes else sum(best)
    if room < n_processes:
        raise LaunchError(f"{n_processes} one-CPU processes (the envserver and {n_processes - 1} agents) do not fit "
                          f"on {len(best)} node(s) of partition {name} ({sum(best)} CPUs"
                          + (f", at most {per_node(n_processes, nodes)} processes a node)" if nodes else ")"))


def render(cfg: RunConfig, name: str, out: Path, *, nodes: int | None = None, partition: str | None = None,
           time_limit: str | None = None, extra: list[str] = (), python: str | None = None) -> Path:
    """Check the run and write its job file; return the file. ``cfg`` is validated here (LaunchError)."""
    argv_cfg = copy.deepcopy(cfg)  # the options as given: κ stays the run's own default when none was given
    spec, _graph = validate(cfg)
    check_nodes(nodes, spec.n_agents + 1, partition_nodes(partition))
    for d in extra:
        if not d.startswith("--") or "\n" in d:
            raise LaunchError(f"--sbatch {d!r}: give one sbatch option as it would follow #SBATCH, e.g. "
                              "--sbatch=--mem-per-cpu=2G")
    if out.suffix != ".sbatch":
        raise LaunchError(f"-o {out}: the job file must end in .sbatch")
    workdir = Path.cwd()
    run_dir = (cfg.run_dir or Path("runs") / name).absolute()
    if (run_dir / "config.json").exists():
        raise LaunchError(f"run directory {run_dir} already holds a run; choose another --run-dir (or sbatch its "
                          "job file again to continue it)")
    argv_cfg.run_dir = cfg.run_dir = run_dir
    argv_cfg.progress = True  # the job's launcher draws no bar whatever this says: keep it off the line
    if cfg.curve is not None:
        argv_cfg.curve = cfg.curve.absolute()
    if cfg.topology and Path(cfg.topology).exists():  # a file (not a generator or shipped name): absolute
        argv_cfg.topology = str(Path(cfg.topology).absolute())
    text = job_text(cfg, spec, name=name, out=out, python=python or sys.executable, workdir=workdir, nodes=nodes,
                    partition=partition, time_limit=time_limit, extra=list(extra), argv=to_argv(argv_cfg))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)  # SLURM opens the job's output there before the job runs
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    except OSError as err:
        raise LaunchError(f"cannot write {err.filename}: {err.strerror}") from None
    return out


# --- the CLI -----------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `khop slurm`, with `khop run`'s options (same names, defaults, help) where they apply."""
    p = subparsers.add_parser("slurm", help="write a SLURM batch job: one job step per agent plus the envserver "
                                            "across the allocation (sbatch FILE)")
    copy_options(subparsers.choices["run"], p, NOT_FOR_SLURM)
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="the job file to write (default slurm/<name>.sbatch)")
    p.add_argument("--name", default=None, help="run name: job name khop-<name>, run directory runs/<name> "
                                                "unless --run-dir (default <task>-<algo>-k<κ>-s<seed>-<time>)")
    p.add_argument("--nodes", type=_positive_int, default=None,
                   help="nodes to spread the processes over (default: as SLURM packs N+1 one-CPU tasks)")
    p.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's default)")
    p.add_argument("--time", dest="time_limit", default=None, metavar="LIMIT",
                   help="the job's time limit, as sbatch --time takes it (default: the partition's)")
    p.add_argument("--sbatch", dest="extra", action="append", default=[], metavar="OPTION",
                   help="one more #SBATCH line, repeatable (e.g. --sbatch=--account=rl --sbatch=--mem-per-cpu=2G)")
    p.add_argument("--python", default=None, help="the Python the job runs, with khop installed, at the same path "
                                                  "on every node (default: this one, sys.executable)")
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def cmd_slurm(args: argparse.Namespace) -> int:
    cfg = from_namespace(RunConfig, args, progress=False)
    probe = copy.deepcopy(cfg)
    validate(probe)  # settles a default κ before the name uses it
    for line in probe.warnings:
        print(f"khop slurm: warning: {line}", file=sys.stderr)
    name = args.name or f"{cfg.task}-{cfg.algo}-k{probe.kappa}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = args.output or Path("slurm") / f"{name}.sbatch"
    f = render(cfg, name, out, nodes=args.nodes, partition=args.partition, time_limit=args.time_limit,
               extra=args.extra, python=args.python)
    print(f"wrote {f}; run directory {cfg.run_dir}\nsubmit: sbatch {f}")
    return 0
