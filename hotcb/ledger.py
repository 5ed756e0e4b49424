"""Durable run artifacts: append-only JSON lines and atomically replaced JSON documents.

A crash can leave at most one unterminated line at the end of a JSONL file; readers skip it,
so every artifact stays readable after a kill -9. JSON documents are written to a temporary
file and moved into place, so a reader never sees half a summary.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)


def to_jsonable(value: Any) -> Any:
    """Plain JSON data from numbers, tensors, numpy scalars, enums, tuples and paths."""
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "value") and type(value).__module__ != "builtins" and hasattr(type(value), "__members__"):
        return to_jsonable(value.value)  # Enum
    if hasattr(value, "item"):  # torch / numpy scalars
        try:
            return to_jsonable(value.item())
        except (TypeError, ValueError):
            pass
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def dumps(record: Any) -> str:
    return json.dumps(to_jsonable(record), separators=(",", ":"), sort_keys=False)


def append_jsonl(path: str | os.PathLike, record: dict, *, fsync: bool = True) -> None:
    """Append one record as one line. The line is flushed (and fsynced) before returning."""
    line = dumps(record) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the complete records of a JSONL file; an unterminated last line is not yet written."""
    p = Path(path)
    if not p.exists():
        return
    with open(p, "rb") as fh:
        data = fh.read()
    end = data.rfind(b"\n")
    if end < 0:
        return
    for lineno, raw in enumerate(data[: end + 1].splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            log.warning("hotcb: skipping malformed line %d of %s", lineno, p)
            continue
        if isinstance(record, dict):
            yield record


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return list(iter_jsonl(path))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as pretty JSON, never exposing a partial file."""
    write_text_atomic(path, json.dumps(to_jsonable(obj), indent=2) + "\n")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)


class DamagedFile(ValueError):
    """A record file that exists but is not what hotcb wrote (truncated, edited, another tool's)."""


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """``path`` as JSON, ``default`` when there is none; DamagedFile naming it when unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return default
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise DamagedFile(f"{path} is not valid JSON ({exc})") from None
