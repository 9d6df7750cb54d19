"""`khop run` on one machine: where the envserver and the N agentd processes are spawned, watched
and stopped.

Each child is a real OS process talking TCP on 127.0.0.1. Children get PR_SET_PDEATHSIG so that
even a SIGKILLed launcher leaves no orphans, and Ctrl-C / SIGTERM stop them in order (SIGTERM,
grace period, SIGKILL) so agents can write their final checkpoint.
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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePath

from envserver.atomic import write_whole
from topologies import TopologyError, diameter, resolve_topology, save_topology

from .children import ChildFiles
from .inprocess import run_inprocess
from .outcome import hold_reserve, launcher_ran_out, record_status, release_reserve, report, tell
from .progress import ProgressBar, TailState, tail_episodes
from .supervisor import RestartPolicy, Supervisor

PR_SET_PDEATHSIG = 1


class LaunchError(ValueError):
    """Bad run configuration; the message is the one line the user sees."""


@dataclass
class RunConfig:
    task: str = "coop-game"
    algo: str = "dpo"
    topology: str = ""  # empty: the task's default graph
    kappa: int | None = None  # None: the graph's diameter for centralised references, else 1 (validate())
    steps: int = 48_000
    envs: int = 16
    seed: int = 0
    run_dir: Path | None = None
    overrides: list[str] = field(default_factory=list)
    deadline_s: float = 30.0
    checkpoint_every: int = 10
    progress: bool = True
    inprocess: bool = False  # all agents in this process, no sockets: the reference for speed and correctness
    # communication layer (README "Communication layer and budgets")
    relay: str = "sync"  # sync: κ rounds per env step; async: one exchange per step, d-hop state d−1 steps old
    comm_budget: float | None = None  # wire bytes per agent per env step; None = unlimited
    budget_max_period: int = 4  # longest "send every k steps" before the budget policy drops hops
    link_delay_ms: float = 0.0  # emulated link defaults; topology edge attributes override per edge
    link_jitter_ms: float = 0.0
    link_loss: float = 0.0
    link_bandwidth_bps: float = 0.0  # 0 = unlimited
    round_timeout_ms: float | None = None  # relay round slot; None = derived
    actor_mask: bool = False  # actor input = own obs + direct neighbours' presence bits
    actor_input: str | None = None  # local | khop; None: the algorithm's default (validate() records the effective one)
    kappa_rule: str = ""  # where the effective κ came from (set by validate(), recorded in config.json)
    restart: bool = False  # supervise: restart any process that dies (compose/supervisor.py)
    max_restarts: int = 5  # per process, with --restart
    heartbeat_timeout_s: float = 5.0  # a neighbour silent this long in an exchange is down (agentd/liveness.py)
    curve: Path | None = None  # CurveZMQ key directory (`khop keys`); None: plaintext sockets


def code_version() -> str:
    """The commit the code came from (with '+dirty' for local edits), so every run can be redone."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rev, dirty = "", ""
    from importlib.metadata import PackageNotFoundError, version
    try:
        pkg = version("khop")
    except PackageNotFoundError:
        pkg = "unknown"
    return f"khop {pkg}" + (f" git {rev}{'+dirty' if dirty else ''}" if rev else "")


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


def validate(cfg: RunConfig):
    """Check everything a user can get wrong before any process starts; return (spec, graph).
    Also settles κ when the user gave none (``cfg.kappa`` is None): see :func:`default_kappa`."""
    from agentd.learner import algo_names, learner_config
    from agentd.learner.defaults import defaults_for
    from agentd.main import actor_override, parse_overrides
    from envserver.tasks import task_spec

    try:
        spec = task_spec(cfg.task)
    except ValueError as err:
        raise LaunchError(str(err)) from None
    if cfg.algo not in algo_names():
        raise LaunchError(f"unknown algo {cfg.algo!r}; choose one of: {', '.join(algo_names())}")
    if cfg.kappa is not None and cfg.kappa < 0:
        raise LaunchError(f"--kappa must be >= 0, got {cfg.kappa}")
    if cfg.steps < 1 or cfg.envs < 1:
        raise LaunchError(f"--steps and --envs must be >= 1, got {cfg.steps} and {cfg.envs}")
    if cfg.max_restarts < 0:
        raise LaunchError(f"--max-restarts must be >= 0, got {cfg.max_restarts}")
    if cfg.restart and cfg.inprocess:
        raise LaunchError("--restart supervises agent processes; --inprocess runs none")
    try:
        graph = resolve_topology(cfg.topology or spec.topology, spec.n_agents)
    except TopologyError as err:
        raise LaunchError(str(err)) from None
    if cfg.kappa is None:
        cfg.kappa, cfg.kappa_rule = default_kappa(cfg.algo, graph)
    elif not cfg.kappa_rule:
        cfg.kappa_rule = "--kappa"
    try:
        learner = learner_config(cfg.algo, {**defaults_for(cfg.task), **parse_overrides(cfg.overrides),
                                            **actor_override(cfg.actor_input)})
    except ValueError as err:
        raise LaunchError(str(err)) from None
    if learner.actor_input == "khop" and cfg.actor_mask:
        raise LaunchError("--actor-mask adds neighbour presence bits to a local actor; a κ-hop actor (actor_input=khop) "
                          "already sees its κ-ball's presence bits: pass --actor-input local with --actor-mask")
    cfg.actor_input = learner.actor_input
    validate_comm(cfg, spec, graph)
    if cfg.curve is not None:
        from .keys import check_keys

        if cfg.inprocess:
            raise LaunchError("--curve secures sockets; --inprocess has none")
        try:
            check_keys(cfg.curve, spec.n_agents)
        except ValueError as err:
            raise LaunchError(str(err)) from None
    return spec, graph


def default_kappa(algo: str, graph) -> tuple[int, str]:
    """κ when the user passes none: the graph's diameter for the centralised references (their
    critics then see every agent, as MAPPO-L / HAPPO / MACPO assume), 1 for everything else."""
    from agentd.learner import ALGOS

    if ALGOS[algo].centralised:
        return diameter(graph), "graph diameter (centralised reference)"
    return 1, "default"


def link_defaults(cfg: RunConfig):
    from agentd.links import LinkSpec

    return LinkSpec(cfg.link_delay_ms, cfg.link_jitter_ms, cfg.link_loss, cfg.link_bandwidth_bps)


def comm_plan(cfg: RunConfig, spec, graph):
    """The relay plan every agent of this run will derive (agentd/relay.py: RelayPlan)."""
    from agentd.relay import RelayPlan

    return RelayPlan(graph, cfg.kappa, [a.obs_dim for a in spec.agents], cfg.envs, cfg.relay, cfg.comm_budget,
                     cfg.budget_max_period)


def validate_comm(cfg: RunConfig, spec, graph) -> None:
    """The communication options and the topology's edge attributes (delay_ms, jitter_ms, loss,
    bandwidth_bps), checked before any process starts."""
    from agentd.links import link_specs

    if cfg.relay not in ("sync", "async"):
        raise LaunchError(f"--relay must be sync or async, got {cfg.relay!r}")
    if cfg.comm_budget is not None and not (0 < cfg.comm_budget < float("inf")):
        raise LaunchError(f"--comm-budget must be a positive number of bytes, got {cfg.comm_budget}")
    if cfg.budget_max_period < 1:
        raise LaunchError(f"--budget-max-period must be >= 1, got {cfg.budget_max_period}")
    if cfg.round_timeout_ms is not None and not cfg.round_timeout_ms > 0:
        raise LaunchError(f"--round-timeout-ms must be > 0, got {cfg.round_timeout_ms}")
    if not 0 < cfg.heartbeat_timeout_s < float("inf"):
        raise LaunchError(f"--heartbeat-timeout must be > 0 seconds, got {cfg.heartbeat_timeout_s}")
    try:
        default = link_defaults(cfg).validate("--link-* options")
        specs = [s for u in graph for s in link_specs(graph, u, default).values()]
    except ValueError as err:
        raise LaunchError(str(err)) from None
    if cfg.inprocess and any(s.timed for s in specs):
        raise LaunchError("link delay, jitter and bandwidth need real time and real sockets; "
                          "run without --inprocess (loss alone is emulated in process)")
    if cfg.round_timeout_ms is not None and not cfg.inprocess:
        from agentd.relay import deadline_round_timeout_s

        limit_ms = 1000 * deadline_round_timeout_s(comm_plan(cfg, spec, graph), cfg.deadline_s)
        if cfg.round_timeout_ms > limit_ms:
            raise LaunchError(f"--round-timeout-ms {cfg.round_timeout_ms:g} exceeds {limit_ms:g} ms: the relay rounds "
                              f"of a step may take at most half the --deadline of {cfg.deadline_s:g} s, or an agent "
                              "waiting for a dead neighbour misses the deadline and its neighbours follow")


def run_record(cfg: RunConfig, spec, graph, run_dir: PurePath) -> dict:
    """config.json: everything needed to rerun (shared by `khop run` and `khop compose`)."""
    return {**{k: (str(v) if isinstance(v, PurePath) else v) for k, v in asdict(cfg).items()},
            "topology": cfg.topology or spec.topology, "run_dir": str(run_dir),
            "n_agents": spec.n_agents, "graph_diameter": diameter(graph),
            "cost_names": list(spec.cost_names), "cost_limits": list(spec.cost_limits),
            "episode_length": spec.episode_length, "code_version": code_version(),
            "command": shlex.join(sys.argv), "python": sys.version.split()[0]}


def process_args(cfg: RunConfig, n_agents: int, env_bind: str, env_connect: str, topology_file: PurePath,
                 run_dir: PurePath) -> dict[str, list[str]]:
    """Each process's arguments after its program name: "envserver" and "agent-<i>". The one place they
    are built, for local processes (`khop run`) and for containers (`khop compose`)."""
    if cfg.kappa is None:  # the default κ depends on the algorithm and the graph: validate() decides it
        raise LaunchError("κ is not decided yet: call validate(cfg) before building process arguments")
    args = {"envserver": ["--task", cfg.task, "--bind", env_bind, "--envs", str(cfg.envs), "--seed", str(cfg.seed),
                          "--steps", str(cfg.steps), "--deadline", str(cfg.deadline_s),
                          "--run-dir", str(run_dir / "envserver")]}
    curve = ["--curve", str(cfg.curve)] if cfg.curve is not None else []
    args["envserver"] += curve
    for i in range(n_agents):
        args[f"agent-{i}"] = ["--id", str(i), "--env", env_connect, "--topology", str(topology_file),
                              "--kappa", str(cfg.kappa), "--algo", cfg.algo, "--seed", str(cfg.seed),
                              "--run-dir", str(run_dir), "--checkpoint-every", str(cfg.checkpoint_every),
                              *comm_args(cfg), *curve, *[arg for kv in cfg.overrides for arg in ("--set", kv)]]
    return args


def comm_args(cfg: RunConfig) -> list[str]:
    """agentd's communication options for this run (only those that differ from agentd's defaults)."""
    out = ["--relay", cfg.relay]
    if cfg.comm_budget is not None:
        out += ["--comm-budget", repr(float(cfg.comm_budget))]
    for flag, value, default in (("--budget-max-period", cfg.budget_max_period, 4),
                                 ("--link-delay-ms", cfg.link_delay_ms, 0.0),
                                 ("--link-jitter-ms", cfg.link_jitter_ms, 0.0),
                                 ("--link-loss", cfg.link_loss, 0.0),
                                 ("--link-bandwidth-bps", cfg.link_bandwidth_bps, 0.0),
                                 ("--round-timeout-ms", cfg.round_timeout_ms, None),
                                 ("--heartbeat-timeout", cfg.heartbeat_timeout_s, 5.0)):
        if value != default:
            out += [flag, repr(value)]
    if cfg.actor_mask:
        out.append("--actor-mask")
    if cfg.actor_input is not None:
        out += ["--actor-input", cfg.actor_input]
    return out


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the thread that started it ends (even by SIGKILL)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(cmd: list[str], log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent, env=env)


def resume_config(run_dir: Path, progress: bool = True, restart: bool = False, max_restarts: int = 5) -> RunConfig:
    """The RunConfig of the unfinished distributed run in ``run_dir`` (its config.json), for
    `khop run --resume`; only the supervision and display options are the caller's. The topology
    is the run's own topology.json (the graph it trained on, whatever file or generator made it)."""
    path = Path(run_dir) / "config.json"
    try:
        recorded = json.loads(path.read_text())
    except FileNotFoundError:
        raise LaunchError(f"{run_dir} holds no run to resume (no config.json)") from None
    except ValueError:
        raise LaunchError(f"{path} is not valid JSON; cannot resume") from None
    try:
        state = json.loads((Path(run_dir) / "run_status.json").read_text()).get("state")
    except (OSError, ValueError):
        state = None  # killed before it could say: exactly what --resume is for
    if state == "finished":
        raise LaunchError(f"{run_dir} is finished; nothing to resume")
    if recorded.get("inprocess"):
        raise LaunchError(f"{run_dir} ran --inprocess; --resume restarts agent processes from their checkpoints "
                          "and the envserver from its clock, which an in-process run does not keep")
    names = {f.name for f in fields(RunConfig)}
    cfg = RunConfig(**{k: v for k, v in recorded.items() if k in names})
    cfg.run_dir, cfg.topology = Path(run_dir), str(Path(run_dir) / "topology.json")
    cfg.curve = Path(cfg.curve) if cfg.curve else None
    cfg.progress, cfg.restart, cfg.max_restarts = progress, restart, max_restarts
    return cfg


class Launch:
    """One local run: prepare the directory, spawn, watch, stop, report.

    ``resume``: start the processes of an unfinished run (``resume_config``) again in its own
    directory: the agents load their newest checkpoints and the envserver continues from
    ``envserver/clock``, exactly as after a supervised restart ("Fault tolerance"), so the step
    budget is honoured; config.json is kept and ``events.jsonl`` gets a ``run_resumed`` row.
    Either way :meth:`run` holds an exclusive lock (flock) on the run directory while it runs, so a
    run directory never has two launchers."""

    def __init__(self, cfg: RunConfig, resume: bool = False) -> None:
        self.cfg = cfg
        self.resume = resume
        self.spec, self.graph = validate(cfg)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.dir = cfg.run_dir or Path("runs") / f"{cfg.task}-{cfg.algo}-k{cfg.kappa}-s{cfg.seed}-{stamp}"
        if (self.dir / "config.json").exists() and not resume:
            raise LaunchError(f"run directory {self.dir} already holds a run; choose another --run-dir "
                              "(or continue it with --resume)")
        self.procs: dict[str, subprocess.Popen] = {}
        self.interrupted = False
        self._told_to_stop = False
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
        ports = free_ports(self.spec.n_agents + 1)
        self.env_endpoint = f"tcp://127.0.0.1:{ports[0]}"
        for node in self.graph.nodes:
            self.graph.nodes[node]["address"] = f"tcp://127.0.0.1:{ports[1 + node]}"
        self.topology_file = self.dir / "topology.json"
        save_topology(self.graph, self.topology_file)  # fresh ports: the old ones may be taken by now
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

    def _commands(self) -> dict[str, list[str]]:
        args = process_args(self.cfg, self.spec.n_agents, self.env_endpoint, self.env_endpoint, self.topology_file,
                            self.dir)
        return {name: [sys.executable, "-m", "envserver.main" if name == "envserver" else "agentd.main", *a]
                for name, a in args.items()}

    def start(self) -> None:
        commands = self._commands()

        def start_one(name: str) -> subprocess.Popen:
            return spawn(commands[name], self.dir / name / "log.txt")
        self.supervisor = Supervisor(self.procs, start_one, RestartPolicy(self.cfg.restart, self.cfg.max_restarts),
                                     self.dir / "events.jsonl", files=ChildFiles(self.dir))
        for name in commands:
            self.supervisor.start(name)

    def _served(self) -> bool:
        """The envserver is done for good: finished (exit 0) or dead and not coming back. With every
        agent down for good it is told to stop, since nobody is left to serve."""
        sup = self.supervisor
        sup.check()
        if sup.failure is not None:  # a start-up failure or a resource run out: the whole run stops now
            return True
        env = self.procs["envserver"]
        agents = [n for n in self.procs if n != "envserver"]
        if env.poll() is None and all(self.procs[n].poll() is not None and not sup.pending(n) for n in agents):
            if not self._told_to_stop:
                print("khop run: every agent is down for good; stopping the envserver", file=sys.stderr)
                env.send_signal(signal.SIGTERM)
                self._told_to_stop = True
            return False
        code = env.poll()
        return code is not None and not sup.pending("envserver") and (code == 0 or sup.down_for_good("envserver"))

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM everyone still running, give them time to checkpoint, then SIGKILL."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = time.monotonic() + grace_s
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

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
        state, exit code and, unless it finished, the reason in one line (compose/outcome.py)."""
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
