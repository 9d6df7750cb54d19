"""`khop compose --curve DIR`: the CurveZMQ keys of `khop keys DIR` shipped to the containers as
Compose/Swarm `secrets`, so that no key is ever in the image, the environment or a command line.

Each service gets only what envserver/curve.py reads for it, under /run/secrets (the `--curve`
directory its process is given):

* envserver: its own ``envserver.key_secret`` and ``authorized_keys``;
* agent-i: its own ``agent-<i>.key_secret``, the public ``envserver.key`` (the server it connects
  to), its neighbours' public ``agent-<j>.key`` (the inboxes it connects to) and
  ``authorized_keys`` (its inbox admits the neighbours listed there).

So a container holds one secret key, its own. On a Swarm the secrets are encrypted in the Raft log,
sent only to the nodes that run a task using them and mounted on a tmpfs, owned by the image's
user with mode 0400 (`uid`/`gid`/`mode`); one-host `docker compose` bind-mounts the files as they
are on the host and ignores those three keys (it says so), so there the key files must be readable
by uid 1000 (see docs/containers.md).
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from topologies import neighbours

from envserver.curve import AUTHORIZED, SERVER_NAME, agent_name

SECRETS = PurePosixPath("/run/secrets")  # where Docker mounts a service's secrets (the --curve DIR inside)
USER_ID = "1000"  # the image's user `khop` (compose/containers/Dockerfile: useradd --uid 1000)
MODE = 0o400  # readable by that user only
KEY_FILES = (".key", ".key_secret", AUTHORIZED)  # the endings of what `khop keys` writes


def needed_files(graph, n_agents: int) -> dict[str, list[str]]:
    """Each service's key files: {"envserver": [...], "agent-<i>": [...]} (envserver/curve.py's reads)."""
    files = {"envserver": [f"{SERVER_NAME}.key_secret", AUTHORIZED]}
    for i in range(n_agents):
        files[agent_name(i)] = ([f"{agent_name(i)}.key_secret", f"{SERVER_NAME}.key"]
                                + [f"{agent_name(j)}.key" for j in neighbours(graph, i)] + [AUTHORIZED])
    return files


def secret_name(run: str, filename: str) -> str:
    """The Swarm object's name: secrets are cluster-wide and immutable, so each run has its own."""
    return f"khop-{run}-{filename}"


def key_secrets(keys_dir: Path, graph, n_agents: int, run: str, compose_dir: Path) -> tuple[dict, dict[str, list]]:
    """(the file's top-level `secrets:`, each service's `secrets:` list). Paths are relative to the
    compose file's directory, as Compose and `docker stack deploy` resolve them."""
    per_service = needed_files(graph, n_agents)
    used = sorted({f for files in per_service.values() for f in files})
    where = PurePosixPath(os.path.relpath(Path(keys_dir).resolve(), Path(compose_dir).resolve()))
    top = {}
    for f in used:
        file = str(where / f)
        top[f] = {"name": secret_name(run, f), "file": file if file.startswith("../") else f"./{file}"}
    mounts = {service: [{"source": f, "target": f, "uid": USER_ID, "gid": USER_ID, "mode": MODE} for f in files]
              for service, files in per_service.items()}
    return top, mounts


def unreadable_in_containers(keys_dir: Path, files: list[str]) -> list[str]:
    """The key files the image's user could not read through one-host Compose's bind mounts (which keep
    the host's owner and mode); a Swarm copies secrets and sets uid/gid/mode, so this is one host only."""
    out = []
    for f in files:
        st = (Path(keys_dir) / f).stat()
        if not (st.st_mode & 0o004 or (st.st_uid == int(USER_ID) and st.st_mode & 0o400)
                or (st.st_gid == int(USER_ID) and st.st_mode & 0o040)):
            out.append(f)
    return out
