"""`khop run` on one machine: where the envserver and the N agentd processes are spawned, watched
and stopped.

Each child is a real OS process talking TCP on 127.0.0.1. Children get PR_SET_PDEATHSIG so that
even a SIGKILLed launcher leaves no orphans, and Ctrl-C / SIGTERM stop them in order (SIGTERM,
grace period, SIGKILL) so agents can write their final checkpoint. Agents are forked from a warm
parent (compose/run/zygote.py) unless ``--no-zygote`` is given or forking is impossible here (the
run then spawns them, saying why in events.jsonl); the envserver is always spawned.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from envserver.atomic import write_whole
from topologies import save_topology

from .children import ChildFiles
from .inprocess import run_inprocess
from .outcome import hold_reserve, launcher_ran_out, record_status, release_reserve, report, tell
from .progress import ProgressBar, TailState, tail_episodes
from .config import LaunchError, RunConfig, comm_plan, process_args, run_record, validate
from .supervisor import RestartPolicy, Supervisor
from .zygote import ForkedProcess, Zygote, ZygoteError, set_subreaper, start_zygote

PR_SET_PDEATHSIG = 1
# how long an envserver whose agents all finished (exit 0: they got its BYE) may take to end by
# itself before it is told to: its own ending is 0.2 s for the BYE frames to leave, at most 0.5 s
# of socket linger (envserver/server.py _close) and the interpreter's exit — forked agents, which
# skip that exit's clean-up, are gone well before it
ENDING_GRACE_S = 10.0


def free_ports(n: int) -> list[int]:
    """Ports the kernel says are free now; bound together so they are distinct."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the thread that started it ends (even by SIGKILL)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(cmd: list[str], log_path: Path, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent, env=env, pass_fds=pass_fds)


class Launch:
    """One local run: prepare the directory, spawn, watch, stop, report.

    ``resume``: start the processes of an unfinished run (``resume_config``) again in its own
    directory: the agents load their newest checkpoints and the envserver continues from
    ``envserver/clock``, exactly as after a supervised restart ("Fault tolerance"), so the step
    budget is honoured; config.json is kept and ``events.jsonl`` gets a ``run_resumed`` row.
    Either way :meth:`run` holds an exclusive lock (flock) on the run directory while it runs, so a
    run directory never has two launchers."""

    child_files = ChildFiles  # what the supervisor reads of a child's files (start-up marker, last words)
    forks_agents = True  # agents may be forked from the zygote (not where each process is placed by an engine)

    def __init__(self, cfg: RunConfig, resume: bool = False) -> None:
        self.cfg = cfg
        self.resume = resume
        self.spec, self.graph = validate(cfg)
        if not resume:
            for line in cfg.warnings:
                print(f"khop run: warning: {line}", file=sys.stderr)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.dir = cfg.run_dir or Path("runs") / f"{cfg.task}-{cfg.algo}-k{cfg.kappa}-s{cfg.seed}-{stamp}"
        if (self.dir / "config.json").exists() and not resume:
            raise LaunchError(f"run directory {self.dir} already holds a run; choose another --run-dir "
                              "(or continue it with --resume)")
        self.procs: dict[str, subprocess.Popen] = {}
        self.zygote: Zygote | None = None
        self.interrupted = False
        self._told_to_stop = False
        self._agents_gone_at: float | None = None
        self._lock: int | None = None

    def _take_lock(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LaunchError(f"run directory {self.dir} is in use by another khop run") from None
        self._lock = fd

    def prepare(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.place()
        self.topology_file = self.dir / "topology.json"
        save_topology(self.graph, self.topology_file)  # fresh addresses: the old ports may be taken by now
        if self.resume:
            from envserver.clock import read_clock
            from envserver.jsonl import JsonlWriter

            try:
                clock = read_clock(self.dir / "envserver" / "clock")
            except ValueError as err:
                raise LaunchError(str(err)) from None
            with JsonlWriter(self.dir / "events.jsonl") as events:
                events.write({"time": time.time(), "event": "run_resumed", "process": "launcher",
                              "env_step": clock.env_step if clock else 0, "command": shlex.join(sys.argv)})
            return self.dir
        config = run_record(self.cfg, self.spec, self.graph, self.dir)
        config["comm_plan"] = comm_plan(self.cfg, self.spec, self.graph).describe()
        write_whole(self.dir / "config.json", json.dumps(config, indent=1))  # no half a run on a full disk
        return self.dir

    def place(self) -> None:
        """Where each process listens: ``env_bind`` (what the envserver binds), ``env_endpoint`` (what
        agents connect to) and each node's "address"; here free ports on 127.0.0.1, and no "bind" (a
        resumed SLURM run's binds name ports of another allocation). compose/cluster/slurm_job.py
        places on the allocation's hosts instead."""
        ports = free_ports(self.spec.n_agents + 1)
        self.env_bind = self.env_endpoint = f"tcp://127.0.0.1:{ports[0]}"
        for node in self.graph.nodes:
            self.graph.nodes[node]["address"] = f"tcp://127.0.0.1:{ports[1 + node]}"
            self.graph.nodes[node].pop("bind", None)

    def _commands(self) -> dict[str, list[str]]:
        args = process_args(self.cfg, self.spec.n_agents, self.env_bind, self.env_endpoint, self.topology_file,
                            self.dir)
        return {name: [sys.executable, "-m", "envserver.main" if name == "envserver" else "agentd.main", *a]
                for name, a in args.items()}

    def spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        """Start one child process, its output in ``name``/log.txt (the SLURM launcher wraps it in srun)."""
        return spawn(cmd, self.dir / name / "log.txt")

    def start(self) -> None:
        commands = self._commands()

        def start_one(name: str) -> subprocess.Popen | ForkedProcess:
            if name != "envserver" and self.zygote is not None:
                try:
                    return self._forked(name, commands[name], self.dir / name / "log.txt")
                except ZygoteError as err:
                    self._without_zygote(str(err))
            return self.spawn(name, commands[name])
        self.supervisor = Supervisor(self.procs, start_one, RestartPolicy(self.cfg.restart, self.cfg.max_restarts),
                                     self.dir / "events.jsonl", files=self.child_files(self.dir))
        if self.cfg.zygote and self.forks_agents:  # it preloads while the envserver starts
            self.zygote, why = start_zygote(self.dir, [c for n, c in commands.items() if n != "envserver"], spawn)
            if self.zygote is None:
                self._without_zygote(why)
        for name in commands:
            self.supervisor.start(name)

    def _forked(self, name: str, cmd: list[str], log: Path) -> ForkedProcess:
        """``name`` forked from the zygote; the first call records the zygote's readiness."""
        first = self.zygote.ready is None
        proc = self.zygote.fork(name, cmd, log)
        if first:
            self.supervisor.event("zygote_ready", "zygote", pid=self.zygote.ready["pid"],
                                  preload_s=round(self.zygote.ready["preload_s"], 3))
        return proc

    def _without_zygote(self, why: str) -> None:
        """From now on agents are spawned; say why once, on the console and in events.jsonl."""
        print(f"khop run: warning: agents start as separate Python processes: {why}", file=sys.stderr)
        self.supervisor.event("zygote_unavailable", "zygote", reason=why)
        self._close_zygote()

    def _close_zygote(self) -> None:
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None
            set_subreaper(False)  # agents forked so far stay this process's children

    def _served(self) -> bool:
        """The envserver is done for good: finished (exit 0) or dead and not coming back. With every
        agent down for good it is told to stop, since nobody is left to serve — after
        ENDING_GRACE_S if any of them finished (exit 0: it was told BYE), since the envserver then
        is ending by itself; a stop the launcher asked for is never answered by a restart."""
        sup = self.supervisor
        sup.check()
        if sup.failure is not None:  # a start-up failure or a resource run out: the whole run stops now
            return True
        env = self.procs["envserver"]
        agents = [n for n in self.procs if n != "envserver"]
        if env.poll() is None and all(self.procs[n].poll() is not None and not sup.pending(n) for n in agents):
            now = time.monotonic()
            self._agents_gone_at = self._agents_gone_at or now
            said_bye = any(self.procs[n].returncode == 0 for n in agents)
            if said_bye and now - self._agents_gone_at < ENDING_GRACE_S:
                return False  # they were told BYE: the envserver is ending by itself
            if not self._told_to_stop:
                print("khop run: every agent is down for good; stopping the envserver", file=sys.stderr)
                sup.stopping("envserver")
                env.send_signal(signal.SIGTERM)
                self._told_to_stop = True
            return False
        code = env.poll()
        return code is not None and not sup.pending("envserver") and (code == 0 or sup.down_for_good("envserver"))

    def terminate(self) -> None:
        """Ask every process still running to stop (SIGTERM), so agents write their last checkpoint."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    def stop(self, grace_s: float = 15.0) -> None:
        """terminate(), give everyone time to checkpoint, then SIGKILL."""
        self.terminate()
        end = time.monotonic() + grace_s
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._close_zygote()

    def watch(self) -> None:
        bar = ProgressBar(self.cfg.steps) if self.cfg.progress else None
        tail_state = TailState()
        recent: list[dict] = []
        status_file = self.dir / "envserver" / "status.json"
        while not self.interrupted and not self._served():
            time.sleep(0.5)
            if bar is None:
                continue
            new = tail_episodes(self.dir / "envserver" / "episodes.jsonl", tail_state)
            recent = (recent + new)[-50:]
            try:
                step = json.loads(status_file.read_text())["env_step"]
            except (OSError, ValueError, KeyError):
                step = 0
            ret = sum(e["episode_return"] for e in recent) / len(recent) if recent else None
            cost = sum(e["episode_cost"] for e in recent) / len(recent) if recent else None
            bar.update(step, ret, cost if self.spec.n_costs else None)
        if bar is not None:
            bar.close()
        # the envserver said BYE: agents write their last checkpoint and exit by themselves
        end = time.monotonic() + (0 if self.supervisor.failure else 60)
        while any(p.poll() is None for p in self.procs.values()) and time.monotonic() < end and not self.interrupted:
            time.sleep(0.2)
        self.supervisor.check(restarting=False)

    def run(self) -> int:
        """Run, report, and record the outcome in DIR/run_status.json (what `khop sweep` resumes by):
        state, exit code and, unless it finished, the reason in one line (compose/run/outcome.py)."""
        state, code = "failed", 1
        self.reason = "the launcher failed"  # what an unexpected exception out of here leaves recorded
        try:
            try:
                code = self._run()
            except Exception as err:
                reason = launcher_ran_out(self.dir, err, self.supervisor.failure if self.procs else None)
                if reason is None:
                    raise
                code, self.reason = 1, reason
            state = {0: "finished", 130: "interrupted"}.get(code, "failed")
            return code
        finally:
            if self._lock is not None:  # this launcher's run: record how it ended, then let go
                if (self.dir / "config.json").exists():
                    record_status(self.dir, state, code, self.reason)
                os.close(self._lock)

    def _run(self) -> int:
        self._take_lock()  # before anything in the directory changes
        self.prepare()
        hold_reserve(self.dir)
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def interrupt(signum: int, _frame: object) -> None:
            self.interrupted = True
        for sig in previous:
            signal.signal(sig, interrupt)
        try:
            if self.cfg.inprocess:
                run_inprocess(self.cfg, self.spec, self.graph, self.dir, should_stop=lambda: self.interrupted)
            else:
                self.start()
                self.watch()
        finally:
            release_reserve(self.dir)  # the room the last event rows and run_status.json need
            try:
                self.stop()
                if self.procs:
                    self.supervisor.check(restarting=False)
            finally:  # even when a full disk refused the last event rows
                if self.procs:
                    self.supervisor.close()
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        report(self.dir)
        failed = {n: p.returncode for n, p in self.procs.items() if p.returncode != 0}
        failure = self.supervisor.failure if self.procs else None
        if failure:
            self.reason = failure.line
            tell(self.dir, failure)
            return failure.exit_code
        if self.interrupted:
            self.reason = "interrupted"
            print(f"khop run: interrupted; partial report in {self.dir / 'report'}", file=sys.stderr)
            return 130
        if failed:
            self.reason = f"processes exited with errors {failed}"
            print(f"khop run: {self.reason}; see their log.txt under {self.dir}", file=sys.stderr)
            return 1
        return 0
