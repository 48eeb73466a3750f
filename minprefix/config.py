"""Configuration fields that carry their own help text and allowed range.

A config is a dataclass; each field is declared with `arg(default, help, ...)`. The command
line builds its flags from these fields (one source for the help), and `validate` checks
every field in one place, naming the field (in backquotes: `steps`) and the allowed range;
the command line says the field as its flag.
"""

import math
import types
import typing
from dataclasses import MISSING, field, fields


def arg(default, help: str, low=None, high=None, above=None, choices=None, factory=None):
    """A dataclass field with help and bounds: low <= value <= high, value > above, value in choices."""
    meta = {"help": help, "low": low, "high": high, "above": above, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


KINDS = {int: "an integer", float: "a number", bool: "True or False", str: "a string"}


def type_error(f, v) -> str | None:
    """What is wrong with the type of v for field f, or None: the Python API gets the CLI's types checked too."""
    kinds = set(typing.get_args(f.type)) if isinstance(f.type, types.UnionType) else {f.type}
    if v is None:
        return None if type(None) in kinds else f"`{f.name}` must be {KINDS.get(f.type, f.type)}, got None"
    kinds.discard(type(None))
    if len(kinds) != 1 or next(iter(kinds)) not in KINDS:
        return None  # a type this check does not know: left to the field's own code
    kind = kinds.pop()
    ok = {int: lambda: isinstance(v, int) and not isinstance(v, bool),
          float: lambda: isinstance(v, (int, float)) and not isinstance(v, bool),  # an int is a fine float
          bool: lambda: isinstance(v, bool), str: lambda: isinstance(v, str)}[kind]()
    return None if ok else f"`{f.name}` must be {KINDS[kind]}, got {v!r}"


def validate(cfg) -> None:
    """Raise a ValueError naming the field and the allowed values for the first field of a wrong type or out of
    range."""
    for f in fields(cfg):
        m, v = f.metadata, getattr(cfg, f.name)
        if "help" not in m:
            continue
        wrong = type_error(f, v)
        if wrong:
            raise ValueError(wrong)
        if v is None or isinstance(v, bool):
            continue
        if m["choices"] is not None and v not in m["choices"]:
            raise ValueError(f"`{f.name}` {v!r} is not one of: {', '.join(map(str, m['choices']))}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"`{f.name}` must be a finite number, got {v}")
        if m["low"] is not None and v < m["low"] or m["high"] is not None and v > m["high"]:
            low = "" if m["low"] is None else f"at least {m['low']}"
            high = "" if m["high"] is None else f"at most {m['high']}"
            raise ValueError(f"`{f.name}` must be {' and '.join(s for s in (low, high) if s)}, got {v}")
        if m["above"] is not None and not v > m["above"]:
            raise ValueError(f"`{f.name}` must be greater than {m['above']}, got {v}")


def default_of(f):
    return f.default_factory() if f.default is MISSING else f.default
