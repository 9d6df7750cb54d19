"""`khop keys DIR --agents N`: CurveZMQ keypairs for one envserver and N agents, and the list of
keys allowed to connect (envserver/curve.py says who admits whom).

Files are created with mode 0600 in a 0700 directory, and an existing key is never overwritten:
a rerun with a directory that already holds keys is an error, so a run's keys cannot be replaced
under it by accident. Authorising a key is adding its line to ``authorized_keys``; revoking one is
removing it (processes read the list when they start).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import zmq
import zmq.auth

from envserver.curve import AUTHORIZED, SERVER_NAME, agent_name, read_authorized


def make_keys(keys_dir: Path, n_agents: int) -> list[Path]:
    """Write the keypairs and ``authorized_keys``; return the files written."""
    if n_agents < 1:
        raise ValueError(f"--agents must be >= 1, got {n_agents}")
    if not zmq.has("curve"):
        raise ValueError("this libzmq was built without CURVE support")
    names = [SERVER_NAME] + [agent_name(i) for i in range(n_agents)]
    if keys_dir.exists() and any(keys_dir.iterdir()):
        raise ValueError(f"{keys_dir} is not empty; choose a new directory (existing keys are never overwritten)")
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    old_umask = os.umask(0o077)  # the secret file must never exist with wider permissions, even briefly
    try:
        written = []
        lines = ["# name  z85 public key: the keys allowed to connect (agents only)"]
        for name in names:
            public, secret = zmq.auth.create_certificates(keys_dir, name)
            for path in (Path(public), Path(secret)):
                os.chmod(path, 0o600)
                written.append(path)
            if name != SERVER_NAME:
                lines.append(f"{name} {zmq.auth.load_certificate(public)[0].decode()}")
        auth = keys_dir / AUTHORIZED
        auth.write_text("\n".join(lines) + "\n")
        os.chmod(auth, 0o600)
        written.append(auth)
    finally:
        os.umask(old_umask)
    return written


def check_keys(keys_dir: Path, n_agents: int) -> None:
    """Every file a run of ``n_agents`` needs is there and the list is readable (before anything starts)."""
    if not keys_dir.is_dir():
        raise ValueError(f"--curve {keys_dir}: no such directory (make one with `khop keys {keys_dir} "
                         f"--agents {n_agents}`)")
    needed = [f"{SERVER_NAME}.key", f"{SERVER_NAME}.key_secret", AUTHORIZED]
    needed += [f"{agent_name(i)}.{ext}" for i in range(n_agents) for ext in ("key", "key_secret")]
    missing = [f for f in needed if not (keys_dir / f).exists()]
    if missing:
        raise ValueError(f"--curve {keys_dir}: missing {missing[0]}" + (f" and {len(missing) - 1} more"
                                                                         if len(missing) > 1 else ""))
    read_authorized(keys_dir / AUTHORIZED)


def register(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser("keys", help="make CurveZMQ keypairs for the envserver and N agents (for --curve)")
    k.add_argument("dir", type=Path, help="new directory for the key files")
    k.add_argument("--agents", type=int, required=True, help="number of agents (one keypair each)")


def cmd_keys(args: argparse.Namespace) -> int:
    try:
        written = make_keys(args.dir, args.agents)
    except (ValueError, OSError) as err:
        print(f"khop keys: error: {err}", file=sys.stderr)
        return 2
    print(f"{len(written)} files in {args.dir} (mode 0600); use `khop run --curve {args.dir}`")
    return 0
