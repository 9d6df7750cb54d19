"""What a sweep is: its axes, the spec file / CLI values cast and checked, and the grid's cells."""
from __future__ import annotations

import itertools
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..launcher import LaunchError, RunConfig


#: axes a sweep may list; every cell takes one value of each
AXES = ("task", "algo", "relay", "kappa", "budget", "seed", "steps", "envs", "topology")
#: settings fixed for the whole sweep
FIXED = ("overrides", "link_delay_ms", "link_jitter_ms", "link_loss", "link_bandwidth_bps", "round_timeout_ms",
         "budget_max_period", "deadline_s", "checkpoint_every", "actor_mask", "actor_input",
         "inprocess")
NONE_WORDS = ("none", "null", "off", "inf", "")


class SweepError(LaunchError):
    """A bad sweep spec; one line for the user."""


def _budget(v: Any) -> float | None:
    if v is None or (isinstance(v, str) and v.strip().lower() in NONE_WORDS):
        return None
    try:
        b = float(v)
    except (TypeError, ValueError):
        raise SweepError(f"budget values are numbers of bytes or 'none', got {v!r}") from None
    if not (0 < b < math.inf):
        raise SweepError(f"budget values must be > 0 bytes, got {v!r}")
    return b


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool):
        raise SweepError(f"{what} values must be integers, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise SweepError(f"{what} values must be integers, got {v!r}") from None
    if not f.is_integer():
        raise SweepError(f"{what} values must be integers, got {v!r}")
    return int(f)


_CAST = {"task": str, "algo": str, "relay": str, "topology": str, "budget": _budget,
         "kappa": lambda v: _int(v, "kappa"), "seed": lambda v: _int(v, "seed"),
         "steps": lambda v: _int(v, "steps"), "envs": lambda v: _int(v, "envs")}


@dataclass
class SweepSpec:
    out: Path = Path("sweeps/sweep")
    task: list = field(default_factory=lambda: ["coop-game"])
    algo: list = field(default_factory=lambda: ["dpo"])
    relay: list = field(default_factory=lambda: ["sync"])
    kappa: list = field(default_factory=lambda: [1])
    budget: list = field(default_factory=lambda: [None])
    seed: list = field(default_factory=lambda: [0])
    steps: list = field(default_factory=lambda: [48_000])
    envs: list = field(default_factory=lambda: [16])
    topology: list = field(default_factory=lambda: [""])
    overrides: list = field(default_factory=list)
    link_delay_ms: float = 0.0
    link_jitter_ms: float = 0.0
    link_loss: float = 0.0
    link_bandwidth_bps: float = 0.0
    round_timeout_ms: float | None = None
    budget_max_period: int = 4
    deadline_s: float = 30.0
    checkpoint_every: int = 10
    actor_mask: bool = False
    actor_input: str | None = None  # None: each algorithm's own default
    inprocess: bool = False
    jobs: int = 1

    @classmethod
    def from_mapping(cls, data: dict[str, Any], base: "SweepSpec | None" = None) -> "SweepSpec":
        """Spec keys as in the CLI (``seeds`` = ``seed``, ``set`` = ``overrides``; lists or scalars;
        list values may also be comma-separated strings)."""
        spec = base or cls()
        aliases = {"seeds": "seed", "set": "overrides", "kappas": "kappa", "budgets": "budget", "algos": "algo",
                   "tasks": "task", "deadline": "deadline_s"}
        known = {f.name for f in fields(cls)}
        for key, value in data.items():
            name = aliases.get(key, key).replace("-", "_")
            if name not in known:
                raise SweepError(f"unknown sweep key {key!r}; known: {', '.join(sorted(known | set(aliases)))}")
            if value is None and name not in ("budget", "round_timeout_ms"):
                continue
            if name in AXES:
                items = value if isinstance(value, list) else (
                    [x.strip() for x in value.split(",")] if isinstance(value, str) and name != "topology"
                    else [value])
                if not items:
                    raise SweepError(f"sweep axis {key!r} is empty")
                setattr(spec, name, [_CAST[name](x) for x in items])
            elif name == "overrides":
                setattr(spec, name, list(value) if isinstance(value, list) else [value])
            elif name == "out":
                spec.out = Path(value)
            else:
                setattr(spec, name, value)
        if spec.jobs < 1:
            raise SweepError(f"--jobs must be >= 1, got {spec.jobs}")
        return spec

    @classmethod
    def from_file(cls, path: Path, base: "SweepSpec | None" = None) -> "SweepSpec":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise SweepError(f"cannot read sweep spec {path}: {err.strerror}") from None
        try:
            data = tomllib.loads(text) if Path(path).suffix.lower() == ".toml" else json.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as err:
            raise SweepError(f"sweep spec {path} is not valid {'TOML' if str(path).endswith('.toml') else 'JSON'}: "
                             f"{err}") from None
        if not isinstance(data, dict):
            raise SweepError(f"sweep spec {path} must be a table/object of keys")
        return cls.from_mapping(data, base)

    def cells(self) -> list["Cell"]:
        varying = {a for a in ("steps", "envs", "topology") if len(getattr(self, a)) > 1}
        out = []
        for values in itertools.product(*(getattr(self, a) for a in AXES)):
            out.append(Cell(dict(zip(AXES, values)), varying))
        names = [c.name for c in out]
        if len(set(names)) != len(names):
            raise SweepError("two cells of the grid would share a directory (a value is listed twice?)")
        return out

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


def budget_label(b: float | None) -> str:
    return "none" if b is None else f"{b:g}"


def _slug(v: Any) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in str(v)).strip("-") or "default"


@dataclass
class Cell:
    axes: dict[str, Any]
    varying: set = field(default_factory=set)

    @property
    def name(self) -> str:
        a = self.axes
        b = budget_label(a["budget"])
        parts = [a["task"], a["algo"], a["relay"], f"k{a['kappa']}", f"b{b}", f"s{a['seed']}"]
        parts += [f"n{a['steps']}"] if "steps" in self.varying else []
        parts += [f"e{a['envs']}"] if "envs" in self.varying else []
        parts += [f"t{_slug(a['topology'])}"] if "topology" in self.varying else []
        return "_".join(_slug(p) for p in parts)

    def run_config(self, spec: SweepSpec, run_dir: Path) -> RunConfig:
        a = self.axes
        return RunConfig(task=a["task"], algo=a["algo"], topology=a["topology"], kappa=a["kappa"], steps=a["steps"],
                         envs=a["envs"], seed=a["seed"], run_dir=run_dir, overrides=list(spec.overrides),
                         deadline_s=spec.deadline_s, checkpoint_every=spec.checkpoint_every, progress=False,
                         inprocess=spec.inprocess, relay=a["relay"], comm_budget=a["budget"],
                         budget_max_period=spec.budget_max_period, link_delay_ms=spec.link_delay_ms,
                         link_jitter_ms=spec.link_jitter_ms, link_loss=spec.link_loss,
                         link_bandwidth_bps=spec.link_bandwidth_bps, round_timeout_ms=spec.round_timeout_ms,
                         actor_mask=spec.actor_mask, actor_input=spec.actor_input)

