"""Options declared once: a dataclass field carries its default, help text, parser and range check,
and a command line, the parsing of it and the validation are all derived from that one declaration
(the idea of CleanRL's ``Args`` dataclass, in the standard library).

Why: a run's configuration crosses process boundaries — `khop run` writes each child's command
line, `agentd` and `envserver` parse it back, a sweep or a compose file writes it again. When every
boundary derives from the same fields (:func:`to_argv` writes, :func:`add_arguments` +
:func:`from_namespace` read), a new option is one field, and the writer and the reader cannot
disagree about its name, default or meaning. Lives in envserver/, the kernel every process imports
(like protocol.py and jsonl.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence


class OptionError(argparse.ArgumentTypeError, ValueError):
    """A value outside what its option allows; the message is the one line the user sees. Both
    kinds: argparse prints it as it is when a ``parse`` raises it, library code catches ValueError."""


@dataclass(frozen=True)
class Option:
    """How one dataclass field appears on a command line."""
    help: str
    flag: str | None = None  # default: --field-name
    parse: Callable[[str], Any] | None = None  # default: the type of the field's default
    choices: tuple | None = None
    check: Callable[[Any], str | None] | None = None  # None when the value is allowed, else what is allowed
    metavar: str | None = None
    repeat: bool = False  # a list field given as a repeatable flag (`--set k=v --set k2=v2`)
    negate: bool = False  # a bool field defaulting to True, switched off by its flag (`--no-progress`)


def option(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING, **how: Any) -> Any:
    """A dataclass field that is also a command-line option (keywords: see :class:`Option`)."""
    meta = {"option": Option(help=help, **how)}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


# --- checks: each returns None when the value is allowed, else the rule in words --------------------
def at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v is None or v >= low else f"must be >= {low:g}"


def positive(v: Any) -> str | None:
    return None if v is None or 0 < v < math.inf else "must be > 0 and finite"


# --- derivations ------------------------------------------------------------------------------------
def declared(cls: type) -> list[tuple[dataclasses.Field, Option]]:
    """The fields of ``cls`` (a dataclass or an instance) that are options, in declaration order."""
    return [(f, f.metadata["option"]) for f in dataclasses.fields(cls) if "option" in f.metadata]


def flag_of(f: dataclasses.Field, opt: Option) -> str:
    return opt.flag or "--" + f.name.replace("_", "-")


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _parser_of(f: dataclasses.Field, opt: Option) -> Callable[[str], Any]:
    if opt.parse is not None:
        return opt.parse
    d = _default(f)
    if d is None or d is MISSING or isinstance(d, (list, bool)):
        raise TypeError(f"option {f.name} needs an explicit parse=")
    return Path if isinstance(d, Path) else type(d)


def add_arguments(parser: argparse.ArgumentParser | Any, cls: type, defaults: Any = None,
                  skip: Iterable[str] = ()) -> None:
    """One argparse option per declared field of ``cls`` (dest = the field name), with the
    field's default, or ``defaults``' value of it where given (e.g. `khop run`'s own defaults)."""
    skip = set(skip)
    for f, opt in declared(cls):
        if f.name in skip:
            continue
        default = getattr(defaults, f.name) if defaults is not None else _default(f)
        kw: dict[str, Any] = {"dest": f.name, "help": opt.help}
        if default is MISSING:  # a field without a default is a required option
            kw.update(type=opt.parse, required=True)
        elif isinstance(_default(f), bool) and opt.parse is None:
            kw["action"] = "store_false" if opt.negate else "store_true"
            kw["default"] = default
        elif opt.repeat:
            kw.update(action="append", default=list(default), type=opt.parse or str)
        else:
            kw.update(type=_parser_of(f, opt), default=default)
        if opt.choices is not None:
            kw["choices"] = opt.choices
        if opt.metavar is not None:
            kw["metavar"] = opt.metavar
        elif "type" in kw and opt.choices is None:  # the flag's name, not the field's (--deadline S, not DEADLINE_S)
            kw["metavar"] = flag_of(f, opt)[2:].upper().replace("-", "_")
        parser.add_argument(flag_of(f, opt), **kw)


def from_namespace(cls: type, ns: argparse.Namespace, **extra: Any) -> Any:
    """``cls`` rebuilt from parsed arguments: every declared field present in ``ns``, plus ``extra``."""
    values = {f.name: getattr(ns, f.name) for f, _ in declared(cls) if hasattr(ns, f.name)}
    return cls(**values, **extra)


def _text(v: Any) -> str:
    return repr(float(v)) if isinstance(v, float) else str(v)


def to_argv(obj: Any, skip: Iterable[str] = ()) -> list[str]:
    """The command line that :func:`from_namespace` turns back into ``obj``: every declared
    field whose value differs from its default (so a child's command line stays short)."""
    skip = set(skip)
    out: list[str] = []
    for f, opt in declared(obj):
        value = getattr(obj, f.name)
        if f.name in skip or value == _default(f):
            continue
        flag = flag_of(f, opt)
        if isinstance(_default(f), bool) and opt.parse is None:
            out.append(flag)  # store_true set, or the negating flag of a True default
        elif opt.repeat:
            out += [a for v in value for a in (flag, _text(v))]
        elif value is None:
            raise OptionError(f"{flag} has no value to pass on (its default is {_default(f)!r})")
        else:
            out += [flag, _text(value)]
    return out


def check(obj: Any, skip: Iterable[str] = ()) -> None:
    """Every declared field of ``obj`` against its choices and range: OptionError naming the
    option, the value and what is allowed."""
    skip = set(skip)
    for f, opt in declared(obj):
        value = getattr(obj, f.name)
        if f.name in skip:
            continue
        if opt.choices is not None and value is not None and value not in opt.choices:
            raise OptionError(f"{flag_of(f, opt)} must be one of {', '.join(map(str, opt.choices))}; got {value!r}")
        why = opt.check(value) if opt.check is not None else None
        if why:
            raise OptionError(f"{flag_of(f, opt)} {why}, got {_text(value)}")


def copy_options(source: argparse.ArgumentParser, target: argparse.ArgumentParser, skip: Iterable[str]) -> None:
    """Give ``target`` every option of ``source`` (same flag, default, help) except the ``skip``
    destinations: `khop compose` and `khop slurm` take `khop run`'s options this way."""
    skip = set(skip)
    for action in source._actions:
        if action.dest not in skip:
            target._add_action(action)


def names(cls: type) -> Sequence[str]:
    """The declared option fields of ``cls``."""
    return [f.name for f, _ in declared(cls)]


def flags(cls: type) -> dict[str, str]:
    """Field name → its command-line flag, for messages that name an option as the user types it."""
    return {f.name: flag_of(f, opt) for f, opt in declared(cls)}


def _kind(f: dataclasses.Field, opt: Option) -> str:
    d = _default(f)
    if isinstance(d, bool):
        return "true or false"
    parse = opt.parse or type(d)
    return {int: "an integer", float: "a number"}.get(parse, "a valid value")


def cast(cls: type, name: str, value: Any) -> Any:
    """One value of option ``name`` of ``cls`` from a file or a comma list (a string, or the number
    or bool a TOML/JSON file holds), parsed as its command line would parse it; OptionError naming
    the option otherwise. Integers are strict: 1.5 is not a κ."""
    f, opt = next((f, o) for f, o in declared(cls) if f.name == name)
    flag = flag_of(f, opt)
    d = _default(f)
    try:
        if isinstance(d, bool) and opt.parse is None:
            if isinstance(value, bool):
                return value
            word = str(value).strip().lower()
            if word not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return word in ("true", "1", "yes")
        if opt.repeat:
            return [str(v) for v in (value if isinstance(value, list) else [value])]
        parse = _parser_of(f, opt)
        if parse is int:
            if isinstance(value, bool) or not float(value).is_integer():
                raise ValueError
            return int(float(value))
        return parse(str(value) if parse in (str, Path) else value)
    except OptionError:
        raise
    except (TypeError, ValueError):
        raise OptionError(f"{flag} expects {_kind(f, opt)}, got {value!r}") from None
