"""The envserver loop: one ROUTER socket, E env copies stepped in lockstep for every agent.

Per step the server sends each live agent one STEP (its E observation rows and the last
reward/costs), waits for every live agent's ACT until a deadline, substitutes the task's fallback
action for anyone missing (and marks them down, so a dead agent costs one deadline, not one per
step), then steps all copies. Bad frames are answered with ERROR and never stop the loop: the
server serves the honest agents whatever the others send.
"""
from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from . import protocol as P
from .clock import ClockState, StepClock
from .curve import SERVER_NAME, Curve, agent_name
from .sockwatch import SocketWatch
from .jsonl import JsonlWriter
from .lockstep import Lockstep
from .options import at_least, option, positive
from .tasks import VecTask
from .tasks.physics_pool import physics_threads_option
from .tasks.base import AgentSpec, StepResult

log = logging.getLogger("envserver")


@dataclass(kw_only=True)
class ServerConfig:
    """`envserver`'s options, declared once: its command line is parsed from them and `khop run`
    writes it from them (compose/run/config.py process_args)."""
    task: str = option(help="task name (see `khop tasks`)", parse=str)
    bind: str = option("tcp://127.0.0.1:5555", "ZeroMQ endpoint to bind the ROUTER on")
    envs: int = option(8, "parallel env copies stepped in lockstep", check=at_least(1))
    seed: int = option(0, "seed of the task's initial states")
    max_env_steps: int = option(10_000, "env steps to run, summed over copies", flag="--steps", check=at_least(1))
    # per step; generous because agents run their updates inside a step
    deadline_s: float = option(30.0, "seconds to wait for an agent's ACT", flag="--deadline", check=positive)
    join_timeout_s: float = option(300.0, "seconds to wait for every agent to join", flag="--join-timeout",
                                   check=positive)
    run_dir: Path = option(Path("run/envserver"), "where episodes.jsonl, events.jsonl, clock and status.json go")
    # continue the step counter and budget of a previous server on run_dir (clock file)
    resume: bool = option(True, "start the step counter at 0 even if a previous server left a clock in --run-dir "
                                "(default: a restarted server continues its run's step counter and budget)",
                          flag="--fresh", negate=True)
    curve: Path | None = option(None, "CurveZMQ key directory (`khop keys`): admit only agents whose keys are listed",
                                parse=Path, metavar="DIR")
    physics_threads: int = physics_threads_option()
    max_message_bytes: int = 1 << 20  # an ACT is E·act_dim floats; anything near this is abuse
    status_every_s: float = 0.5


class EnvServer:
    def __init__(self, task: VecTask, cfg: ServerConfig, seed: int) -> None:
        self.task, self.cfg, self.seed = task, cfg, seed
        self.spec = task.spec
        self.n, self.E = self.spec.n_agents, task.n_envs
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self._receiver = P.TimedReceiver(self.sock)  # waits for ACTs in a blocking receive, not a Poller
        self.sock.setsockopt(zmq.MAXMSGSIZE, P.DEFAULT_MAX_MESSAGE_BYTES)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unroutable send raises instead of vanishing
        self.curve = Curve(cfg.curve, SERVER_NAME) if cfg.curve is not None else None
        if self.curve is not None:
            self.curve.serve(self.sock)  # every agent key in authorized_keys
        self.watch = SocketWatch(self.sock)  # counts dropped connections (oversized frames) and refused handshakes
        self._watched: dict[str, int] = {}
        self.sock.bind(cfg.bind)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.routes: dict[int, bytes] = {}  # agent id -> routing id of its DEALER
        self.live: set[int] = set()
        self.errors = 0
        self.stop_requested = False
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        if not cfg.resume:
            (cfg.run_dir / "clock").unlink(missing_ok=True)
        self.clock = StepClock(cfg.run_dir / "clock")
        before = self.clock.previous
        self.resumed = before is not None
        self.incarnation = 1 if before is None else before.starts + 1
        # a restart continues past every STEP the predecessor may have sent
        self.lockstep = Lockstep(task, cfg.run_dir, cfg.max_env_steps, *((before.t + 1, before.env_step) if before
                                                                          else (0, 0)))
        self.clock.record(ClockState(self.t, self.env_step, self.incarnation))
        self.events = JsonlWriter(cfg.run_dir / "events.jsonl")
        self._last_status = 0.0
        self._step_frames: dict[int, list] = {}  # this step's STEP per agent, for agents who rejoin mid-step

    @property
    def t(self) -> int:
        return self.lockstep.t

    @property
    def env_step(self) -> int:
        return self.lockstep.env_step

    # --- plumbing --------------------------------------------------------------------------
    def _send_to(self, route: bytes, frames: list) -> bool:
        """Never block: a peer that stops reading fills its queue, and with ROUTER_MANDATORY a
        blocking send would then stall the whole lockstep. Returns False if the frame was dropped."""
        try:
            P.send(self.sock, [route, *frames])
            return True
        except zmq.ZMQError:  # EAGAIN (peer's queue full) or EHOSTUNREACH (peer gone)
            return False

    def _send(self, agent: int, frames: list) -> None:
        if not self._send_to(self.routes[agent], frames):
            self._mark_down(agent, "cannot deliver STEP (disconnected or not reading)")

    def _reply_error(self, route: bytes, reason: str) -> None:
        self.errors += 1
        if self.errors <= 100 or self.errors % 10_000 == 0:  # a flood must not flood the log too
            log.warning("refused a frame (%d so far): %s", self.errors, reason)
        self._send_to(route, P.encode("ERROR", {"reason": reason}))

    def _event(self, event: str, agent: int | None = None, detail: str = "") -> None:
        self.events.write({"time": time.time(), "env_step": self.env_step, "t": self.t,
                           "event": event, "agent": agent, "detail": detail})

    def _mark_down(self, agent: int, why: str) -> None:
        if agent in self.live:
            self.live.discard(agent)
            log.warning("agent %d down: %s", agent, why)
            self._event("agent_down", agent, why)

    def _welcome(self, agent: int) -> list:
        return P.encode("WELCOME", {
            "agent": agent, "task": self.spec.name, "n_agents": self.n, "n_envs": self.E,
            "episode_length": self.spec.episode_length, "seed": self.seed,
            "agents": [vars(a) for a in self.spec.agents],
            "cost_names": list(self.spec.cost_names), "cost_limits": list(self.spec.cost_limits),
            "deadline_s": float(self.cfg.deadline_s), "incarnation": self.incarnation,
        })

    def _receive(self, timeout_ms: int) -> tuple[bytes, P.Message] | None:
        """One inbound message, validated; HELLOs are handled here. None on timeout or bad frame."""
        # one blocking receive, which returns at once for the ACTs already queued (most are); with CURVE,
        # the identity frame carries the key's name (User-Id)
        frames = self._receiver.recv(timeout_ms)
        if frames is None:
            return None
        route, body = frames[0].bytes, frames[1:]
        try:
            msg = P.decode(body, self.cfg.max_message_bytes)
            if (self.curve is not None and msg.type == "HELLO"
                    and frames[0].get("User-Id") != agent_name(msg["agent"])):
                raise P.ProtocolError(f"{frames[0].get('User-Id')}'s key cannot say HELLO as agent {msg['agent']}")
        except P.ProtocolError as err:
            self._reply_error(route, str(err))
            return None
        if msg.type == "HELLO":
            self._on_hello(route, msg)
            return None
        return route, msg

    def _on_hello(self, route: bytes, msg: P.Message) -> None:
        agent = msg["agent"]
        if agent >= self.n:
            self._reply_error(route, f"unknown agent {agent}: task {self.spec.name} has agents 0..{self.n - 1}")
            return
        if msg["version"] != P.PROTOCOL_VERSION:
            self._reply_error(route, f"protocol version {msg['version']} unsupported (server speaks {P.PROTOCOL_VERSION})")
            return
        known = agent in self.routes
        self.routes[agent] = route
        self._send_to(route, self._welcome(agent))
        detail = f"incarnation {msg['incarnation']}, resume={msg['resume']}"
        if not known:
            self.live.add(agent)
            self._event("agent_up", agent, detail)
            self._send_current_step(agent)
        elif agent in self.live:
            self._event("agent_rejoin", agent, detail + ", replaced its connection")
            self._send_current_step(agent)
        else:
            self._readmit(agent, detail)

    def _readmit(self, agent: int, why: str) -> None:
        """A down agent spoke again (a late ACT or a new HELLO): wait for it from this step on."""
        self.live.add(agent)
        self._event("agent_rejoin", agent, why)
        self._send_current_step(agent)

    def _send_current_step(self, agent: int) -> None:
        """Mid-step, hand a (re)admitted agent this step's STEP at once: the one we sent before went
        to a dead predecessor or was never sent (the agent was down), and without it we would wait
        for its ACT until the deadline and mark it down again."""
        if agent in self._step_frames:
            self._send(agent, self._step_frames[agent])

    # --- the loop --------------------------------------------------------------------------
    def wait_for_agents(self) -> None:
        """Block until every agent has said HELLO once, so the first step is not all fallbacks. A
        restarted server waits at most one deadline for the full team (an agent may be dead for
        good; it is admitted whenever it says HELLO), but never starts with nobody."""
        start = time.monotonic()
        end = start + self.cfg.join_timeout_s
        while len(self.routes) < self.n and not self.stop_requested:
            if self.resumed and self.routes and time.monotonic() > start + self.cfg.deadline_s:
                break
            if time.monotonic() > end:
                raise TimeoutError(f"only agents {sorted(self.routes)} of {self.n} joined within "
                                   f"{self.cfg.join_timeout_s:.0f} s")
            self._receive(200)

    def _wait_while_nobody_is_live(self) -> None:
        """With every agent down, stepping on fallback actions alone would burn the run's budget in
        seconds; wait until one speaks (a restarted agent's HELLO, a late ACT) or we are stopped."""
        if self.live or self.stop_requested:
            return
        log.warning("no agent is live at step %d; waiting for one to come back", self.t)
        self._event("no_agents", None, "every agent is down; the run waits")
        while not self.live and not self.stop_requested:
            self._receive(200)
            self._write_status()

    def _collect_actions(self) -> list[np.ndarray]:
        actions: dict[int, np.ndarray] = {}
        deadline = time.monotonic() + self.cfg.deadline_s
        while not self.stop_requested and not self.live.issubset(actions):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for agent in sorted(self.live - set(actions)):
                    self._mark_down(agent, f"no ACT for step {self.t} within {self.cfg.deadline_s:g} s")
                break
            got = self._receive(max(1, min(200, int(remaining * 1000))))
            if got is None:
                continue
            route, msg = got
            action = self._validate_act(route, msg)
            if action is not None:
                actions[msg["agent"]] = action
        return [actions.get(i, self.task.fallback_action(i)) for i in range(self.n)]

    def _validate_act(self, route: bytes, msg: P.Message) -> np.ndarray | None:
        if msg.type != "ACT":
            self._reply_error(route, f"unexpected {msg.type} from an agent (expected ACT)")
            return None
        agent = msg["agent"]
        if agent >= self.n or self.routes.get(agent) != route:
            self._reply_error(route, f"ACT from unknown agent {agent} (say HELLO first)")
            return None
        if msg["t"] != self.t:
            self._reply_error(route, f"stale step counter: ACT for step {msg['t']}, server is at {self.t}")
            if agent not in self.live and msg["t"] < self.t:  # a late agent is alive again
                self._readmit(agent, f"late ACT for step {msg['t']}")
            return None
        spec: AgentSpec = self.spec.agents[agent]
        try:
            if spec.act_kind == "discrete":
                a = P.check_array(msg, "action", (self.E,), np.int64)
                if a.min() < 0 or a.max() >= spec.n_actions:
                    raise P.ProtocolError(f"ACT action out of range 0..{spec.n_actions - 1}")
            else:
                a = P.check_array(msg, "action", (self.E, spec.act_dim), np.float32)
        except P.ProtocolError as err:
            self._reply_error(route, str(err))
            return None
        return self._refuse_unavailable(route, agent, a)

    def _refuse_unavailable(self, route: bytes, agent: int, action: np.ndarray) -> np.ndarray:
        """A well-formed ACT whose action is masked out in some copies: say so in one ERROR and step
        those copies with the fallback action. The ACT itself counts, so the agent stays live and
        its other copies take the actions it chose."""
        bad = self.lockstep.unavailable(agent, action)
        if not len(bad):
            return action
        fallback = self.task.fallback_action(agent)
        e = int(bad[0])
        self._reply_error(route, f"ACT action {int(action[e])} is unavailable to agent {agent} in env copy {e} at step "
                                 f"{self.t} (masked out; {len(bad)} copies in all): stepped with the fallback action "
                                 f"{int(fallback[e])} there")
        fixed = action.copy()
        fixed[bad] = fallback[bad]
        return fixed

    def _send_steps(self, res: StepResult) -> None:
        term, trunc = res.terminated.astype(np.uint8), res.truncated.astype(np.uint8)
        masked = [a.action_mask for a in self.spec.agents]
        self._step_frames = {agent: P.encode("STEP", {"t": self.t}, {
            "obs": res.obs[agent], "reward": res.reward, "cost": res.cost[agent], "terminated": term,
            "truncated": trunc, **({"mask": res.mask[agent].astype(np.uint8)} if masked[agent] else {})})
            for agent in range(self.n)}
        for agent in sorted(self.live):
            self._send(agent, self._step_frames[agent])

    def _write_status(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last_status < self.cfg.status_every_s:
            return
        self._last_status = now
        self.lockstep.write_status(sorted(self.live), final, errors=self.errors, incarnation=self.incarnation,
                                   **self._socket_counters())

    def _socket_counters(self) -> dict[str, int]:
        """What libzmq dropped or refused (envserver/sockwatch.py), with an event for each change."""
        now = self.watch.poll()
        for name, n in now.items():
            if n > self._watched.get(name, 0):
                self._event(name, None, f"{n - self._watched.get(name, 0)} more, {n} in all")
        self._watched = now
        return now

    def serve(self) -> None:
        """Run until max_env_steps (summed over copies) or a stop request; always says BYE."""
        try:
            self._event("server_start", None, f"incarnation {self.incarnation}" + (
                f", resumed at env_step {self.env_step}, t {self.t}" if self.resumed else ""))
            self.wait_for_agents()
            # after a restart the episodes the agents were in ended with the old server: say so
            res = self.lockstep.reset(truncated=self.resumed)
            while not self.lockstep.finished and not self.stop_requested:
                self._wait_while_nobody_is_live()
                self.clock.record(ClockState(self.t, self.env_step, self.incarnation))
                self._send_steps(res)
                actions = self._collect_actions()
                self._step_frames = {}  # this step is closed: nobody is handed its STEP any more
                if self.stop_requested:
                    break
                res = self.lockstep.step(actions)
                self._write_status()
        except BaseException:
            self.stop_requested = True  # BYE says "stopped": the run is not complete
            raise
        finally:
            self._finish()

    def _finish(self) -> None:
        reason = "stopped" if self.stop_requested else "run complete"
        for agent in list(self.routes):
            self._send_to(self.routes[agent], P.encode("BYE", {"reason": reason}))
        try:  # the final status first: its socket-counter events (agents hanging up) come before server_stop
            self._write_status(final=True)
            self._event("server_stop", None, reason)
        finally:  # a full disk refuses the rows above; the sockets and files are closed all the same
            self._close()

    def _close(self) -> None:
        self.events.close()
        self.clock.close()
        time.sleep(0.2)  # let BYE frames leave before the socket closes
        self.watch.close()
        self.sock.close(linger=500)
        if self.curve is not None:
            self.curve.close()
        self.lockstep.close()

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            self.stop_requested = True
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
