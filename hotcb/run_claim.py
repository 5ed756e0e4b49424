"""One job per run directory.

Two jobs on one directory would both apply every command and interleave their records. The
job that writes the directory's files claims it in ``hotcb.owner.json`` (pid, host, time); a
second job on the same host while that process lives is refused before it trains. The claim
is dropped at ``kernel.close()``; a crashed job's claim dies with its process, so a resume
takes the directory back. Another host's claim cannot be checked and is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from hotcb.config_errors import ConfigError
from hotcb.ledger import write_json_atomic

OWNER_FILE = "hotcb.owner.json"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def claim(run_dir: Path) -> None:
    """Claim ``run_dir`` for this process; ConfigError if a live job on this host holds it."""
    path = run_dir / OWNER_FILE
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        owner = None  # no claim, or not one we can read: take it
    if owner is not None and pid != os.getpid() and host == socket.gethostname() and process_alive(pid):
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("since", 0)))
        raise ConfigError([f"run_dir: {run_dir} is in use by another job (pid {pid}, since {since}); give each job "
                           f"its own run directory (hotcb.run_dir), or stop that job first"], "hotcb")
    write_json_atomic(path, {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})


def release(run_dir: Path) -> None:
    """Drop this process's claim on ``run_dir`` (another's is left alone)."""
    path = run_dir / OWNER_FILE
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass
