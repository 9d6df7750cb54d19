"""What a run is: its options declared once (:class:`RunConfig`), the one :func:`validate` that
checks them before any process starts, and the command line of every process of the run
(:func:`process_args`), built from the processes' own declarations (agentd.agent.AgentConfig,
envserver.server.ServerConfig) so that what the launcher writes is what the child parses.

`khop run`, `khop sweep` and `khop compose` all build a RunConfig; config.json records it flat (one
key per field) with the facts needed to redo the run.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePath

from agentd.comm import CommConfig, learner_overrides
from envserver.options import at_least, names, option, positive, to_argv
from envserver.tasks.physics_pool import physics_threads_option
from topologies import TopologyError, diameter, resolve_topology


class LaunchError(ValueError):
    """Bad run configuration; the message is the one line the user sees."""


@dataclass
class RunConfig(CommConfig):
    """`khop run`'s options (the communication ones are CommConfig's)."""
    task: str = option("coop-game", "task name (default coop-game; see `khop tasks`)")
    algo: str = option("dpo", "learner (default dpo; see `khop algos`)")
    topology: str = option("", "generator (ring, line, star, complete, grid[:RxC]), a shipped graph name, or a "
                               "node-link JSON/GraphML file; default: the task's graph")
    kappa: int | None = option(None, "hops of state each critic sees (default: the graph's diameter for the "
                                     "centralised references mappo-l, happo, macpo, mafocops; 1 otherwise)",
                               parse=int, check=at_least(0))
    steps: int = option(48_000, "env steps, summed over env copies", check=at_least(1))
    envs: int = option(16, "env copies stepped in lockstep", check=at_least(1))
    seed: int = option(0, "seed of the task and of every learner")
    run_dir: Path | None = option(None, "default: runs/<task>-<algo>-k<κ>-s<seed>-<time>", parse=Path)
    overrides: list[str] = option(default_factory=list, help="learner hyperparameter, repeatable (e.g. --set "
                                                             "rollout_len=64)", flag="--set", repeat=True,
                                  metavar="KEY=VALUE")
    deadline_s: float = option(30.0, "seconds the envserver waits for an ACT", flag="--deadline", check=positive)
    checkpoint_every: int = option(10, "updates between checkpoints", check=at_least(1))
    physics_threads: int = physics_threads_option()
    progress: bool = option(True, "no progress bar", flag="--no-progress", negate=True)
    inprocess: bool = option(False, "run every agent in this one process with no sockets (reference mode)")
    zygote: bool = option(True, "start every agent as a fresh Python process instead of forking it from one warm "
                                "parent that imported torch and the learner code once (compose/run/forkserver.py; "
                                "~16 MB private memory per agent forked, ~160 spawned)", flag="--no-zygote",
                          negate=True)
    restart: bool = option(False, "restart any agent or envserver process that dies (exponential backoff); agents "
                                  "resume from their newest checkpoint, the envserver from its step counter")
    max_restarts: int = option(5, "restarts per process with --restart (default 5)", metavar="N",
                               check=at_least(0))
    tensorboard: bool = option(False, "live TensorBoard event files in RUN_DIR/tensorboard (one per agent, one for the "
                                      "envserver)")
    curve: Path | None = option(None, "CurveZMQ on every socket with the keys in DIR (`khop keys`); only listed "
                                      "keys connect", parse=Path, metavar="DIR")
    kappa_rule: str = field(default="")  # where the effective κ came from (set by validate(), in config.json)
    warnings: list[str] = field(default_factory=list)  # what would make the run meaningless (validate(), config.json)


#: RunConfig's own options (the rest are the communication options)
RUN_OPTIONS = tuple(n for n in names(RunConfig) if n not in names(CommConfig))


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


def validate(cfg: RunConfig):
    """Check everything a user can get wrong before any process starts; return (spec, graph).
    Also settles κ when the user gave none (``cfg.kappa`` is None): see :func:`default_kappa`."""
    from agentd.learner import algo_names, learner_config
    from envserver.tasks import task_class

    try:
        cfg.validate()  # every option against its own range
        spec = task_class(cfg.task).spec
        task_class(cfg.task).check_installed()  # an optional extra's packages (smax: jax), named in one line
    except ValueError as err:
        raise LaunchError(str(err)) from None
    if cfg.algo not in algo_names():
        raise LaunchError(f"unknown algo {cfg.algo!r}; choose one of: {', '.join(algo_names())}")
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
        learner = learner_config(cfg.algo, learner_overrides(cfg.overrides, cfg.actor_input), task=cfg.task)
    except ValueError as err:
        raise LaunchError(str(err)) from None
    if learner.actor_input == "khop" and cfg.actor_mask:
        raise LaunchError("--actor-mask adds neighbour presence bits to a local actor; a κ-hop actor (actor_input=khop) "
                          "already sees its κ-ball's presence bits: pass --actor-input local with --actor-mask")
    cfg.actor_input = learner.actor_input
    _validate_links(cfg, spec, graph)
    cfg.warnings = start_warnings(cfg, spec, graph)
    if cfg.curve is not None:
        from .keys import check_keys

        if cfg.inprocess:
            raise LaunchError("--curve secures sockets; --inprocess has none")
        try:
            check_keys(cfg.curve, spec.n_agents)
        except ValueError as err:
            raise LaunchError(str(err)) from None
    return spec, graph


def _validate_links(cfg: RunConfig, spec, graph) -> None:
    """The topology's edge attributes (delay_ms, jitter_ms, loss, bandwidth_bps) and the relay slot
    against the envserver's deadline: the communication rules that need the graph."""
    from agentd.links import link_specs

    try:
        specs = [s for u in graph for s in link_specs(graph, u, cfg.link).values()]
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


def start_warnings(cfg: RunConfig, spec, graph) -> list[str]:
    """One line for each setting that runs but would make the run silently meaningless."""
    from agentd.learner import ALGOS

    out = []
    if ALGOS[cfg.algo].uses_costs and not spec.n_costs:
        out.append(f"{cfg.algo} is a cost-constrained learner but {cfg.task} has no cost: it trains as its "
                   "unconstrained base (λ/ν never move)")
    d = diameter(graph)
    if cfg.kappa > d:
        out.append(f"--kappa {cfg.kappa} exceeds the graph's diameter {d}: every κ-ball is already the whole graph, "
                   f"so κ = {d} sees the same")
    if cfg.comm_budget is not None and cfg.kappa > 0:
        plan = comm_plan(cfg, spec, graph)
        if plan.level.hops == 0:
            need = max(plan.costs("f2", 1).values()) / (cfg.envs * cfg.budget_max_period)
            out.append(f"--comm-budget {cfg.comm_budget:g} bytes is less than one relay message (float16 1-hop rows "
                       f"every {cfg.budget_max_period} steps need {need:.0f} bytes per env step): agents send no "
                       "state and every critic sees only its own rows")
    return out


def default_kappa(algo: str, graph) -> tuple[int, str]:
    """κ when the user passes none: the graph's diameter for the centralised references (their
    critics then see every agent, as MAPPO-L / HAPPO / MACPO assume), 1 for everything else."""
    from agentd.learner import ALGOS

    if ALGOS[algo].centralised:
        return diameter(graph), "graph diameter (centralised reference)"
    return 1, "default"


def comm_plan(cfg: RunConfig, spec, graph):
    """The relay plan every agent of this run will derive (agentd/relay.py: RelayPlan)."""
    from agentd.relay import RelayPlan

    return RelayPlan(graph, cfg.kappa, [a.obs_dim for a in spec.agents], cfg.envs, cfg.relay, cfg.comm_budget,
                     cfg.budget_max_period)


def run_record(cfg: RunConfig, spec, graph, run_dir: PurePath) -> dict:
    """config.json: everything needed to rerun (shared by `khop run` and `khop compose`)."""
    return {**{k: (str(v) if isinstance(v, PurePath) else v) for k, v in asdict(cfg).items()},
            "topology": cfg.topology or spec.topology, "run_dir": str(run_dir),
            "n_agents": spec.n_agents, "graph_diameter": diameter(graph),
            "cost_names": list(spec.cost_names), "cost_limits": list(spec.cost_limits),
            "episode_length": spec.episode_length, "code_version": code_version(),
            "command": shlex.join(sys.argv), "python": sys.version.split()[0]}


def recorded_config(recorded: dict) -> RunConfig:
    """The RunConfig of a config.json (keys it does not know, and facts like n_agents, ignored)."""
    known = {f.name for f in fields(RunConfig)}
    cfg = RunConfig(**{k: v for k, v in recorded.items() if k in known})
    cfg.curve = Path(cfg.curve) if cfg.curve else None
    cfg.run_dir = Path(cfg.run_dir) if cfg.run_dir else None
    return cfg


def process_args(cfg: RunConfig, n_agents: int, env_bind: str, env_connect: str, topology_file: PurePath,
                 run_dir: PurePath) -> dict[str, list[str]]:
    """Each process's arguments after its program name: "envserver" and "agent-<i>". The one place they
    are built, for local processes (`khop run`) and for containers (`khop compose`): each is the
    process's own config (ServerConfig, AgentConfig) written as the arguments it parses back."""
    from agentd.agent import AgentConfig
    from envserver.server import ServerConfig

    if cfg.kappa is None:  # the default κ depends on the algorithm and the graph: validate() decides it
        raise LaunchError("κ is not decided yet: call validate(cfg) before building process arguments")
    server = ServerConfig(task=cfg.task, bind=env_bind, envs=cfg.envs, seed=cfg.seed, max_env_steps=cfg.steps,
                          deadline_s=cfg.deadline_s, run_dir=Path(run_dir / "envserver"), curve=cfg.curve,
                          physics_threads=cfg.physics_threads)
    args = {"envserver": to_argv(server)}
    comm = {name: getattr(cfg, name) for name in names(CommConfig)}
    for i in range(n_agents):
        agent = AgentConfig(**comm, agent=i, env=env_connect, topology=Path(topology_file), kappa=cfg.kappa,
                            algo=cfg.algo, seed=cfg.seed, run_dir=Path(run_dir), overrides=list(cfg.overrides),
                            checkpoint_every=cfg.checkpoint_every, curve=cfg.curve)
        args[f"agent-{i}"] = to_argv(agent)
    return args


def resume_config(run_dir: Path, progress: bool = True, restart: bool = False, max_restarts: int = 5,
                  tensorboard: bool = False, zygote: bool = True) -> RunConfig:
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
    cfg = recorded_config(recorded)
    cfg.run_dir, cfg.topology = Path(run_dir), str(Path(run_dir) / "topology.json")
    cfg.progress, cfg.restart, cfg.max_restarts, cfg.tensorboard = progress, restart, max_restarts, tensorboard
    cfg.zygote = zygote
    return cfg
