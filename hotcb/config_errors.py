"""Readable configuration errors: one line per problem, naming the dotted field, the value,
what is accepted and, when the config was composed by Hydra, the option it came from."""

from __future__ import annotations

import types
import typing
from typing import Any, Callable, Optional

Origin = Optional[Callable[[str], str]]


class ConfigError(ValueError):
    """A configuration that does not validate. ``problems`` holds one message per field."""

    def __init__(self, problems: list[str], source: str = ""):
        self.problems = problems
        self.source = source
        head = f"invalid configuration{f' ({source})' if source else ''}:"
        super().__init__("\n".join([head, *(f"  {p}" for p in problems)]))

    def __reduce__(self):  # intact across processes (joblib and submitit return it pickled)
        return type(self), (self.problems, self.source)


def _shorten(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_problem(path: str, message: str, origin: Origin = None) -> str:
    """``[option → ]dotted.path: message``; ``origin`` names the config option that set ``path``."""
    label = origin(path) if origin is not None else ""
    return f"{label} → {path}: {message}" if label else f"{path}: {message}"


def _unwrap(tp: Any) -> Any:
    """``Optional[X]`` → ``X``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def accepted_fields(model: Any, loc: list[str]) -> list[str]:
    """The field names (aliases where set) a pydantic model accepts at ``loc``; [] if unknown."""
    from pydantic import BaseModel

    tp = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = {f.alias or name: f for name, f in tp.model_fields.items()}
            if part not in fields:
                return []
            tp = fields[part].annotation
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or name for name, f in tp.model_fields.items()]
    return []


def problems_from_pydantic(exc: Any, prefix: str = "", origin: Origin = None, model: Any = None) -> list[str]:
    """Turn a pydantic ValidationError into ``[option → ]dotted.path: message (got value)`` lines."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
        path = ".".join(([prefix] if prefix else []) + loc)
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            known = accepted_fields(model, loc[:-1]) if model is not None else []
            msg = "unknown field" + (f"; accepted: {', '.join(known)}" if known else "")
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] in ("literal_error", "enum"):
            expected = err.get("ctx", {}).get("expected", "")
            msg = f"must be one of {expected}"
        got = "" if err["type"] == "missing" else f" (got {_shorten(err.get('input'))})"
        lines.append(format_problem(path, f"{msg}{got}", origin))
    return lines
