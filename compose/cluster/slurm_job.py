"""Inside the batch job `khop slurm` writes: `khop run` across the allocation, one job step per process.

    python -m compose.cluster.slurm_job [khop run's options]      (the job file's last line)

This is compose/run/launcher.py's Launch — the same lock, config.json, supervisor (``--restart``:
a failed step is started again after a backoff; an agent resumes from its newest checkpoint, the
envserver continues its clock), start-up-failure rule, stop and report — with four things changed:

- *where*: the allocation's hosts (``scontrol show hostnames $SLURM_JOB_NODELIST``), read when the
  job starts, so a requeued job on other nodes works too. The envserver and then agents 0..N-1 go
  in contiguous runs, host by host, as many on each host as SLURM laid tasks there
  (SLURM_TASKS_PER_NODE; with `khop slurm --nodes K` at most ⌈(N+1)/K⌉ a node): graph neighbours
  with near ids (ring, line, grid rows) share a host. Every process binds ``tcp://*:PORT``; the
  topology's "address" is ``tcp://HOST:PORT``;
- *how*: each process is its own ``srun --ntasks=1 --exact`` step (not one heterogeneous job, whose
  components start and end together): one agent's step can fail, be cancelled and be started again
  while the others keep stepping, and ``squeue -s`` names every process. The process's own output
  goes to NAME/log.txt, written by SLURM on its node; srun's own lines to NAME/srun.txt;
- *stopping*: ``scancel --signal=TERM JOB`` reaches every step's process (a SIGTERM to srun itself
  makes SLURM kill the step outright, measured on SLURM 22.05), so agents write their last
  checkpoint as under `khop run`;
- *resuming*: when --run-dir already holds this run (the job was requeued, or submitted again after
  a time limit or a failure) it continues it, as `khop run --resume` does.

Before anything starts one step per host checks that the host sees the run directory this host
wrote (a shared file system) and imports khop with the job's Python: one line naming the host otherwise.
"""
from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

from envserver.jsonl import JsonlWriter
from envserver.options import from_namespace

from ..run.children import ChildFiles
from ..run.config import LaunchError, RunConfig, resume_config
from ..run.launcher import Launch, spawn

# ports below Linux's ephemeral range (32768–60999, net.ipv4.ip_local_port_range's default), so no
# outgoing connection holds one; consecutive job ids get disjoint blocks
PORT_LOW, PORT_HIGH = 10_000, 32_768
STOP_GRACE_S = 15.0  # as Launch.stop: time for an agent's last checkpoint


def port_base(job_id: int, n_processes: int) -> int:
    """The envserver's port; agent i listens on base + 1 + i. Derived from the job id so two khop
    jobs sharing a node do not collide unless their ids are far apart and wrap onto each other."""
    span = PORT_HIGH - PORT_LOW - n_processes
    if span <= 0:
        raise LaunchError(f"{n_processes} processes need more ports than {PORT_LOW}–{PORT_HIGH} holds")
    return PORT_LOW + (job_id * n_processes) % span


def tasks_per_node(text: str) -> list[int]:
    """SLURM_TASKS_PER_NODE ("4,3(x2)") as one count per host, in the node list's order: how many
    one-CPU steps each host holds, as SLURM laid the job's tasks out (its CPU count would overstate
    it where a task takes a whole core of two hardware threads)."""
    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m:
            raise LaunchError(f"SLURM_TASKS_PER_NODE={text!r} is not in SLURM's N(xM),… form")
        out += [int(m[1])] * int(m[2] or 1)
    return out


def placement(hosts: list[str], capacity: list[int], n_agents: int) -> dict[str, str]:
    """Process name → host: "envserver", then "agent-0".."agent-N-1" in contiguous runs host by host.
    ``capacity``: the steps each host holds. Counts are balanced within it (water-filling: each
    process goes to the least-loaded host with room), then handed out in host order, so the runs are
    contiguous; where the capacities add up to the processes exactly, they are the counts."""
    names = ["envserver", *(f"agent-{i}" for i in range(n_agents))]
    if sum(capacity) < len(names):
        raise LaunchError(f"the allocation holds {sum(capacity)} one-CPU steps on {len(hosts)} node(s); the run "
                          f"needs {len(names)} (the envserver and {n_agents} agents)")
    counts = [0] * len(hosts)
    for _ in names:
        room = [h for h in range(len(hosts)) if counts[h] < capacity[h]]
        counts[min(room, key=lambda h: (counts[h], h))] += 1
    order = [hosts[h] for h in range(len(hosts)) for _ in range(counts[h])]
    return dict(zip(names, order))


def hostnames(nodelist: str) -> list[str]:
    """The allocation's host names, expanded by SLURM itself (node[01-04] → node01 … node04)."""
    res = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=60)
    hosts = res.stdout.split()
    if res.returncode != 0 or not hosts:
        raise LaunchError(f"scontrol show hostnames {nodelist}: {res.stderr.strip() or 'no hosts'}")
    return hosts


class StepFiles(ChildFiles):
    """A step whose process never started (srun could not create it) leaves no log.txt: then srun's
    own lines, NAME/srun.txt, say why."""

    def log(self, name: str) -> Path:
        own = super().log(name)
        return own if own.exists() and own.stat().st_size else self.dir / name / "srun.txt"


def step_memory(name: str, where: dict[str, str]) -> list[str]:
    """srun's memory request for one step. A job given --mem (per node) and no --mem-per-cpu hands
    its first step all of a node's memory and every later step waits; each step asks for its share."""
    per_node = os.environ.get("SLURM_MEM_PER_NODE")
    if not per_node or os.environ.get("SLURM_MEM_PER_CPU"):
        return []
    sharing = sum(1 for host in where.values() if host == where[name])
    return [f"--mem={int(per_node) // sharing}M"]


class SlurmLaunch(Launch):
    """One run inside a SLURM job (this module's docstring)."""

    child_files = StepFiles
    forks_agents = False  # each process is its own srun step, on the node SLURM placed it

    def __init__(self, cfg: RunConfig, resume: bool = False) -> None:
        super().__init__(cfg, resume)
        if not os.environ.get("SLURM_JOB_ID"):
            raise LaunchError("not inside a SLURM job (no SLURM_JOB_ID): submit the job file with sbatch")
        self.job_id = int(os.environ["SLURM_JOB_ID"])
        self.hosts = hostnames(os.environ["SLURM_JOB_NODELIST"])
        self.where = placement(self.hosts, tasks_per_node(os.environ["SLURM_TASKS_PER_NODE"]), self.spec.n_agents)

    def prepare(self) -> Path:
        self._check_hosts()
        return super().prepare()

    def place(self) -> None:
        base = port_base(self.job_id, self.spec.n_agents + 1)
        self.env_bind = f"tcp://*:{base}"
        self.env_endpoint = f"tcp://{self.where['envserver']}:{base}"
        for node in self.graph.nodes:
            port = base + 1 + node
            self.graph.nodes[node]["address"] = f"tcp://{self.where[f'agent-{node}']}:{port}"
            self.graph.nodes[node]["bind"] = f"tcp://*:{port}"
        with JsonlWriter(self.dir / "events.jsonl") as events:  # one row per start of the job (requeues too)
            events.write({"time": time.time(), "event": "slurm_allocation", "process": "launcher",
                          "job_id": self.job_id, "hosts": self.hosts, "placement": self.where, "port_base": base})

    def spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        srun = ["srun", "--ntasks=1", "--nodes=1", "--cpus-per-task=1", "--exact", f"--nodelist={self.where[name]}",
                f"--job-name={name}", f"--output={self.dir / name / 'log.txt'}", "--open-mode=append",
                *step_memory(name, self.where)]
        return spawn([*srun, *cmd], self.dir / name / "srun.txt")

    def terminate(self) -> None:
        """SIGTERM every process through SLURM (not the batch step: that is us); after the grace,
        Launch.stop ends the steps still running by ending their srun."""
        if any(p.poll() is None for p in self.procs.values()):
            subprocess.run(["scancel", "--signal=TERM", str(self.job_id)], capture_output=True, timeout=60)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        super().stop(grace_s)

    def _check_hosts(self) -> None:
        """One step per host: the run directory is the one this host sees, and khop imports."""
        token = self.dir / f".slurm-check-{self.job_id}"
        word = secrets.token_hex(8)
        token.write_text(word)
        code = ("import os, socket, sys\n"
                "host = socket.gethostname()\n"
                "try:\n"
                "    import agentd.main, envserver.main\n"
                "except Exception as err:\n"
                "    sys.exit(f'{host}: this Python ({sys.executable}) cannot import khop: {err}')\n"
                "try:\n"
                "    seen = open(sys.argv[1]).read()\n"
                "except OSError:\n"
                "    seen = None\n"
                "if seen != sys.argv[2]:\n"
                "    sys.exit(f'{host} does not see the run directory {os.path.dirname(sys.argv[1])} of the batch "
                "host: it must be on a file system every node shares, at the same path')\n")
        n = len(self.hosts)
        cmd = ["srun", f"--nodes={n}", f"--ntasks={n}", "--ntasks-per-node=1", "--cpus-per-task=1", "--exact",
               "--job-name=khop-check", sys.executable, "-c", code, str(token), word]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        finally:
            token.unlink(missing_ok=True)
        if res.returncode != 0:
            lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("srun:")]
            raise LaunchError(lines[-1] if lines else f"{shlex.join(cmd[:7])} failed: {res.stderr.strip()[-300:]}")


def main(argv: list[str] | None = None) -> int:
    from ..cli import build_parser, finish

    args = build_parser().parse_args(["run", *(sys.argv[1:] if argv is None else argv)])
    try:
        if args.run_dir is None:
            raise LaunchError("--run-dir is required: the run directory on the file system every node shares")
        resume = (args.run_dir / "config.json").exists()
        if resume:  # requeued, or submitted again: continue the run, as `khop run --resume`
            print(f"khop slurm job: {args.run_dir} holds this run; resuming it", file=sys.stderr, flush=True)
            cfg = resume_config(args.run_dir, progress=False, restart=args.restart, max_restarts=args.max_restarts,
                                tensorboard=args.tensorboard)
        else:
            args.progress = False  # a batch job has no terminal to draw a bar on
            cfg = from_namespace(RunConfig, args)
        return finish(SlurmLaunch(cfg, resume=resume))
    except LaunchError as err:
        print(f"khop slurm job: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
