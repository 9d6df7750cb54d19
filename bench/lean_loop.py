"""The lean loop: the least a lockstep of khop's shape must do, written with bare pyzmq, so that
khop's acting rate can be read against a floor measured on the same machine in the same minute.

One server process (a ZeroMQ ROUTER) and N agent processes on a ring. Per lockstep the server
sends every agent its STEP (E rows of its observation, float32), each agent runs κ exchange rounds
with its ring neighbours and sends its ACT (E rows of its action); the server waits for all ACTs.
The exchange forwards what a κ-hop relay on a ring must carry: round r sends each neighbour the
rows of the origin r − 1 hops the other way (round 1: its own), and only when the receiver is owed
them — so every origin of the κ-ball arrives exactly once, the message count of khop's relay plan
(agentd/relay.py) on the same ring, and nothing else travels (no header beyond a round number).

Four levels (``--level``):

* ``msgs`` — messages only: the server sends fixed buffers of the STEP's shape, the agents answer
  with zeros;
* ``compute`` — plus the work any implementation must do besides messages: the server steps E
  copies of the task's own MuJoCo robot at the task's frame skip (on as many threads as khop's
  envserver uses by default for E copies), writing the ACTs into ``ctrl``
  and copying state columns into each agent's observation rows; every agent runs khop's acting
  network (the DPO defaults: a ReLU MLP of ``LearnerConfig.hidden`` × ``hidden_layers`` on its own
  observation, one thread, as agentd sets torch) at batch E and samples a Gaussian action;
* ``learner`` — the ``compute`` level with the agent acting through the real learner
  (:class:`Acting`: ``act`` + ``observe`` of DPO, its normalisers and rollout buffer, on the critic
  input assembled as the relay assembles it) instead of the bare network, and the lean loop's bare
  frames still: the compute khop's own agents do, with no protocol. Against khop *in-process*
  (the same learners, no sockets) it is the floor of a distributed/in-process ratio;
* ``parts`` — plus what khop's guarantees add per message, built from khop's own components and
  nothing else (:class:`Parts`): every message is khop's frame set, encoded and validated from the
  wire by envserver/protocol.py (STEP with its reward, costs and flags; STATE with its header; ACT
  checked for shape and finiteness). The distance from here to khop is khop's orchestration: links,
  relay bookkeeping, liveness, counters, the envserver's step accounting.

    python -m bench.lean_loop safe-halfcheetah-6x1 1 8 --seconds 5 --level compute

prints one JSON line: locksteps/s, env steps/s (a lockstep of E copies counts E), and the CPU of
every process per env step. ``run_lean`` runs it as a child process (a fresh process that forks its
agents before any ZeroMQ context exists), which is how bench/floor.py calls it.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from agentd.learner.config import LearnerConfig
from envserver.tasks import task_spec
from envserver.tasks.physics_pool import PhysicsPool, resolve_threads

from .measure import MAX_LOCKSTEPS_PER_S, load_average, proc_cpu_s

WARMUP = 100  # untimed locksteps first: connections made, torch's and MuJoCo's first calls done
TIMEOUT_MS = 30_000  # a process that died fails the measurement instead of hanging it
ROOT = Path(__file__).resolve().parents[1]


def ring_plan(n: int, kappa: int) -> list[tuple[int, int, int, int]]:
    """(round, sender, receiver, origin) of every message of one exchange on a ring of n.

    Direction d = ±1: in round r the sender passes to its neighbour at +d the rows of the origin
    r − 1 hops away at −d. The receiver is owed them when that origin is r hops from it, i.e.
    2r < n; at 2r = n the origin is r hops away both ways, and only the +1 direction carries it
    (one relay per origin, as in khop's plan). A ring of 2 is one edge: one message per round 1.
    """
    if n < 2 or kappa < 0:
        raise ValueError(f"a ring needs n >= 2 and kappa >= 0, got n={n}, kappa={kappa}")
    plan = []
    for r in range(1, kappa + 1):
        for d in (1, -1):
            if 2 * r < n or (2 * r == n and d == 1):
                plan += [(r, i, (i + d) % n, (i - d * (r - 1)) % n) for i in range(n)]
    return plan


def _recv(sock: zmq.Socket, what: str) -> list[bytes]:
    if not sock.poll(TIMEOUT_MS):
        raise RuntimeError(f"lean loop: no {what} in {TIMEOUT_MS / 1000:.0f} s (a process died?)")
    return sock.recv_multipart()


def make_actor(obs_dim: int, act_dim: int) -> Any:
    """khop's DPO acting network at its defaults, built the way agentd runs torch (one thread)."""
    import torch

    torch.set_num_threads(1)
    cfg = LearnerConfig()
    sizes = [obs_dim] + [cfg.hidden] * cfg.hidden_layers
    layers: list[Any] = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], act_dim))
    log_std = torch.full((act_dim,), cfg.init_log_std)

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            mean = net(torch.from_numpy(obs))
            return (mean + log_std.exp() * torch.randn_like(mean)).numpy()
    return act


class Acting:
    """The ``learner`` level's agent: the real learner (DPO at its defaults) acting on the critic
    input the relay would assemble from the same rows."""

    def __init__(self, i: int, task: str, kappa: int, envs: int, locksteps: int) -> None:
        from agentd.learner import make_learner
        from agentd.relay import assemble_critic_input

        spec = task_spec(task)
        self.assemble, self.i, self.E = assemble_critic_input, i, envs
        n = spec.n_agents
        self.dims = {o: spec.agents[o].obs_dim for o in range(n) if min((o - i) % n, (i - o) % n) <= kappa}
        critic_dim = sum(self.dims.values()) + len(self.dims)
        self.learner = make_learner("dpo", spec.agents[i], critic_dim, spec.n_agents, envs, seed=i,
                                    overrides={"rollout_len": locksteps})  # never full: no update is timed
        self.acted = False
        # the lean STEP carries no reward, costs or flags: the learner observes zeros
        self.zeros = (np.zeros(envs, np.float32), np.zeros((envs, spec.n_costs), np.float32), np.zeros(envs, bool))

    def observe(self, reward: np.ndarray, cost: np.ndarray, done: np.ndarray) -> None:
        """Complete the last act()'s transition (nothing to complete before the first)."""
        if self.acted:
            self.learner.observe(reward, cost, done)

    def act(self, rows: dict[int, np.ndarray]) -> np.ndarray:
        self.acted = True
        return self.learner.act(rows[self.i], self.assemble(self.dims, rows, self.E))


class Parts(Acting):
    """The ``parts`` level's agent: :class:`Acting` with every message khop's own frame set, encoded
    and validated by envserver/protocol.py."""

    def __init__(self, i: int, task: str, kappa: int, envs: int, locksteps: int) -> None:
        from envserver import protocol

        super().__init__(i, task, kappa, envs, locksteps)
        self.P, self.t = protocol, 0

    def step(self, frames: list) -> np.ndarray | None:
        """The own observation rows of a STEP (reward and costs handed to the learner), None at BYE."""
        P = self.P
        msg = P.decode(frames)
        if msg.type == "BYE":
            return None
        self.t = msg["t"]
        a = msg.arrays
        self.observe(a["reward"], a["cost"], a["terminated"] | a["truncated"])
        return P.check_array(msg, "obs", (self.E, self.dims[self.i]), np.float32)

    def state(self, r: int, origin: int, rows: np.ndarray) -> list:
        return self.P.encode("STATE", {"from": self.i, "t": self.t, "round": r, "origins": [origin],
                                       "hops": [r - 1]}, entries=[rows])

    def read_state(self, frames: list) -> tuple[int, int, np.ndarray]:
        """(round, sender, rows) of a neighbour's STATE."""
        msg = self.P.decode(frames)
        return msg["round"], msg["from"], msg.entries[0]

    def act_frames(self, rows: dict[int, np.ndarray]) -> list:
        return self.P.encode("ACT", {"agent": self.i, "t": self.t}, {"action": self.act(rows)})


def agent(i: int, task: str, kappa: int, envs: int, level: str, locksteps: int, port_pipe: Any) -> None:
    """One agent process: STEP in, κ rounds with the ring neighbours, ACT out, until BYE."""
    spec = task_spec(task)
    n, dims = spec.n_agents, [a.obs_dim for a in spec.agents]
    act_dim = spec.agents[i].act_dim
    plan = ring_plan(n, kappa)
    ctx = zmq.Context()
    env = ctx.socket(zmq.DEALER)
    env.connect(f"tcp://127.0.0.1:{port_pipe.recv()}")
    inbox = ctx.socket(zmq.ROUTER)
    env.send_multipart([b"hello", b"%d" % i, b"%d" % inbox.bind_to_random_port("tcp://127.0.0.1")])
    ports = json.loads(_recv(env, "peer ports")[0])
    outs = {}
    for peer, p in ports.items():
        outs[int(peer)] = s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.IDENTITY, b"%d" % i)
        s.connect(f"tcp://127.0.0.1:{p}")
    sends = [[(rcv, o) for (q, s, rcv, o) in plan if q == r and s == i] for r in range(kappa + 1)]
    recvs = [[(s, o) for (q, s, rcv, o) in plan if q == r and rcv == i] for r in range(kappa + 1)]
    act = make_actor(dims[i], act_dim) if level == "compute" else None
    parts = Parts(i, task, kappa, envs, locksteps) if level == "parts" else None
    acting = Acting(i, task, kappa, envs, locksteps) if level == "learner" else None
    zeros = np.zeros((envs, act_dim), np.float32).tobytes()
    while True:
        frames = _recv(env, "STEP")
        if parts is not None:
            own = parts.step(frames)
            if own is None:
                break
            rows: dict[int, Any] = {i: own}
        elif frames[0] == b"bye":
            break
        else:
            rows = {i: frames[1]}
        stash: dict[tuple[int, int], Any] = {}  # a neighbour may be one round ahead of us
        for r in range(1, kappa + 1):
            for rcv, o in sends[r]:
                outs[rcv].send_multipart(parts.state(r, o, rows[o]) if parts else [b"%d" % r, rows[o]])
            for s, o in recvs[r]:
                while (r, s) not in stash:
                    got = _recv(inbox, f"round {r} rows")
                    if parts is not None:
                        rr, sender, data = parts.read_state(got[1:])
                    else:
                        sender, rr, data = got
                    stash[int(rr), int(sender)] = data
                rows[o] = stash.pop((r, s))
        if parts is not None:
            env.send_multipart(parts.act_frames(rows))
            continue
        out = zeros
        if acting is not None:
            acting.observe(*acting.zeros)
            own_rows = {o: np.frombuffer(b, np.float32).reshape(envs, dims[o]) for o, b in rows.items()}
            out = acting.act(own_rows).tobytes()
        elif act is not None:
            own = np.frombuffer(rows[i], np.float32).reshape(envs, dims[i]).copy()  # torch wants writable
            out = act(own).astype(np.float32).tobytes()
        env.send_multipart([b"act", out])
    ctx.destroy(linger=0)


class Physics:
    """E copies of the task's robot: ACT rows into ``ctrl``, ``mj_step`` at the task's frame skip,
    state columns out as each agent's observation rows (a gather of the observation's shape). On as
    many threads as khop's envserver would use for E copies (``--physics-threads`` 0), so that the
    compute stays the same."""

    def __init__(self, task: str, envs: int) -> None:
        import mujoco

        from envserver.tasks.mujoco_catalog import CATALOG
        from envserver.tasks.mujoco_models import robot_xml

        if task not in CATALOG:
            raise ValueError(f"lean loop: {task!r} is not a MuJoCo task")
        robot = CATALOG[task].robot
        self.mujoco, self.skip = mujoco, robot.frame_skip
        self.model = mujoco.MjModel.from_xml_string(robot_xml(robot))
        self.datas = [mujoco.MjData(self.model) for _ in range(envs)]
        spec = task_spec(task)
        width = self.model.nq + self.model.nv
        self.state = np.zeros((envs, width), np.float32)
        self.cols = [(np.arange(a.obs_dim) + i) % width for i, a in enumerate(spec.agents)]
        self.action = np.zeros((envs, self.model.nu), np.float32)
        self.pool = PhysicsPool(envs, resolve_threads(0, envs), self._advance)

    def _advance(self, lo: int, hi: int, _reset: list) -> None:
        nq = self.model.nq
        for e in range(lo, hi):
            d = self.datas[e]
            d.ctrl[:] = self.action[e]
            self.mujoco.mj_step(self.model, d, self.skip)
            self.state[e, :nq], self.state[e, nq:] = d.qpos, d.qvel

    def step(self) -> list[bytes]:
        self.pool.step()
        return [self.state[:, c] for c in self.cols]  # fresh contiguous arrays: frames as they are


LEVELS = ("msgs", "compute", "learner", "parts")


def serve(task: str, kappa: int, envs: int, seconds: float, level: str) -> dict[str, Any]:
    """Fork the agents, then run the server's lockstep: WARMUP untimed, then ``seconds`` timed."""
    spec = task_spec(task)
    n = spec.n_agents
    plan = ring_plan(n, kappa)  # validates n and κ before any process starts
    if envs < 1 or seconds <= 0 or level not in LEVELS:
        raise ValueError(f"lean loop: envs must be >= 1, seconds > 0 and the level one of {LEVELS}, "
                         f"got {envs}, {seconds}, {level!r}")
    if level != "msgs":
        import torch  # imported once here, inherited by every forked agent

        torch.set_num_threads(1)
    from envserver import protocol as P

    locksteps = WARMUP + int(seconds * MAX_LOCKSTEPS_PER_S) + 100
    fork = mp.get_context("fork")
    pipes = [fork.Pipe(duplex=False) for _ in range(n)]  # one each: readers of one pipe race
    procs = [fork.Process(target=agent, args=(i, task, kappa, envs, level, locksteps, pipes[i][0]), daemon=True)
             for i in range(n)]
    for p in procs:
        p.start()
    ctx = zmq.Context()  # only after the fork: no child inherits a live context
    srv = ctx.socket(zmq.ROUTER)
    port = srv.bind_to_random_port("tcp://127.0.0.1")
    for _reader, writer in pipes:
        writer.send(port)
    try:
        ids, ports = {}, {}
        for _ in procs:
            ident, _hello, i, p = _recv(srv, "HELLO")
            ids[int(i)], ports[int(i)] = ident, int(p)
        who = {ident: i for i, ident in ids.items()}
        for i in range(n):
            peers = {s if r == i else r for (_q, s, r, _o) in plan if i in (s, r)}
            srv.send_multipart([ids[i], json.dumps({q: ports[q] for q in peers}).encode()])
        physics = Physics(task, envs) if level != "msgs" else None
        acts = np.cumsum([0] + [a.act_dim for a in spec.agents])
        fixed = [np.random.default_rng(i).random((envs, a.obs_dim), dtype=np.float32)
                 for i, a in enumerate(spec.agents)]
        zeros_f, zeros_u = np.zeros(envs, np.float32), np.zeros(envs, np.uint8)
        zero_cost = np.zeros((envs, spec.n_costs), np.float32)
        t = 0

        def lockstep() -> None:
            nonlocal t
            bufs = physics.step() if physics else fixed
            for i in range(n):
                if level == "parts":  # khop's STEP, with the reward and costs the lean physics does not compute
                    P.send(srv, [ids[i], *P.encode("STEP", {"t": t}, {
                        "obs": bufs[i], "reward": zeros_f, "cost": zero_cost, "terminated": zeros_u,
                        "truncated": zeros_u})], block=True)
                else:
                    srv.send_multipart([ids[i], b"step", bufs[i]])
            for _ in range(n):
                got = _recv(srv, "ACT")
                if level == "parts":
                    msg = P.decode(got[1:])
                    i = msg["agent"]
                    rows = P.check_array(msg, "action", (envs, acts[i + 1] - acts[i]), np.float32)
                else:
                    i, rows = who[got[0]], np.frombuffer(got[2], np.float32).reshape(envs, -1)
                if physics:
                    physics.action[:, acts[i]:acts[i + 1]] = rows
            t += 1

        for _ in range(WARMUP):
            lockstep()
        cpu = lambda: time.process_time() + sum(proc_cpu_s(p.pid) or 0.0 for p in procs)  # noqa: E731
        load, cpu0, t0, k = load_average(), cpu(), time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            lockstep()
            k += 1
        window, cpu_s = time.perf_counter() - t0, cpu() - cpu0
        bye = P.encode("BYE", {"reason": "done"}) if level == "parts" else [b"bye", b""]
        for i in range(n):
            srv.send_multipart([ids[i], *bye])
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
        ctx.destroy(linger=0)
    return {"task": task, "n_agents": n, "kappa": kappa, "envs": envs, "level": level, "locksteps": k,
            "window_s": window, "locksteps_per_s": k / window, "steps_per_s": k * envs / window,
            "cpu_us_per_step": 1e6 * cpu_s / (k * envs), "messages_per_lockstep": 2 * n + len(plan),
            "load_1m": load}


def run_lean(task: str, kappa: int, envs: int, seconds: float, level: str) -> dict[str, Any]:
    """One lean-loop measurement in a fresh child process; its JSON line, or RuntimeError."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "bench.lean_loop", task, str(kappa), str(envs), "--seconds", str(seconds),
           "--level", level]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=seconds + 300)
    if res.returncode != 0:
        raise RuntimeError(f"lean loop {task} κ={kappa} E={envs} failed: {res.stderr.strip()[-1000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task")
    p.add_argument("kappa", type=int)
    p.add_argument("envs", type=int)
    p.add_argument("--seconds", type=float, default=5.0, help="timed stepping after the warm-up")
    p.add_argument("--level", choices=LEVELS, default="msgs",
                   help="msgs: messages only; compute: + MuJoCo and the acting network; learner: the real learner "
                        "acting instead; parts: + khop's protocol")
    args = p.parse_args(argv)
    try:
        out = serve(args.task, args.kappa, args.envs, args.seconds, args.level)
    except (ValueError, KeyError) as err:
        print(f"lean_loop: {err}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
