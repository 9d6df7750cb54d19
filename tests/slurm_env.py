"""A private one-node SLURM cluster for khop's SLURM test (and by hand).

    python tests/slurm_env.py prepare    # root: apt-get install slurm-wlm munge where missing (nothing starts)
    python tests/slurm_env.py up DIR     # munged + slurmctld + slurmd, everything under DIR; prints SLURM_CONF
    python tests/slurm_env.py down DIR   # stop them (scontrol shutdown, munged by its pid)

Recipe (shared/research/ecosystem.md §7, Debian 12's SLURM 22.05): munged with its own key, socket, pid
and log files; a generated slurm.conf with private state, spool, pid and log files and its own ports;
`SlurmdParameters=config_overrides` so the node may declare more CPUs than the machine has (a job of
N+1 one-CPU steps must fit on a 2-core test machine); proctrack/linuxproc and task/none, so no cgroup
is needed. Nothing under /etc is read or written: every client finds the cluster through SLURM_CONF
(exported by :meth:`Cluster.env`), and munge through the socket named in slurm.conf.

Anything that keeps a cluster from starting here (not root, the packages missing, a daemon that
exits) raises ClusterUnavailable with the reason, which the test turns into a skip.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "sinfo", "squeue", "scancel")
APT_PACKAGES = ["slurm-wlm", "munge"]  # Debian 12: SLURM 22.05
CPUS = 16  # declared, not real (config_overrides): room for 1 envserver + up to 15 one-CPU agent steps


class ClusterUnavailable(RuntimeError):
    """No cluster can be started here; the message says why."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(root: Path, host: str, ctld_port: int, slurmd_port: int) -> str:
    """The slurm.conf of a one-node cluster whose every file lives under ``root``."""
    return "\n".join([
        "ClusterName=khoptest",
        f"SlurmctldHost={host}(127.0.0.1)",
        "AuthType=auth/munge",
        f"AuthInfo=socket={root / 'munge.socket'}",
        "CredType=cred/munge",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        "MpiDefault=none",
        "KillWait=10",
        "InactiveLimit=0",
        "MinJobAge=300",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={CPUS} State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8",
        "",
    ])


@dataclass
class Cluster:
    root: Path
    conf: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=self.env())

    def idle(self) -> bool:
        res = self.run("sinfo", "-h", "-o", "%t")
        return res.returncode == 0 and res.stdout.split()[:1] in (["idle"], ["mix"], ["alloc"])


def _daemon(cmd: list[str], log: Path, env: dict[str, str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [f"exit {res.returncode}"]
        raise ClusterUnavailable(f"{Path(cmd[0]).name} did not start: {tail[0]} (log {log})")


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p) is None and not os.access(f"/usr/sbin/{p}", os.X_OK)]


def prepare() -> None:
    """apt-get the packages where a program is missing (root only); Debian starts no daemon without
    an init system, and this cluster never uses the packages' /etc files."""
    if not missing_programs():
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable(f"not root, cannot apt-get install {' '.join(APT_PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES]
    for cmd in (["apt-get", "update", "-q"], install):
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        if res.returncode != 0:
            raise ClusterUnavailable(f"{' '.join(cmd[:2])} failed: {(res.stderr or res.stdout).strip()[-300:]}")


def up(root: Path, timeout_s: float = 60) -> Cluster:
    """Start munged, slurmctld and slurmd with everything under ``root``; wait until the node is idle."""
    if os.geteuid() != 0:
        raise ClusterUnavailable("a private SLURM cluster needs root (munged and slurmd run as root here)")
    missing = missing_programs()
    if missing:
        raise ClusterUnavailable(f"{missing[0]} is not installed (apt-get install slurm-wlm munge)")
    root = root.resolve()
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # munged refuses a socket directory writable by others
    key = root / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, host, _free_port(), _free_port()))
    cluster = Cluster(root, conf)
    env = cluster.env()
    _daemon(["munged", "--key-file", str(key), "--socket", str(root / "munge.socket"), "--pid-file",
             str(root / "munged.pid"), "--log-file", str(root / "munged.log"), "--seed-file", str(root / "munged.seed"),
             "--force"], root / "munged.log", env)
    try:
        _daemon(["slurmctld", "-f", str(conf)], root / "slurmctld.log", env)
        _daemon(["slurmd", "-f", str(conf)], root / "slurmd.log", env)
        end = time.monotonic() + timeout_s
        while not cluster.idle():
            if time.monotonic() > end:
                state = cluster.run("sinfo", "-h", "-o", "%t %E").stdout.strip() or "no answer from slurmctld"
                raise ClusterUnavailable(f"the node did not become idle in {timeout_s:g} s: {state}")
            time.sleep(0.5)
    except BaseException:
        down(cluster)
        raise
    return cluster


def down(cluster: Cluster, timeout_s: float = 60) -> None:
    """Cancel every job (their steps' processes end with them), then stop slurmd, slurmctld and
    munged, each by the pid its pid file held before the shutdown, so nothing else is touched."""
    pids = {}
    for name in ("slurmd", "slurmctld", "munged"):
        try:
            pids[name] = int((cluster.root / f"{name}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    if "slurmctld" in pids and _alive(pids["slurmctld"]):
        end = time.monotonic() + timeout_s
        while (jobs := cluster.run("squeue", "-h", "-o", "%i").stdout.split()) and time.monotonic() < end:
            cluster.run("scancel", *jobs)  # running, pending or completing: gone within KillWait
            time.sleep(1)
        cluster.run("scontrol", "shutdown")
    for name, pid in pids.items():
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            end = time.monotonic() + wait
            while time.monotonic() < end and _alive(pid):
                time.sleep(0.1)
            if not _alive(pid):
                break


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours is gone too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("prepare", "up", "down"))
    p.add_argument("dir", type=Path, nargs="?", default=Path("slurm-test"))
    a = p.parse_args(argv)
    if a.action == "prepare":
        try:
            prepare()
        except ClusterUnavailable as err:
            print(f"slurm_env: {err}", file=sys.stderr)
            return 1
        return 0
    cluster = Cluster(a.dir.resolve(), a.dir.resolve() / "slurm.conf")
    if a.action == "down":
        down(cluster)
        return 0
    try:
        cluster = up(a.dir)
    except ClusterUnavailable as err:
        print(f"slurm_env: {err}", file=sys.stderr)
        return 1
    print(f"export SLURM_CONF={cluster.conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
