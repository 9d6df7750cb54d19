"""One measured `khop run`: launched by the real launcher (compose/run/launcher.py), watched by a
sampler thread that records the envserver's progress and the agent processes' memory.

Why a sampler instead of the run's own start/end times: the envserver's ``started_at`` is its first
STEP, but agents say HELLO *before* they build their learner and neighbour links, so the first
steps of a distributed run wait for N torch start-ups. The steady rate is therefore taken between
two status.json snapshots, the first written after every agent's ``learner_config.json`` exists
(the last thing an agent does before its first step). The in-process mode builds its learners
before ``started_at``, so its whole-run rate already excludes start-up.

A run either stops at ``cfg.steps`` or, with ``seconds``, after that many seconds of steady
stepping (the launcher's own interrupt path: SIGTERM, agents checkpoint and exit).
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from compose.run.inprocess import run_inprocess
from compose.run.launcher import Launch
from compose.run.config import RunConfig

#: above any lockstep rate measured on this machine (khop or the lean loop): a run capped at
#: seconds × this many locksteps outlasts a window timed by seconds
MAX_LOCKSTEPS_PER_S = 4000


def load_average() -> float:
    """The 1-minute load average, recorded next to every number (the machine is shared)."""
    return os.getloadavg()[0]


def proc_memory_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of a live process in MiB, from /proc/PID/status; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (KeyError, ValueError, IndexError):
        return None


def proc_private_mb(pid: int) -> tuple[float, float] | None:
    """(PSS, USS) in MiB from /proc/PID/smaps_rollup: RSS counts torch's shared library pages in
    every process, these say what one more agent process really costs the machine."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kb = {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()[1:] if line.endswith("kB")}
    try:
        return kb["Pss"] / 1024, (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024
    except KeyError:
        return None


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process (/proc/PID/stat fields 14 and 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclasses.dataclass
class Sampler:
    """Polls status.json and the agents' /proc entries while a distributed run is going."""

    launch: Launch
    seconds: float | None = None  # stop after this much steady stepping (None: run to cfg.steps)
    samples: list[dict] = dataclasses.field(default_factory=list)
    ready_at: float | None = None
    rss_mb: dict[str, float] = dataclasses.field(default_factory=dict)  # largest VmRSS seen per agent
    hwm_mb: dict[str, float] = dataclasses.field(default_factory=dict)  # last VmHWM seen per agent
    uss_mb: dict[str, float] = dataclasses.field(default_factory=dict)  # largest USS seen per agent
    pss_mb: dict[str, float] = dataclasses.field(default_factory=dict)  # largest PSS seen per agent

    def __post_init__(self) -> None:
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _ready(self) -> bool:
        n = self.launch.spec.n_agents
        return all((self.launch.dir / f"agent-{i}" / "learner_config.json").exists() for i in range(n))

    def _loop(self) -> None:
        status_file = self.launch.dir / "envserver" / "status.json"
        last_mem = last_private = 0.0
        while not self.done.is_set():
            now = time.time()
            if self.ready_at is None and self._ready():
                self.ready_at = now
            s = read_json(status_file)
            if s and s.get("started_at") and (not self.samples or s["time"] != self.samples[-1]["time"]):
                cpu = [proc_cpu_s(p.pid) for p in list(self.launch.procs.values())]
                s["cpu_s"] = sum(c for c in cpu if c is not None) if None not in cpu else None
                self.samples.append(s)
            if now - last_mem > 0.25:
                last_mem = now
                for name, p in list(self.launch.procs.items()):
                    mem = proc_memory_mb(p.pid) if name.startswith("agent-") else None
                    if mem:
                        self.rss_mb[name] = max(self.rss_mb.get(name, 0.0), mem[0])
                        self.hwm_mb[name] = mem[1]
            if now - last_private > 1.0:  # smaps_rollup walks every mapping: read it less often
                last_private = now
                for name, p in list(self.launch.procs.items()):
                    priv = proc_private_mb(p.pid) if name.startswith("agent-") else None
                    if priv:
                        self.pss_mb[name] = max(self.pss_mb.get(name, 0.0), priv[0])
                        self.uss_mb[name] = max(self.uss_mb.get(name, 0.0), priv[1])
            if self.seconds is not None and len(self.steady()) >= 2:
                first, last = self.steady()[0], self.steady()[-1]
                if last["time"] - first["time"] >= self.seconds:
                    self.launch.interrupted = True  # the launcher's Ctrl-C path: BYE, checkpoint, exit
            time.sleep(0.05)

    def steady(self) -> list[dict]:
        """Snapshots taken after every agent was ready."""
        if self.ready_at is None:
            return []
        return [s for s in self.samples if s["time"] >= self.ready_at]


def rate(samples: list[dict]) -> float | None:
    if len(samples) < 2 or samples[-1]["time"] <= samples[0]["time"]:
        return None
    return (samples[-1]["env_step"] - samples[0]["env_step"]) / (samples[-1]["time"] - samples[0]["time"])


def cpu_us_per_step(samples: list[dict]) -> float | None:
    """CPU time of all the run's processes per env step: unlike the rate, it barely moves with
    the load other users put on the shared cores."""
    samples = [s for s in samples if s.get("cpu_s") is not None]  # None: a process had exited (the run's end)
    if len(samples) < 2:
        return None
    steps = samples[-1]["env_step"] - samples[0]["env_step"]
    return 1e6 * (samples[-1]["cpu_s"] - samples[0]["cpu_s"]) / steps if steps > 0 else None


def run_distributed(cfg: RunConfig, seconds: float | None = None) -> dict[str, Any]:
    """Launch, sample, stop — no report (plots are not what is being timed)."""
    launch = Launch(dataclasses.replace(cfg, progress=False))
    launch.prepare()
    sampler = Sampler(launch, seconds)
    load = load_average()
    t0 = time.time()
    try:
        launch.start()
        sampler.thread.start()
        launch.watch()
    finally:
        sampler.done.set()
        if sampler.thread.is_alive():
            sampler.thread.join()
        launch.stop()
    final = read_json(launch.dir / "envserver" / "status.json") or {}
    steady = sampler.steady()
    window = steady
    # a run that reached cfg.steps ends at its final snapshot; an interrupted one's final
    # snapshot includes the stopping, so its window ends at the last snapshot before
    if not launch.interrupted and final.get("done") and (not window or final["time"] > window[-1]["time"]):
        window = window + [final]
    codes = {name: p.returncode for name, p in launch.procs.items()}
    mem = lambda values: max(values, default=None)  # noqa: E731
    return {"mode": "distributed", "steps_per_s": rate(window),
            "cpu_us_per_step": cpu_us_per_step(steady),  # (an exited process's CPU is unreadable)
            "window_s": window[-1]["time"] - window[0]["time"] if len(window) >= 2 else 0.0,
            "env_steps": final.get("env_step", 0),
            "startup_s": (sampler.ready_at - t0) if sampler.ready_at else None, "wall_s": time.time() - t0,
            "rss_mb_max": mem(sampler.rss_mb.values()), "hwm_mb_max": mem(sampler.hwm_mb.values()),
            "rss_mb_mean": (sum(sampler.rss_mb.values()) / len(sampler.rss_mb)) if sampler.rss_mb else None,
            "pss_mb_max": mem(sampler.pss_mb.values()), "uss_mb_max": mem(sampler.uss_mb.values()),
            "load_1m": load, "failed": {n: c for n, c in codes.items() if c not in (0, None)},
            "run_dir": str(launch.dir)}


def run_in_process(cfg: RunConfig, seconds: float | None = None) -> dict[str, Any]:
    """The in-process reference through the same launcher preparation and `run_inprocess`."""
    launch = Launch(dataclasses.replace(cfg, progress=False, inprocess=True))
    launch.prepare()
    load = load_average()
    t0 = time.time()
    first_call: list[float] = []  # (wall, CPU) when the first step begins

    def should_stop() -> bool:  # first called just before the first step, after the learners exist
        if not first_call:
            first_call.extend((time.time(), time.process_time()))
        return seconds is not None and time.time() - first_call[0] >= seconds

    run_inprocess(launch.cfg, launch.spec, launch.graph, launch.dir, should_stop=should_stop)
    cpu = time.process_time() - first_call[1]
    s = read_json(launch.dir / "envserver" / "status.json") or {}
    elapsed = s.get("time", 0) - s.get("started_at", 0)
    steps = s.get("env_step", 0)
    return {"mode": "inprocess", "steps_per_s": steps / elapsed if elapsed > 0 else None,
            "cpu_us_per_step": 1e6 * cpu / steps if steps else None,
            "window_s": elapsed, "env_steps": s.get("env_step", 0), "wall_s": time.time() - t0, "load_1m": load,
            "run_dir": str(launch.dir)}
