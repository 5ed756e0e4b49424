"""Readable configuration errors: one line per problem, naming the dotted field and the value."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration that does not validate. ``problems`` holds one message per field."""

    def __init__(self, problems: list[str], source: str = ""):
        self.problems = problems
        self.source = source
        head = f"invalid configuration{f' ({source})' if source else ''}:"
        super().__init__("\n".join([head, *(f"  {p}" for p in problems)]))


def _shorten(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def problems_from_pydantic(exc: Any, prefix: str = "") -> list[str]:
    """Turn a pydantic ValidationError into ``dotted.path: message (got value)`` lines."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
        path = ".".join(([prefix] if prefix else []) + loc)
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] in ("literal_error", "enum"):
            expected = err.get("ctx", {}).get("expected", "")
            msg = f"must be one of {expected}"
        got = "" if err["type"] == "missing" else f" (got {_shorten(err.get('input'))})"
        lines.append(f"{path}: {msg}{got}")
    return lines
