"""Any khop task as a PettingZoo ``ParallelEnv``, so users' own loops and tools can drive it:

    from envserver.pettingzoo import parallel_env
    env = parallel_env("mpe-line-control", seed=0)
    obs, infos = env.reset()
    obs, rewards, terminations, truncations, infos = env.step({a: 0 for a in env.agents})
    env.close()

Why through a real envserver and not by importing the task: the env then behaves exactly as the
agents see it — the same wire protocol, validation, auto-reset and fallback actions. The adapter
starts ``envserver --envs 1`` as a subprocess on a free 127.0.0.1 port (or, with
``endpoint="tcp://host:port"``, joins a server that is already waiting for its agents) and speaks
the khop protocol from this one process with one DEALER per agent: each says HELLO, gets
WELCOME, then per step receives STEP and answers ACT.

Decisions (also in the README's "Particle tasks and PettingZoo" section):

* agents are ``agent_0 … agent_{N−1}`` (khop ids); observation spaces are float32 Boxes of the
  task's obs_dim (unbounded); action spaces are ``Discrete(n)`` or ``Box(act_low, act_high)``;
* every agent's reward is the team reward; ``infos[a]["costs"]`` maps each cost name to agent a's
  cost and ``infos[a]["cost"]`` is that cost (a float; a list when the task has several);
* all agents end together: an episode ends when the task says terminated or truncated, and then
  ``env.agents`` is empty. The envserver auto-resets and never sends an episode's final
  observation, so the observations returned with the last step are the *next* episode's first;
  the reset() that follows returns them without stepping;
* reset() at an episode boundary (or before the first step) is free. reset() in the middle of an
  episode, or reset(seed=s) on a server that was not started with seed s or has stepped, starts a
  fresh envserver (about a second). A mid-episode reset() without a seed uses the previous seed + 1.
  Joined servers (``endpoint=``) cannot be restarted: there a mid-episode reset() raises and a
  seed is ignored with a warning;
* a missing agent's action is the task's fallback (zeros), as for an agent that missed a deadline;
* a task with action masks (SMAX) puts each agent's mask in ``infos[a]["action_mask"]`` (int8, 1 =
  available, PettingZoo's convention) at reset and after every step; an unavailable action is
  refused by the envserver, and its ERROR raises here;
* the spawned server runs 10^15 steps with a deadline of 10^9 s, so the user's loop may pause
  for as long as it likes; close() (also called at garbage collection and at exit) stops it,
  and the server also dies with its parent thread (PR_SET_PDEATHSIG), so none is orphaned.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from gymnasium import spaces
from pettingzoo import ParallelEnv

from . import protocol as P
from .tasks.base import AgentSpec

SERVER_STEPS = 10**15  # env steps the spawned server may run: never the limit in practice
SERVER_DEADLINE_S = 1e9  # the user's loop, not a deadline, decides when the next ACT comes


def parallel_env(task: str, seed: int | None = None, **options: Any) -> KhopParallelEnv:
    """A PettingZoo ParallelEnv for khop ``task``; options: endpoint, run_dir, timeout_s."""
    return KhopParallelEnv(task, seed=seed, **options)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _release(proc: subprocess.Popen | None, ctx: zmq.Context, socks: list[zmq.Socket], tmp: str | None) -> None:
    """Close sockets, stop the spawned server (SIGTERM, then SIGKILL), remove its temp run dir."""
    for s in socks:
        s.close(linger=0)
    ctx.term()
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


class _Session:
    """One envserver (spawned or joined) and this process's N DEALERs into it."""

    def __init__(self, task: str, seed: int, endpoint: str | None, run_dir: Path | None, timeout_s: float) -> None:
        self.seed, self.timeout_s = seed, timeout_s
        self.proc: subprocess.Popen | None = None
        self.log: Path | None = None
        self.tmp = None if (endpoint or run_dir) else tempfile.mkdtemp(prefix="khop-pettingzoo-")
        if endpoint is None:
            endpoint = f"tcp://127.0.0.1:{_free_port()}"
            log_dir = Path(run_dir or self.tmp) / "envserver"
            log_dir.mkdir(parents=True, exist_ok=True)
            self.log = log_dir / "log.txt"
            cmd = [sys.executable, "-m", "envserver.main", "--task", task, "--bind", endpoint, "--envs", "1",
                   "--seed", str(seed), "--steps", str(SERVER_STEPS), "--deadline", str(SERVER_DEADLINE_S),
                   "--join-timeout", str(timeout_s), "--run-dir", str(log_dir), "--fresh"]
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYGAME_HIDE_SUPPORT_PROMPT": "1"}
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             preexec_fn=_die_with_parent, env=env)
        self.ctx = zmq.Context()
        self.socks: list[zmq.Socket] = []
        self._finalizer = weakref.finalize(self, _release, self.proc, self.ctx, self.socks, self.tmp)
        self.endpoint = endpoint
        self.fresh = True  # no ACT sent yet
        try:
            self.welcome = self._join()
        except BaseException:
            self.close()
            raise
        self.seed = self.welcome["seed"]

    # --- plumbing --------------------------------------------------------------------------
    def _dealer(self) -> zmq.Socket:
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.MAXMSGSIZE, P.DEFAULT_MAX_MESSAGE_BYTES)
        s.connect(self.endpoint)
        self.socks.append(s)
        return s

    def _hello(self, agent: int) -> None:
        self._dealer().send_multipart(P.encode("HELLO", {"agent": agent, "version": P.PROTOCOL_VERSION,
                                                         "resume": False, "incarnation": os.getpid()}))

    def _server_gone(self) -> str | None:
        if self.proc is None or self.proc.poll() is None:
            return None
        lines = self.log.read_text(errors="replace").strip().splitlines() if self.log.exists() else []
        errors = [ln for ln in lines if "error" in ln.lower()]
        return (errors or lines or [f"exit status {self.proc.returncode}"])[-1]

    def _recv(self, want: set[int], what: str) -> dict[int, P.Message]:
        """One message of type ``what`` from each agent socket in ``want``; raise on ERROR, BYE, death."""
        got: dict[int, P.Message] = {}
        poller = zmq.Poller()
        for i in want:
            poller.register(self.socks[i], zmq.POLLIN)
        end = time.monotonic() + self.timeout_s
        while len(got) < len(want):
            ready = dict(poller.poll(200))
            for i in sorted(want - set(got)):
                if self.socks[i] not in ready:
                    continue
                msg = P.decode(self.socks[i].recv_multipart())
                if msg.type in ("ERROR", "BYE"):
                    raise RuntimeError(f"envserver at {self.endpoint} sent {msg.type}: {msg['reason']}")
                if msg.type == what:
                    got[i] = msg
            if not ready:
                gone = self._server_gone()
                if gone is not None:
                    raise RuntimeError(f"envserver exited: {gone}")
                if time.monotonic() > end:
                    raise TimeoutError(f"no {what} from envserver at {self.endpoint} within {self.timeout_s:g} s")
        return got

    def _join(self) -> P.Message:
        self._hello(0)
        welcome = self._recv({0}, "WELCOME")[0]
        if welcome["n_envs"] != 1:
            raise ValueError(f"envserver at {self.endpoint} steps {welcome['n_envs']} copies; "
                             "the PettingZoo adapter needs one (--envs 1)")
        for i in range(1, welcome["n_agents"]):
            self._hello(i)
        self._recv(set(range(1, welcome["n_agents"])), "WELCOME")
        return welcome

    # --- the protocol ----------------------------------------------------------------------
    def recv_steps(self) -> list[P.Message]:
        got = self._recv(set(range(len(self.socks))), "STEP")
        return [got[i] for i in range(len(self.socks))]

    def send_acts(self, t: int, rows: list[np.ndarray]) -> None:
        self.fresh = False
        for i, (sock, row) in enumerate(zip(self.socks, rows)):
            sock.send_multipart(P.encode("ACT", {"agent": i, "t": t}, {"action": row}))

    def close(self) -> None:
        self._finalizer()


class KhopParallelEnv(ParallelEnv):
    """The ParallelEnv view of one khop task (see the module docstring for the decisions)."""

    def __init__(self, task: str, seed: int | None = None, *, endpoint: str | None = None,
                 run_dir: str | Path | None = None, timeout_s: float = 60.0) -> None:
        self.task, self.endpoint, self.timeout_s = task, endpoint, timeout_s
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._base_seed = seed
        self._session: _Session | None = None
        if endpoint is None:
            from .tasks import task_spec

            spec = task_spec(task)  # a bad name fails here, in one line, before any process starts
            agents = list(spec.agents)
        else:
            self._session = _Session(task, -1, endpoint, None, timeout_s)
            agents = [AgentSpec(**a) for a in self._session.welcome["agents"]]
        self._specs = agents
        self.possible_agents = [f"agent_{i}" for i in range(len(agents))]
        self.agents: list[str] = []
        self.metadata = {"name": f"khop_{task}", "render_modes": [], "is_parallelizable": True}
        self.render_mode = None
        self._obs_spaces = {a: spaces.Box(-np.inf, np.inf, (s.obs_dim,), np.float32)
                            for a, s in zip(self.possible_agents, agents)}
        self._act_spaces = {a: (spaces.Discrete(s.n_actions) if s.act_kind == "discrete" else
                                spaces.Box(s.act_low, s.act_high, (s.act_dim,), np.float32))
                            for a, s in zip(self.possible_agents, agents)}
        self._t = 0
        self._pending: dict[str, np.ndarray] | None = None  # first observations of the next episode
        self._masks: dict[str, np.ndarray] = {}  # the latest STEP's action masks, for tasks that have them
        self._boundary = True  # no step taken in the current episode

    # --- spaces ----------------------------------------------------------------------------
    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_spaces[agent]

    # --- episodes --------------------------------------------------------------------------
    def _start(self, seed: int) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        for attempt in range(3):  # the free port may be taken between asking and binding
            try:
                self._session = _Session(self.task, seed, None, self.run_dir, self.timeout_s)
                break
            except RuntimeError as err:
                if "Address already in use" not in str(err) or attempt == 2:
                    raise
        assert self._session is not None
        self._take_step(self._session.recv_steps())

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        s = self._session
        if self.endpoint is not None:
            assert s is not None
            if seed is not None and seed != s.welcome["seed"]:
                warnings.warn(f"reset(seed={seed}) ignored: the joined envserver runs seed {s.welcome['seed']}")
            if not self._boundary:
                raise RuntimeError("reset() mid-episode is impossible on a joined envserver (endpoint=); "
                                   "step until the episode ends")
            if self._pending is None:
                self._take_step(s.recv_steps())
        elif seed is not None and (s is None or s.seed != seed or not s.fresh):
            self._start(seed)
        elif s is None:
            self._start(self._base_seed if self._base_seed is not None else int(np.random.SeedSequence().entropy % 2**31))
        elif not self._boundary:
            self._start((s.seed + 1) % 2**31)
        assert self._pending is not None
        self.agents = list(self.possible_agents)
        self._boundary = True
        return dict(self._pending), {a: self._mask_info(a) for a in self.agents}

    def _mask_info(self, agent: str) -> dict:
        return {"action_mask": self._masks[agent].copy()} if agent in self._masks else {}

    def _take_step(self, msgs: list[P.Message]) -> tuple[dict, float, list[np.ndarray], bool, bool]:
        self._t = msgs[0]["t"]
        obs = {a: np.array(m.arrays["obs"][0], dtype=np.float32) for a, m in zip(self.possible_agents, msgs)}
        self._pending = obs
        self._masks = {a: np.array(m.arrays["mask"][0], dtype=np.int8) for a, m in zip(self.possible_agents, msgs)
                       if "mask" in m.arrays}
        head = msgs[0].arrays
        costs = [np.array(m.arrays["cost"][0], dtype=np.float64) for m in msgs]
        return obs, float(head["reward"][0]), costs, bool(head["terminated"][0]), bool(head["truncated"][0])

    def _action_row(self, i: int, action: Any) -> np.ndarray:
        spec, name = self._specs[i], self.possible_agents[i]
        if spec.act_kind == "discrete":
            if action is None:
                return np.zeros(1, dtype=np.int64)
            a = np.asarray(action)
            if a.size != 1 or not np.issubdtype(a.dtype, np.integer) or not 0 <= int(a.reshape(())) < spec.n_actions:
                raise ValueError(f"action for {name} must be an int in 0..{spec.n_actions - 1}, got {action!r}")
            return np.array([int(a.reshape(()))], dtype=np.int64)
        if action is None:
            return np.zeros((1, spec.act_dim), dtype=np.float32)
        a = np.asarray(action, dtype=np.float32)
        if a.size != spec.act_dim or not np.isfinite(a).all():
            raise ValueError(f"action for {name} must be {spec.act_dim} finite floats, got {action!r}")
        return a.reshape(1, spec.act_dim)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if self._session is None or self._pending is None:
            raise RuntimeError("call reset() before step()")
        if not self.agents:
            raise RuntimeError("the episode is over: call reset()")
        rows = [self._action_row(i, actions.get(a)) for i, a in enumerate(self.possible_agents)]
        self._session.send_acts(self._t, rows)
        obs, reward, costs, term, trunc = self._take_step(self._session.recv_steps())
        names = [str(n) for n in self._session.welcome["cost_names"]]
        agents = list(self.agents)
        infos: dict[str, dict] = {a: {"costs": {}} for a in agents}
        if names:
            infos = {a: {"costs": {n: float(v) for n, v in zip(names, c)},
                         "cost": float(c[0]) if len(c) == 1 else [float(v) for v in c]}
                     for a, c in zip(agents, costs)}
        for a in agents:
            infos[a].update(self._mask_info(a))
        self._boundary = term or trunc
        if self._boundary:
            self.agents = []
        return (obs, dict.fromkeys(agents, reward), dict.fromkeys(agents, term), dict.fromkeys(agents, trunc),
                infos)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        self.agents = []

    @property
    def server_seed(self) -> int | None:
        """The seed of the envserver currently serving (None before the first reset)."""
        return self._session.seed if self._session is not None else None
