"""What a sweep is: its axes, the spec file / CLI values cast and checked, and the grid's cells.

A sweep spec takes every `khop run` option under the same name (the flag without its dashes, e.g.
``heartbeat-timeout`` or ``heartbeat_timeout``, or the RunConfig field, ``heartbeat_timeout_s``);
the options in :data:`AXES` may list several values (a list, or a comma-separated string), and the
grid is every combination of them. Each value is parsed and range-checked by the option's own
declaration (compose/run/config.py RunConfig, agentd/comm.py CommConfig).
"""
from __future__ import annotations

import itertools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envserver.options import OptionError, cast, flags, names

from ..run.config import LaunchError, RunConfig

#: options a sweep may list; every cell takes one value of each (the sweep's default in brackets)
AXES = ("task", "algo", "relay", "kappa", "comm_budget", "seed", "steps", "envs", "topology")
AXIS_DEFAULTS: dict[str, list] = {"task": [RunConfig.task], "algo": [RunConfig.algo], "relay": [RunConfig.relay],
                                  "kappa": [1], "comm_budget": [None], "seed": [0], "steps": [RunConfig.steps],
                                  "envs": [RunConfig.envs], "topology": [""]}
#: RunConfig options a sweep does not take: each cell has its own directory, and no progress bar
NOT_FOR_SWEEP = ("run_dir", "progress")
#: every other `khop run` option, fixed for the whole sweep
FIXED = tuple(n for n in names(RunConfig) if n not in AXES and n not in NOT_FOR_SWEEP)
#: plural and older names of the axes
ALIASES = {"seeds": "seed", "kappas": "kappa", "budget": "comm_budget", "budgets": "comm_budget",
           "algos": "algo", "tasks": "task"}


class SweepError(LaunchError):
    """A bad sweep spec; one line for the user."""


def _field_names() -> dict[str, str]:
    """Every accepted spelling of a sweep key → the RunConfig field (or out / jobs)."""
    out = {"out": "out", "jobs": "jobs", **ALIASES}
    for name, flag in flags(RunConfig).items():
        if name in NOT_FOR_SWEEP:
            continue
        for key in (name, flag[2:], flag[2:].replace("-", "_")):
            out[key] = name
    return out


@dataclass
class SweepSpec:
    out: Path = Path("sweeps/sweep")
    jobs: int = 1
    axes: dict[str, list] = field(default_factory=lambda: {a: list(v) for a, v in AXIS_DEFAULTS.items()})
    fixed: dict[str, Any] = field(default_factory=dict)  # RunConfig field -> value, where not its default

    @classmethod
    def from_mapping(cls, data: dict[str, Any], base: "SweepSpec | None" = None) -> "SweepSpec":
        """Spec keys as in the CLI (lists or scalars; axis values may also be comma-separated strings)."""
        spec = base or cls()
        known = _field_names()
        for key, value in data.items():
            name = known.get(key)
            if name is None:
                raise SweepError(f"unknown sweep key {key!r}; known: {', '.join(sorted(known))}")
            try:
                if name == "out":
                    spec.out = Path(value)
                elif name == "jobs":
                    spec.jobs = int(value)
                elif name in AXES:
                    items = value if isinstance(value, list) else (
                        [x.strip() for x in value.split(",")] if isinstance(value, str) and name != "topology"
                        else [value])
                    if not items:
                        raise SweepError(f"sweep axis {key!r} is empty")
                    spec.axes[name] = [cast(RunConfig, name, x) for x in items]
                elif value is None:  # null: the option's default
                    spec.fixed.pop(name, None)
                else:
                    spec.fixed[name] = cast(RunConfig, name, value)
            except OptionError as err:
                raise SweepError(f"sweep key {key!r}: {err}") from None
            except ValueError:
                raise SweepError(f"sweep key {key!r}: not a valid value: {value!r}") from None
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
        varying = {a for a in ("steps", "envs", "topology") if len(self.axes[a]) > 1}
        out = [Cell(dict(zip(AXES, values)), varying) for values in itertools.product(*(self.axes[a] for a in AXES))]
        names_ = [c.name for c in out]
        if len(set(names_)) != len(names_):
            raise SweepError("two cells of the grid would share a directory (a value is listed twice?)")
        return out

    def to_json(self) -> dict[str, Any]:
        """sweep.json: the resolved spec, readable back by :meth:`from_mapping`."""
        return {"out": str(self.out), "jobs": self.jobs, **self.axes,
                **{k: str(v) if isinstance(v, Path) else v for k, v in self.fixed.items()}}


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
        b = budget_label(a["comm_budget"])
        parts = [a["task"], a["algo"], a["relay"], f"k{a['kappa']}", f"b{b}", f"s{a['seed']}"]
        parts += [f"n{a['steps']}"] if "steps" in self.varying else []
        parts += [f"e{a['envs']}"] if "envs" in self.varying else []
        parts += [f"t{_slug(a['topology'])}"] if "topology" in self.varying else []
        return "_".join(_slug(p) for p in parts)

    def run_config(self, spec: SweepSpec, run_dir: Path) -> RunConfig:
        """This cell's `khop run` configuration: its axis values over the sweep's fixed options."""
        fixed = {k: list(v) if isinstance(v, list) else v for k, v in spec.fixed.items()}
        return RunConfig(**fixed, **self.axes, run_dir=run_dir, progress=False)
