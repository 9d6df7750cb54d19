"""`khop compose`: one Compose file per run — a service per agent plus the envserver — that runs on
one machine with `docker compose up` and, unchanged, on a Swarm with `docker stack deploy`.

What it writes, for `-o DIR/RUN.yaml`:

    DIR/RUN.yaml             the services (one image; command lines built by launcher.process_args,
                             exactly as `khop run` builds them)
    DIR/RUN.topology.json    the graph; node attribute "address" = tcp://agent-<i>:7000, what the
                             neighbours connect to (a service name), and "bind" = tcp://*:7000, what
                             the agent binds inside its container
    DIR/RUN.config.json      the run record (`khop run`'s config.json)

Both JSON files reach the containers as Compose `configs` (bind mounts on one machine, Swarm configs
on a Swarm) under /khop; the envserver's container copies them into the run directory when it
starts (compose/containers/entrypoint.sh), so the run directory looks like a `khop run` one and `khop report`
works on it. The run directory is /runs/<run> on a named volume (NFS-backed with --nfs), or on a
host directory with --bind; --node pins every service to one Swarm node.

The file keeps to what both loaders accept — the Compose Specification (`docker compose`) and the
version-3 schema of `docker stack deploy`: no top-level `name`, short `depends_on`, file-based
configs, restart policy both as `restart` (Compose) and `deploy.restart_policy` (Swarm). Every
service has `deploy.endpoint_mode: dnsrr`: on a Swarm a service name then resolves to its task's
own address, not to a virtual IP, which needs the kernel's IPVS (absent on many hosts: connections
to a VIP time out or fail with "No route to host"); khop publishes no ports, so the routing mesh is
not missed.
With `--curve DIR` the keys travel as secrets (compose/containers/secrets.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path, PurePosixPath

from topologies import save_topology

from envserver.options import copy_options, from_namespace

from ..run.config import LaunchError, RunConfig, process_args, run_record, validate
from .secrets import KEY_FILES, SECRETS, USER_ID, key_secrets, unreadable_in_containers

ENV_PORT = 5555
AGENT_PORT = 7000
RUNS = PurePosixPath("/runs")  # the volume's mount point in every container
RECORD = PurePosixPath("/khop")  # where the configs (topology, run record) are mounted
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SWARM_NAME_MAX = 64  # Swarm refuses config and secret names longer than this (swarmkit's name check)
# `khop run` options that mean nothing for a compose file; every other one is taken over as it is
# restart flags: Docker restarts containers; zygote: one container per agent, nothing to fork from
NOT_FOR_COMPOSE = ("help", "run_dir", "progress", "inprocess", "restart", "max_restarts", "resume",
                   "tensorboard", "zygote")  # containers: `khop tensorboard RUN_DIR --follow` beside the volume


def render(cfg: RunConfig, name: str, image: str = "khop", volume: str | None = None, nfs: str | None = None,
           out: Path | None = None, bind: str | None = None, node: str | None = None) -> dict[str, Path]:
    """Write the compose file and its two JSON companions; return their paths by kind.

    `cfg` is validated exactly as for `khop run` (LaunchError on a bad value). /runs is the named
    volume `volume` (default khop-<name>); `nfs` ("server:/export") makes it an NFS volume, so that
    every Swarm node writes one shared run directory; `bind` mounts a host directory there instead.
    `node` pins every service to that Swarm node (one local volume or bind mount is then the run's
    whole directory). `cfg.curve` ships the keys as secrets."""
    if not NAME_RE.match(name):
        raise LaunchError(f"run name {name!r}: use lower-case letters, digits, '-' and '_' (at most 63, "
                          "starting with a letter or digit)")
    if nfs is not None and not re.match(r"^[^:\s]+:/\S*$", nfs):
        raise LaunchError(f"--nfs expects SERVER:/EXPORT, got {nfs!r}")
    if bind is not None and (nfs is not None or volume is not None):
        raise LaunchError("--bind mounts a host directory at /runs; it cannot go with --volume or --nfs")
    if bind is not None and not PurePosixPath(bind).is_absolute():
        raise LaunchError(f"--bind {bind}: the host directory must be an absolute path (Swarm resolves no other)")
    if node is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", node):
        raise LaunchError(f"--node {node!r}: expected a Swarm node's host name")
    spec, graph = validate(cfg)
    out = Path(out) if out is not None else Path("compose") / f"{name}.yaml"
    if out.suffix not in (".yaml", ".yml"):
        raise LaunchError(f"-o {out}: the compose file must end in .yaml or .yml")
    files = {"compose": out, "topology": out.with_name(f"{out.stem}.topology.json"),
             "config": out.with_name(f"{out.stem}.config.json")}
    run_dir = RUNS / name
    volume = volume or f"khop-{name}"

    for i in graph.nodes:
        graph.nodes[i]["address"] = f"tcp://agent-{i}:{AGENT_PORT}"
        graph.nodes[i]["bind"] = f"tcp://*:{AGENT_PORT}"
    # inside the containers the keys are the secrets mounted under /run/secrets
    inside = dataclasses.replace(cfg, curve=Path(SECRETS)) if cfg.curve is not None else cfg
    args = process_args(inside, spec.n_agents, f"tcp://*:{ENV_PORT}", f"tcp://envserver:{ENV_PORT}",
                        RECORD / "topology.json", run_dir)
    secrets = key_secrets(cfg.curve, graph, spec.n_agents, name, out.parent) if cfg.curve is not None else None
    doc = compose_document(args, name=name, image=image, volume=volume, nfs=nfs, files=files,
                           n_agents=spec.n_agents, bind=bind, node=node, secrets=secrets)
    too_long = [o["name"] for kind in ("configs", "secrets") for o in doc.get(kind, {}).values()
                if len(o["name"]) > SWARM_NAME_MAX]
    if too_long:  # `docker compose` does not mind; a Swarm would refuse the stack with an obscure error
        cfg.warnings.append(f"run name {name!r} is too long for a Swarm: its object name {too_long[0]!r} has "
                            f"{len(too_long[0])} characters (at most {SWARM_NAME_MAX}); `docker stack deploy` "
                            "needs a shorter --name")
    record = {**run_record(cfg, spec, graph, run_dir), "launcher": "compose", "image": image,
              "volume": bind or volume, "compose_file": files["compose"].name}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_topology(graph, files["topology"])
    files["config"].write_text(json.dumps(record, indent=1) + "\n")
    for kind in ("topology", "config"):  # bind-mounted on one machine: the containers' user must read them
        files[kind].chmod(0o644)
    header = _header(cfg, spec, name, files, f"host directory {bind}" if bind else f"volume {volume}")
    files["compose"].write_text(header + to_yaml(doc))
    return files


def compose_document(args: dict[str, list[str]], *, name: str, image: str, volume: str, nfs: str | None,
                     files: dict[str, Path], n_agents: int, bind: str | None = None, node: str | None = None,
                     secrets: tuple[dict, dict[str, list]] | None = None) -> dict:
    """The Compose file as a dict: services envserver and agent-0..N-1 on one internal network."""
    run_dir = RUNS / name
    runs = ({"type": "bind", "source": bind, "target": str(RUNS)} if bind is not None
            else {"type": "volume", "source": "runs", "target": str(RUNS)})

    def service(role: str, program: str, argv: list[str], port: int, restart: bool) -> dict:
        svc = {
            "image": image,
            "command": [program, *argv],
            "init": True,  # docker-init reaps and forwards SIGTERM, so `down` does not wait the full grace
            "environment": {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
            "labels": {"org.khop.run": name, "org.khop.role": role},
            "networks": ["khop"],
            "volumes": [dict(runs)],
            "configs": [{"source": "topology", "target": str(RECORD / "topology.json")}],
            # healthy = the process has bound its socket (an agent binds its inbox once the envserver
            # has welcomed it), checked with a TCP connect from inside the container
            "healthcheck": {"test": ["CMD", "python", "-c",
                                     f"import socket; socket.create_connection(('127.0.0.1', {port}), 3).close()"],
                            "interval": "10s", "timeout": "5s", "retries": 3, "start_period": "60s"},
            "stop_grace_period": "45s",  # time for an agent's last checkpoint (a relay round may take 30 s)
            "restart": "on-failure" if restart else "no",
            # Swarm: a service name resolves to its task's address (no virtual IP, which needs IPVS)
            "deploy": {"replicas": 1, "endpoint_mode": "dnsrr", "restart_policy": (
                {"condition": "on-failure", "delay": "2s", "window": "60s"} if restart else {"condition": "none"}),
                "labels": {"org.khop.run": name, "org.khop.role": role}},
        }
        if node is not None:  # one node: its local volume (or bind mount) holds the whole run directory
            svc["deploy"]["placement"] = {"constraints": [f"node.hostname == {node}"]}
        return svc

    env = service("envserver", "envserver", args["envserver"], ENV_PORT, restart=False)
    # the envserver copies the run record into the run directory on start (compose/containers/entrypoint.sh)
    env["environment"]["KHOP_RUN_DIR"] = str(run_dir)
    env["configs"].append({"source": "run-config", "target": str(RECORD / "config.json")})
    services = {"envserver": env}
    for i in range(n_agents):
        svc = service("agent", "agentd", args[f"agent-{i}"], AGENT_PORT, restart=True)
        svc["labels"]["org.khop.agent"] = str(i)
        svc["deploy"]["labels"]["org.khop.agent"] = str(i)
        svc["depends_on"] = ["envserver"]
        services[f"agent-{i}"] = svc
    if secrets is not None:
        for service, mounts in secrets[1].items():
            services[service]["secrets"] = mounts

    doc = {
        "x-khop": {"run": name, "run_dir": str(run_dir), "volume": bind or volume, "agents": n_agents,
                   "envserver": f"tcp://envserver:{ENV_PORT}", "agent_port": AGENT_PORT},
        "services": services,
        # internal: the run needs no outside world, and nothing outside can reach it
        "networks": {"khop": {"internal": True}},
    }
    if bind is None:
        vol: dict = {"name": volume}
        if nfs is not None:
            server, export = nfs.split(":", 1)
            vol.update({"driver": "local", "driver_opts": {"type": "nfs", "o": f"addr={server},rw,nfsvers=4",
                                                           "device": f":{export}"}})
        doc["volumes"] = {"runs": vol}
    # names carry the run so that a Swarm (where configs and secrets are immutable) can hold many runs
    doc["configs"] = {"topology": {"name": f"khop-{name}-topology", "file": f"./{files['topology'].name}"},
                      "run-config": {"name": f"khop-{name}-config", "file": f"./{files['config'].name}"}}
    if secrets is not None:
        doc["secrets"] = secrets[0]
    return doc


def _header(cfg: RunConfig, spec, name: str, files: dict[str, Path], store: str) -> str:
    f = files["compose"].name
    lines = [
        f"# khop run {name}: {cfg.task}, {cfg.algo}, kappa {cfg.kappa}, {spec.n_agents} agents, {cfg.steps} env steps",
        f"# written by: {shlex.join(['khop', *sys.argv[1:]]) if sys.argv[1:2] == ['compose'] else 'khop compose'}",
        f"# with {files['topology'].name} and {files['config'].name} beside it (mounted as configs).",
        *([f"# CurveZMQ keys from {cfg.curve} as secrets under {SECRETS} (each service: its own secret key)."]
          if cfg.curve is not None else []),
        "#",
        "# one machine:  docker build -f compose/containers/Dockerfile -t khop .   (from the khop checkout)",
        f"#               docker compose -f {f} -p {name} up -d",
        f"#               docker compose -f {f} -p {name} logs -f envserver",
        f"# a Swarm:      docker stack deploy -c {f} {name}   (image pushed where every node can pull it)",
        f"#               docker service logs -f {name}_envserver",
        f"# run directory: {RUNS / name} on {store}",
        "",
    ]
    return "\n".join(lines) + "\n"


# --- a small YAML writer (block style; every scalar JSON-compatible), so no YAML library is needed ---
_PLAIN = re.compile(r"^(?:[A-Za-z/]|--?[A-Za-z])[A-Za-z0-9_./-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    if v is None:
        return "null"
    s = str(v)
    return s if _PLAIN.match(s) and s.lower() not in _YAML_WORDS else json.dumps(s)


def _flow(items: list[str], column: int, width: int = 110) -> str:
    """[a, b, …] wrapped before `width`, continuation lines aligned after the bracket."""
    lines, line = [], ""
    for item in items:
        if line and column + 1 + len(line) + len(item) + 2 > width:
            lines.append(line + ",")
            line = ""
        line = f"{line}, {item}" if line else item
    lines.append(line)
    return "[" + ("\n" + " " * (column + 1)).join(lines) + "]"


def to_yaml(value, indent: int = 0) -> str:
    pad = " " * indent
    out = []
    if isinstance(value, dict):
        for key, v in value.items():
            k = _scalar(key)
            if isinstance(v, dict) and v:
                out.append(f"{pad}{k}:\n{to_yaml(v, indent + 2)}")
            elif isinstance(v, list) and v and all(not isinstance(x, (dict, list)) for x in v):
                out.append(f"{pad}{k}: {_flow([_scalar(x) for x in v], indent + len(k) + 2)}\n")
            elif isinstance(v, list) and v:
                out.append(f"{pad}{k}:\n{to_yaml(v, indent + 2)}")
            else:
                out.append(f"{pad}{k}: {_scalar(v) if not isinstance(v, (dict, list)) else json.dumps(v)}\n")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 2)
                out.append(f"{pad}- {body[indent + 2:]}")
            elif isinstance(item, (dict, list)):
                out.append(f"{pad}- {json.dumps(item)}\n")
            else:
                out.append(f"{pad}- {_scalar(item)}\n")
    else:
        out.append(f"{pad}{_scalar(value)}\n")
    return "".join(out)


# --- the CLI -----------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `khop compose`, with `khop run`'s own options where they apply (same names, defaults, help)."""
    p = subparsers.add_parser("compose", help="write a Compose file: one container per agent plus the envserver "
                                              "(docker compose up, or docker stack deploy on a Swarm)")
    copy_options(subparsers.choices["run"], p, NOT_FOR_COMPOSE)
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="the compose file to write (default compose/<name>.yaml); RUN.topology.json and "
                        "RUN.config.json are written beside it")
    p.add_argument("--name", default=None,
                   help="run name: run directory /runs/<name> and Swarm stack name (default "
                        "<task>-<algo>-k<κ>-s<seed>-<time>)")
    p.add_argument("--image", default="khop", help="the image built from compose/containers/Dockerfile (default khop)")
    p.add_argument("--volume", default=None, help="named volume for /runs (default khop-<name>)")
    p.add_argument("--nfs", default=None, metavar="SERVER:/EXPORT",
                   help="back the volume by NFS so every Swarm node shares one run directory")
    p.add_argument("--bind", default=None, metavar="HOST_DIR",
                   help="mount this absolute host directory at /runs instead of a volume (writable by uid 1000; "
                        "on a Swarm with --node)")
    p.add_argument("--node", default=None, metavar="HOSTNAME",
                   help="Swarm: place every service on this node, so that its local volume or --bind directory "
                        "holds the whole run")
    return p


def cmd_compose(args: argparse.Namespace) -> int:
    cfg = from_namespace(RunConfig, args, progress=False)
    validate(cfg)  # settles a default κ before the name uses it
    name = args.name or f"{cfg.task}-{cfg.algo}-k{cfg.kappa}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    files = render(cfg, name, image=args.image, volume=args.volume, nfs=args.nfs, out=args.output, bind=args.bind,
                   node=args.node)
    for line in cfg.warnings:  # validate()'s, and render()'s about the Swarm
        print(f"khop compose: warning: {line}", file=sys.stderr)
    if cfg.curve is not None:
        unreadable = unreadable_in_containers(cfg.curve, sorted(f for f in os.listdir(cfg.curve)
                                                           if f.endswith(KEY_FILES)))
        if unreadable:
            print(f"khop compose: warning: one host only: `docker compose` bind-mounts secrets with their host owner "
                  f"and mode, so the containers' user (uid {USER_ID}) cannot read {unreadable[0]} and "
                  f"{len(unreadable) - 1} more; run `chown {USER_ID} {cfg.curve}/*` before `docker compose up` "
                  "(a Swarm sets owner and mode itself)", file=sys.stderr)
    f = files["compose"]
    print(f"wrote {f} (+ {files['topology'].name}, {files['config'].name})\n"
          f"one machine: docker compose -f {f} -p {name} up -d\n"
          f"a Swarm:     docker stack deploy -c {f} {name}")
    return 0
