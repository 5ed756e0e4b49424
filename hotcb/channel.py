"""The command log: how another terminal talks to a running job.

Writers (the ``hotcb`` CLI) append one JSON line per command while holding a lock file, then
flush and fsync; a writer first ends a line that a killed writer left open. The reader (the
training process) never locks: it remembers the byte offset it has consumed and treats a last
line without its newline as not yet written. A line it cannot read is returned as rejected and
takes no other with it; a log truncated or replaced under it is read again from the start. The
offset is part of the kernel's state, so after a resume no command is applied twice or skipped.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotcb.ledger import dumps

COMMANDS_FILE = "hotcb.commands.jsonl"
APPLIED_FILE = "hotcb.applied.jsonl"  # the outcome of each command, written by the training process


@dataclass(frozen=True)
class Command:
    """One external command: ``module`` names who handles it, ``op`` what to do."""

    module: str
    op: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    ts: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return {"id": self.id, "ts": self.ts, "module": self.module, "op": self.op, "args": self.args}


class MalformedCommand(Exception):
    """A command line that could not be parsed; kept so the kernel can record it as rejected."""

    def __init__(self, raw: str, reason: str):
        super().__init__(reason)
        self.raw = raw
        self.reason = reason


def send(run_dir: str | os.PathLike, command: Command) -> Command:
    """Append ``command`` to the run's command log under the writers' lock."""
    from filelock import FileLock

    path = Path(run_dir) / COMMANDS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = str(path) + ".lock"
    # A directory where the lock file cannot be made fails here at once, not after the timeout.
    os.close(os.open(lock, os.O_CREAT | os.O_RDWR, 0o644))
    with FileLock(lock, timeout=30):
        with open(path, "a+b") as fh:
            # A line left unterminated (a hand edit, a writer killed mid-line) would swallow this
            # command: end it first, so it is rejected on its own and this one still applies.
            if fh.seek(0, os.SEEK_END) > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.write((dumps(command.to_dict()) + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
    return command


class CommandReader:
    """Reads commands appended since the last poll. Cheap when nothing is new (one ``stat``)."""

    def __init__(self, run_dir: str | os.PathLike, offset: int = 0):
        self.path = Path(run_dir) / COMMANDS_FILE
        self.offset = offset

    def has_new(self) -> bool:
        """True when there is something to read, or the log shrank below what was read."""
        try:
            return os.stat(self.path).st_size != self.offset
        except FileNotFoundError:
            return False

    def poll(self) -> list[Command | MalformedCommand]:
        if not self.has_new():
            return []
        notices = []
        with open(self.path, "rb") as fh:
            # What was read ends with a newline. If the byte there is gone or is something else,
            # the log was truncated or replaced: what it holds now has not been read.
            fh.seek(max(self.offset - 1, 0))
            if self.offset and fh.read(1) != b"\n":
                notices.append(MalformedCommand("", f"the command log changed under the first {self.offset} bytes "
                                                    "already read (truncated or replaced?); reading it from the start"))
                self.offset = 0
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n")
        if end < 0:
            return notices
        self.offset += end + 1
        return notices + [_parse(raw) for raw in data[: end + 1].splitlines() if raw.strip()]


def _parse(raw: bytes) -> Command | MalformedCommand:
    """One line as a Command, or as a MalformedCommand saying why not; never raises, so one bad
    line cannot take the commands read with it down."""
    text = raw.decode("utf-8", errors="replace")
    try:
        return _command(json.loads(text), text)
    except json.JSONDecodeError as exc:
        return MalformedCommand(text, f"not valid JSON: {exc.msg}")
    except (ValueError, TypeError, RecursionError) as exc:  # huge numbers, deep nesting
        return MalformedCommand(text, f"unreadable command: {type(exc).__name__}: {str(exc)[:200]}")


def _command(obj: Any, text: str) -> Command | MalformedCommand:
    if not isinstance(obj, dict):
        return MalformedCommand(text, "a command must be a JSON object")
    missing = [k for k in ("module", "op") if not isinstance(obj.get(k), str)]
    if missing:
        return MalformedCommand(text, f"missing string field(s): {', '.join(missing)}")
    args = obj.get("args") or {}
    if not isinstance(args, dict):
        return MalformedCommand(text, "'args' must be an object")
    return Command(
        module=obj["module"],
        op=obj["op"],
        args=args,
        id=str(obj.get("id") or uuid.uuid4().hex[:12]),
        ts=_timestamp(obj.get("ts")),
    )


def _timestamp(value: Any) -> float:
    if value is None:
        return time.time()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"'ts' must be a number of seconds, got {value!r}")
    return float(value)
