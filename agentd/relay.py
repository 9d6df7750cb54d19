"""κ-hop state, relayed hop by hop between direct neighbours.

Three pieces, so that the distributed agents and the in-process reference run the same logic:

* :class:`RelayPlan` — static, identical in every agent (each computes it from the topology, κ,
  the observation sizes and the budget): who sends which origin's rows to whom, in which round,
  at which precision, on which steps. Every origin o at distance d ≤ κ from agent j reaches j
  exactly once per exchange, along a shortest path, through one *designated* relay: the
  lowest-id neighbour of j that is d−1 hops from o. Because the plan is shared, a receiver knows
  exactly which messages to wait for — nobody waits for a message that was never going to come.
* :class:`RelayNode` — one agent's table of rows and what it sends / accepts, with no sockets.
* :class:`KHopRelay` (sockets, one per agent process) and :class:`MemoryNetwork` (all agents in
  one process, agentd/memory_network.py) drive the nodes round by round.

Modes (``--relay``):

* ``sync`` — κ rounds per env step. Round r carries, to each neighbour, the origins at distance
  r−1 from the sender that the receiver is owed, learned in round r−1 (round 1: the sender's own
  rows), so after κ rounds each agent holds the rows of its κ-ball *at this step* and nothing
  from farther away.
* ``async`` — one exchange per env step: the sender's own rows plus what it received in its
  previous exchange, so an origin d hops away arrives with the observation of step t−(d−1).

Presence: the critic input is each ball origin's rows in id order plus one presence bit per origin.
A bit is 1 iff that origin's rows arrived in this step's exchange (as fresh as the mode can make
them: age 0 in sync, d−1 in async). Rows that did not arrive are zeros with bit 0 — except under
a budget that sends every k steps, where the last rows received are held (bit 0) until the next
exchange is due. The actor sees its own observation only (see README, "Communication layer").

Round protocol: round r of step t closes at a slot deadline, step start + r × round timeout, or as
soon as every expected message is in. With reliable links (no emulated loss) the round timeout is
half the envserver's ACT deadline shared out over the rounds (at most the link timeout): every
live neighbour's message is waited for and the state is exact, yet waiting for a dead one cannot
make the waiting agent miss the deadline too (a cascade that would get its neighbours marked
down). With lossy links it is short (default 100 ms + twice the worst link latency;
``--round-timeout-ms``): a lost message shows up only as a missing message at the deadline — as
on a real network, nobody is told — and its entries (and whatever only it would have relayed) are
absent for that step. Anchoring the deadlines to the step start keeps a late round from cascading
into the next one. A neighbour that is *down* (agentd/liveness.py) is no longer waited for, its
rows absent (presence 0), until any frame from it (data or heartbeat) arrives. It goes down when
nothing has been heard from it for the heartbeat timeout since this exchange began (the link
timeout if it was never heard), and, on a reliable link, also when it misses a round slot (it is
dead, stopped or cut off; waiting a slot per step for it would slow everyone). A lost message on a
lossy link never takes a neighbour down. TCP itself loses what was in flight when a connection is
torn down and rebuilt (a healed partition): heartbeats carry the sender's last relay round, so a
message that such a heartbeat proves sent but that never came is given up within a heartbeat
interval (``lost_msgs``, presence 0 for that step) instead of a round slot, and nobody goes
down. Messages for later steps or rounds are kept (the newest few) for when their round comes: an
agent back from a pause finds its neighbours ahead of it.

A sender that owes a neighbour a message in a round but has none of its rows (lost upstream)
sends an empty STATE, a control marker of ~40 bytes, so the receiver does not wait for nothing.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from envserver import protocol as P
from topologies import khop_ball

from .links import LinkSpec, NeighbourLinks, TokenBucket, phase_of

MODES = ("sync", "async")
F16_MAX = float(np.finfo(np.float16).max)
WORST_T = 2**32 - 1  # header sizes are planned for the largest step counter msgpack encodes in 5 bytes
DEFAULT_MAX_PERIOD = 4


@dataclass(frozen=True)
class Level:
    """What the budget policy settled on: row precision, send every ``period`` steps, relay origins
    up to ``hops`` away (hops < κ: the farthest were dropped; 0: no communication)."""

    dtype: str = "f4"
    period: int = 1
    hops: int = 0


class RelayPlan:
    """The communication schedule every agent derives identically from the run's configuration.

    Budget policy (``budget`` = bytes per agent per env step, where one env step is one transition
    of one env copy, the unit of ``--steps``; a lockstep of E copies may therefore send E·budget):
    take the first level that fits the busiest agent's worst-case bytes per exchange, counting
    every byte on the wire (msgpack header for the largest step counter, raw buffers, ZMTP frame
    headers):

    1. float32 rows, every step, all κ hops;
    2. float16 rows (values clipped to ±65504), every step, all κ hops;
    3. float16, sent every k steps for the smallest k ≤ ``max_period`` that fits (k·budget·E per
       exchange);
    4. drop the farthest hop and repeat 2–3 with κ−1, κ−2, … hops;
    5. nothing at all (the critic then sees only the agent's own rows).

    One level for all agents keeps the relay consistent (a hop dropped is dropped everywhere) at
    the price that agents with fewer neighbours stay below the budget. A :class:`TokenBucket` per
    agent (rate E·budget per lockstep, depth k·E·budget) enforces the budget on every send anyway.
    """

    def __init__(self, graph: Any, kappa: int, obs_dims: Sequence[int] | Mapping[int, int], n_envs: int,
                 mode: str = "sync", budget: float | None = None, max_period: int = DEFAULT_MAX_PERIOD) -> None:
        if mode not in MODES:
            raise ValueError(f"relay mode must be one of {', '.join(MODES)}, got {mode!r}")
        if budget is not None and not (budget > 0 and math.isfinite(budget)):
            raise ValueError(f"communication budget must be a positive number of bytes, got {budget!r}")
        if max_period < 1:
            raise ValueError(f"max period must be >= 1, got {max_period}")
        self.kappa, self.E, self.mode, self.budget, self.max_period = kappa, n_envs, mode, budget, max_period
        nodes = sorted(graph.nodes)
        self.dims = {i: int(obs_dims[i]) for i in nodes}
        self.adj = {i: sorted(graph.adj[i]) for i in nodes}
        self.balls = {i: khop_ball(graph, i, kappa) for i in nodes}  # origin -> distance, d ≤ κ
        # designated relay of origin o towards receiver j: lowest-id neighbour of j at distance d−1
        self.relay_of: dict[tuple[int, int], int] = {}
        for j in nodes:
            for o, d in self.balls[j].items():
                if d >= 1:
                    self.relay_of[(j, o)] = min(i for i in self.adj[j] if self.balls[i].get(o) == d - 1)
        self._cost_cache: dict[tuple[str, int], dict[int, int]] = {}
        self.level = self._choose()

    # ------------------------------------------------------------------ schedule
    def sends(self, i: int, hops: int | None = None) -> dict[tuple[int, int], list[int]]:
        """{(neighbour j, round r): origins i owes j in round r} (async: every origin in round 1)."""
        hops = self.level.hops if hops is None else hops
        out: dict[tuple[int, int], list[int]] = defaultdict(list)
        for j in self.adj[i]:
            for o, d in sorted(self.balls[j].items()):
                if 1 <= d <= hops and self.relay_of[(j, o)] == i:
                    out[(j, d if self.mode == "sync" else 1)].append(o)
        return dict(out)

    def expects(self, j: int) -> dict[int, dict[int, list[int]]]:
        """{round r: {neighbour i: origins i sends j in round r}}."""
        out: dict[int, dict[int, list[int]]] = defaultdict(dict)
        for i in self.adj[j]:
            for (dst, r), origins in self.sends(i).items():
                if dst == j:
                    out[r][i] = origins
        return dict(out)

    def is_send_step(self, t: int) -> bool:
        return (t + 1) % self.level.period == 0

    def rounds_at(self, t: int) -> int:
        if self.level.hops == 0 or not self.is_send_step(t):
            return 0
        return self.level.hops if self.mode == "sync" else 1

    # ------------------------------------------------------------------ bytes
    def message_bytes(self, sender: int, rnd: int, origins: list[int], dtype: str) -> int:
        """Wire bytes of one STATE carrying ``origins`` (worst-case header)."""
        frames = P.encode("STATE", {"from": sender, "t": WORST_T, "round": rnd, "origins": origins,
                                    "hops": [self.balls[sender][o] for o in origins]},
                          entries=[np.empty((self.E, self.dims[o]), dtype=np.float16 if dtype == "f2" else np.float32)
                                   for o in origins])
        return P.wire_size(frames)

    def costs(self, dtype: str, hops: int) -> dict[int, int]:
        """Worst-case bytes each agent sends in one exchange at this precision and hop count."""
        key = (dtype, hops)
        if key not in self._cost_cache:
            self._cost_cache[key] = {
                i: sum(self.message_bytes(i, r, origins, dtype) for (_, r), origins in self.sends(i, hops).items())
                for i in self.adj}
        return self._cost_cache[key]

    def _choose(self) -> Level:
        if self.budget is None or self.kappa == 0:
            return Level("f4", 1, self.kappa)
        per_step = self.budget * self.E
        if max(self.costs("f4", self.kappa).values()) <= per_step:
            return Level("f4", 1, self.kappa)
        for hops in range(self.kappa, 0, -1):
            k = max(1, math.ceil(max(self.costs("f2", hops).values()) / per_step))
            if k <= self.max_period:
                return Level("f2", k, hops)
        return Level("f2", 1, 0)

    def token_bucket(self) -> TokenBucket | None:
        if self.budget is None:
            return None
        rate = self.budget * self.E
        return TokenBucket(rate, rate * self.level.period, self.level.period)

    def describe(self, i: int | None = None) -> dict[str, Any]:
        lv = self.level
        out: dict[str, Any] = {"mode": self.mode, "kappa": self.kappa, "budget_bytes_per_env_step": self.budget,
                               "dtype": lv.dtype, "period": lv.period, "hops": lv.hops,
                               "max_period": self.max_period}
        costs = self.costs(lv.dtype, lv.hops)
        if i is None:
            out["max_bytes_per_exchange"] = max(costs.values()) if costs else 0
        else:
            out["bytes_per_exchange"] = costs[i]
        out["max_bytes_per_env_step"] = (max(costs.values()) if costs else 0) / (lv.period * self.E)
        return out


@dataclass
class _Entry:
    rows: np.ndarray
    t_recv: int  # the step whose exchange delivered these rows


class RelayNode:
    """One agent's relay state and decisions, with no I/O: begin(t) → for each round: outgoing(r),
    then accept(r, …) for what arrived → critic_input()."""

    def __init__(self, me: int, plan: RelayPlan) -> None:
        self.me, self.plan, self.E = me, plan, plan.E
        self.ball = dict(sorted(plan.balls[me].items()))  # origin -> hop distance, origins in id order
        self.dims = {o: plan.dims[o] for o in self.ball}
        self.critic_dim = sum(self.dims.values()) + len(self.ball)  # rows + one presence bit per origin
        self.neighbours = plan.adj[me]
        self._sends = plan.sends(me)
        self._expects = plan.expects(me)
        self._np_dtype = np.float16 if plan.level.dtype == "f2" else np.float32
        self.table: dict[int, _Entry] = {}
        self.t = -1
        self.rounds = 0
        self.present_sum = 0  # Σ over steps of origins (self excluded) present, for presence_mean
        self.possible_sum = 0
        self.neighbour_present = {j: 0 for j in self.neighbours}  # steps whose exchange brought j's own rows
        self.exchanges = 0  # steps this node has exchanged (begin() calls)

    def begin(self, t: int, own_obs: np.ndarray) -> None:
        if self.t >= 0:  # account the finished step
            self.present_sum += sum(1 for o in self.ball if o != self.me and self._fresh(o))
            self.possible_sum += len(self.ball) - 1
            for j in self.neighbour_present:
                self.neighbour_present[j] += self._fresh(j)
        self.t = t
        self.exchanges += 1
        self.table[self.me] = _Entry(np.asarray(own_obs, dtype=np.float32), t)
        self.rounds = self.plan.rounds_at(t)

    def _fresh(self, o: int) -> bool:
        e = self.table.get(o)
        return e is not None and e.t_recv == self.t

    def outgoing(self, rnd: int) -> list[tuple[int, list, str]]:
        """(peer, frames, phase) for each message this agent owes in round ``rnd`` of this step."""
        out = []
        prev = self.t - self.plan.level.period  # async: what the previous exchange delivered
        for (peer, r), origins in self._sends.items():
            if r != rnd:
                continue
            if self.plan.mode == "sync":
                have = [o for o in origins if self._fresh(o)]
            else:
                have = [o for o in origins if o == self.me or (o in self.table and self.table[o].t_recv == prev)]
            entries = [np.clip(self.table[o].rows, -F16_MAX, F16_MAX).astype(np.float16)
                       if self._np_dtype is np.float16 else self.table[o].rows for o in have]
            frames = P.encode("STATE", {"from": self.me, "t": self.t, "round": rnd, "origins": have,
                                        "hops": [self.ball[o] for o in have]}, entries=entries)
            out.append((peer, frames, phase_of("STATE", len(have))))
        return out

    def expected(self, rnd: int) -> set[int]:
        return set(self._expects.get(rnd, {}))

    def accept(self, rnd: int, peer: int, msg: P.Message) -> int:
        """Fold a neighbour's STATE for this step and round into the table; returns entries taken.
        Entries that do not fit the plan (wrong distance, beyond κ, wrong shape) are ignored."""
        taken = 0
        for origin, hop, rows in zip(msg["origins"], msg["hops"], msg.entries):
            d = self.ball.get(origin)
            if d is None or d == 0 or hop + 1 != d or (self.plan.mode == "sync" and d != rnd):
                continue  # a neighbour relaying past our horizon, or off the shortest path
            if rows.shape != (self.E, self.dims[origin]) or self._fresh(origin):
                continue  # malformed relay, or already delivered this step
            self.table[origin] = _Entry(rows.astype(np.float32), self.t)
            taken += 1
        return taken

    def rows_and_presence(self) -> tuple[dict[int, np.ndarray], dict[int, float]]:
        """In one pass over the ball (every acting step): the rows the critic sees — fresh ones, and held
        ones until the next exchange is due — and each origin's presence bit (1 iff fresh)."""
        t, period = self.t, self.plan.level.period
        rows, presence = {}, {}
        for o in self.ball:
            e = self.table.get(o)
            if e is not None and t - e.t_recv < period:
                rows[o] = e.rows
            presence[o] = 1.0 if e is not None and e.t_recv == t else 0.0
        return rows, presence

    def presence(self) -> dict[int, float]:
        return self.rows_and_presence()[1]

    def rows(self) -> dict[int, np.ndarray]:
        return self.rows_and_presence()[0]

    def critic_input(self) -> np.ndarray:
        rows, presence = self.rows_and_presence()
        return assemble_critic_input(self.dims, rows, self.E, presence)

    def neighbour_presence(self) -> np.ndarray:
        """[E, degree] presence bits of the direct neighbours, in id order (the actor's mask)."""
        bits = np.asarray([1.0 if self._fresh(j) else 0.0 for j in self.neighbours], dtype=np.float32)
        return np.broadcast_to(bits, (self.E, len(bits))).copy()

    @property
    def known(self) -> dict[int, tuple[int, np.ndarray]]:
        """Origins delivered in this step's exchange: origin -> (hop distance, rows)."""
        return {o: (self.ball[o], self.table[o].rows) for o in self.ball if self._fresh(o)}

    def stats(self) -> dict[str, float]:
        return {"presence_mean": self.present_sum / self.possible_sum if self.possible_sum else 1.0,
                "exchanges": self.exchanges, **{f"nbr{j}_present_steps": n for j, n in self.neighbour_present.items()}}


def actor_input(obs: np.ndarray, node: RelayNode, with_mask: bool) -> np.ndarray:
    """The actor's input: the agent's own observation, plus (``--actor-mask``) its neighbours'
    presence bits."""
    if not with_mask:
        return obs
    return np.concatenate([np.asarray(obs, dtype=np.float32), node.neighbour_presence()], axis=1)


# --------------------------------------------------------------------------- over sockets


#: share of the envserver's ACT deadline the relay's rounds may use; the rest is the update and the ACT
RELAY_DEADLINE_SHARE = 0.5


def deadline_round_timeout_s(plan: RelayPlan, deadline_s: float) -> float:
    """The reliable-link round slot: the rounds of one step together wait at most half the ACT
    deadline, so an agent waiting for a dead neighbour still acts in time."""
    rounds = max(1, plan.level.hops if plan.mode == "sync" else 1)
    return RELAY_DEADLINE_SHARE * deadline_s / rounds


def default_round_timeout_s(plan: RelayPlan, specs: Mapping[Any, LinkSpec]) -> float | None:
    """100 ms + twice the worst latency of any emulated link for the largest planned message, when
    some link is lossy; None (wait up to the link timeout) when every link is reliable."""
    if not any(s.loss for s in specs.values()):
        return None
    costs = plan.costs(plan.level.dtype, plan.level.hops)
    biggest = max(costs.values()) if costs else 0
    return 0.1 + 2 * max((s.worst_latency_s(biggest) for s in specs.values()), default=0.0)


class KHopRelay:
    """One agent's relay over its :class:`NeighbourLinks` (see the module docstring)."""

    def __init__(self, node: RelayNode, links: NeighbourLinks, link_timeout_s: float = 30.0,
                 round_timeout_s: float | None = None, clock: Any = time.monotonic) -> None:
        self.node, self.links, self.clock = node, links, clock
        self.me = node.me
        self.link_timeout_s = link_timeout_s
        self.slot_s = round_timeout_s if round_timeout_s else link_timeout_s
        self.critic_dim = node.critic_dim
        self.liveness = links.liveness  # who is down: not awaited until they speak
        self.lossy = {p for p, e in links.emulators.items() if e.spec.loss > 0}
        self._early: dict[tuple[int, int], dict[int, P.Message]] = defaultdict(dict)
        self._at = (-1, 0)  # the (step, round) being gathered, or the last one closed
        self._early_keys = 2 * (node.plan.kappa + 1)  # (step, round) keys kept ahead: the newest
        self.round_timeouts = 0  # expected messages still missing at a slot deadline
        self.late_msgs = 0  # arrived after their round closed
        self.lost_msgs = 0  # not waited for any longer: the sender's heartbeat says it was sent (lost in a reconnect)
        self.step_bytes = 0  # wire bytes sent in the last exchange
        self.step_bytes_max = 0

    @property
    def known(self) -> dict[int, tuple[int, np.ndarray]]:
        return self.node.known

    def exchange(self, t: int, own_obs: np.ndarray) -> np.ndarray:
        """Run this step's rounds and return the critic input [E, critic_dim]."""
        sent_before = self.links.counters.bytes_sent_all
        if self.links.budget is not None:
            self.links.budget.refill(t)
        self.node.begin(t, own_obs)
        self._at = (t, 0)
        for key in [k for k in self._early if k[0] < t]:
            del self._early[key]
        start = self.clock()
        for rnd in range(1, self.node.rounds + 1):
            for peer, frames, phase in self.node.outgoing(rnd):
                self.links.send(peer, frames, phase)
            self.links.progress = (t, rnd)
            for peer, msg in self._gather(t, rnd, self.node.expected(rnd), start + rnd * self.slot_s, start):
                self.node.accept(rnd, peer, msg)
        self.step_bytes = self.links.counters.bytes_sent_all - sent_before
        self.step_bytes_max = max(self.step_bytes_max, self.step_bytes)
        return self.node.critic_input()

    def critic_input(self) -> np.ndarray:
        return self.node.critic_input()

    def _gather(self, t: int, rnd: int, expected: set[int], deadline: float,
                since: float) -> list[tuple[int, P.Message]]:
        """Round (t, rnd)'s messages: wait until the slot deadline for the expected neighbours that
        are not down, and take whatever else has already been delivered. ``since``: when this
        exchange began (a neighbour's silence is counted from then at the earliest)."""
        got = self._early.pop((t, rnd), {})
        self._at = (t, rnd)
        lost: set[int] = set()
        while True:
            now = self.clock()
            waiting = expected - self.liveness.down - set(got) - lost
            waiting -= self.liveness.expire(waiting, since, now, self.link_timeout_s)
            newly_lost = {p for p in waiting if self.links.has_sent(p, (t, rnd))}
            if newly_lost:
                self.lost_msgs += len(newly_lost)
                lost |= newly_lost
                waiting -= newly_lost
            if waiting and now >= deadline:
                self.round_timeouts += len(waiting)
                self.liveness.declare_down(p for p in waiting if p not in self.lossy)
                break
            item = self.links.next_state(min(deadline - now, 0.2) * 1000 if waiting else 0)
            if item is None:
                if not waiting:
                    break  # nothing more delivered and nobody left to wait for
                continue
            peer, msg = item
            if (msg["t"], msg["round"]) == (t, rnd):
                got[peer] = msg
            else:
                self._stash(peer, msg)
        return sorted(got.items())

    def _stash(self, peer: int, msg: P.Message) -> None:
        """Keep a STATE read outside its round: one for a later round (a faster neighbour, or one
        read while this agent waited in an update) until that round; one whose round has closed is
        stale."""
        if self._at < (msg["t"], msg["round"]):
            self._keep_early((msg["t"], msg["round"]), peer, msg)
        else:
            self.late_msgs += 1

    def _keep_early(self, key: tuple[int, int], peer: int, msg: P.Message) -> None:
        """A neighbour already in a later round or step (it is faster, or we were paused): keep its
        message for then — only the newest few rounds, so a backlog cannot grow without bound."""
        self._early[key][peer] = msg
        while len(self._early) > self._early_keys:
            dropped = self._early.pop(min(self._early))
            self.late_msgs += len(dropped)

    def stats(self) -> dict[str, float]:
        return {**self.node.stats(), "round_timeouts": self.round_timeouts, "late_msgs": self.late_msgs,
                "lost_msgs": self.lost_msgs, "step_bytes_max": self.step_bytes_max}


def assemble_critic_input(dims: dict[int, int], rows: dict[int, np.ndarray], n_envs: int,
                          presence: Mapping[int, float] | None = None) -> np.ndarray:
    """The critic's κ-hop input: each ball origin's rows in id order (zeros if missing), then one
    presence bit per origin (default: 1 where rows are given). One function, so the relay and the
    in-process reference agree. Filled into one preallocated array (it runs on every acting step:
    a slice copy per origin instead of a list, a broadcast and a concatenation)."""
    origins = sorted(dims)
    width = sum(dims.values())
    out = np.empty((n_envs, width + len(origins)), dtype=np.float32)
    col, bits = 0, []
    for origin in origins:
        dim, entry = dims[origin], rows.get(origin)
        out[:, col:col + dim] = 0.0 if entry is None else entry
        bits.append(float(presence[origin]) if presence is not None else float(entry is not None))
        col += dim
    out[:, width:] = bits
    return out
