"""The communication options of a run, declared once (README "Communication layer and budgets").

`khop run`, `khop sweep`, `khop compose` and `agentd` all take these options under the same names;
each builds or parses its command line from these fields (envserver/options.py), and the range
rules live in :meth:`CommConfig.validate`. The rules that need the task and the graph (the round
slot against the envserver's deadline, timed links in process) are the run's (compose/run/config.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from envserver.options import OptionError, at_least, check, option, positive

from .links import LinkSpec
from .relay import DEFAULT_MAX_PERIOD

NONE_WORDS = ("none", "null", "off", "inf", "")


def budget_value(text: Any) -> float | None:
    """`--comm-budget`: bytes per agent per env step, or none/off/inf for unlimited."""
    if text is None or (isinstance(text, str) and text.strip().lower() in NONE_WORDS):
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise OptionError(f"--comm-budget expects a number of bytes or 'none', got {text!r}") from None
    if not 0 < value < math.inf:
        raise OptionError(f"--comm-budget must be > 0 bytes, got {text!r}")
    return value


def optional_float(text: Any) -> float | None:
    return None if text is None or str(text).strip().lower() in NONE_WORDS else float(text)


@dataclass
class CommConfig:
    relay: str = option("sync", "sync: κ exchange rounds per env step, exact κ-hop state; async: one exchange per "
                                "step, state from d hops is d−1 steps old", choices=("sync", "async"))
    comm_budget: float | None = option(
        None, "wire bytes each agent may send per env step (one transition of one env copy); met by float16, "
              "sending every k steps, dropping the farthest hops (default: none)", parse=budget_value,
        metavar="BYTES", check=positive)
    budget_max_period: int = option(DEFAULT_MAX_PERIOD, "longest send period the budget policy may choose before it "
                                                        f"drops hops (default {DEFAULT_MAX_PERIOD})",
                                    metavar="K", check=at_least(1))
    link_delay_ms: float = option(0.0, "emulated one-way delay of every link (topology edge attribute delay_ms "
                                       "overrides)")
    link_jitter_ms: float = option(0.0, "emulated jitter: delay ± U(0, jitter) per message, in order (edge "
                                        "attribute jitter_ms)")
    link_loss: float = option(0.0, "emulated probability that a message is lost (edge attribute loss)")
    link_bandwidth_bps: float = option(0.0, "emulated link rate in bits/s, 0 = unlimited (edge attribute "
                                            "bandwidth_bps)")
    round_timeout_ms: float | None = option(
        None, "relay round slot length (default: 100 ms + 2 × worst link latency when a link is lossy, else the "
              "link timeout; never more than the rounds' share of half the envserver's deadline)",
        parse=optional_float, check=positive)
    link_timeout_s: float = option(30.0, "seconds of silence after which a neighbour is no longer waited for in an "
                                         "exchange (default 30)", flag="--link-timeout", metavar="S", check=positive)
    heartbeat_timeout_s: float = option(5.0, "a neighbour silent this long during an exchange is down (presence 0, "
                                             "not waited for); heartbeats go out every S/5 on quiet links (default 5)",
                                        flag="--heartbeat-timeout", metavar="S", check=positive)
    actor_mask: bool = option(False, "actor input = own observation + direct neighbours' presence bits "
                                     "(default: own only)")
    actor_input: str | None = option(None, "what the policy conditions on: local = own observation; khop = the "
                                           "critic's κ-ball rows + presence bits (default: the algorithm's paper; "
                                           "dec-mappo-l and shadow-pg khop)", parse=str, choices=("local", "khop"))

    @property
    def link(self) -> LinkSpec:
        """The emulated defaults of every link (topology edge attributes override them per edge)."""
        return LinkSpec(self.link_delay_ms, self.link_jitter_ms, self.link_loss, self.link_bandwidth_bps)

    @property
    def round_timeout_s(self) -> float | None:
        return self.round_timeout_ms / 1000 if self.round_timeout_ms else None

    def validate(self) -> None:
        """Each communication option against its range (OptionError, one line)."""
        check(self)
        try:
            self.link.validate("--link-* options")
        except ValueError as err:
            raise OptionError(str(err)) from None


def learner_overrides(items: list[str], actor_input: str | None) -> dict[str, str]:
    """The learner's overrides of a run or an agent: its `--set key=value` pairs, plus `--actor-input`
    as the LearnerConfig.actor_input it is. The learner casts and validates the keys."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out if actor_input is None else {**out, "actor_input": actor_input}
