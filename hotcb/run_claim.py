"""One job per run directory.

Two jobs on one directory would both apply every command and interleave their records. The
job that writes the directory's files claims it in ``hotcb.owner.json`` (pid, host, time); a
second job on the same host while that process lives is refused before it trains. The claim
is dropped at ``kernel.close()``; a crashed job's claim dies with its process (a pid reused
by a process started after the claim does not keep it), so a resume takes the directory back.
Workers that ``multiprocessing`` spawned from one parent (``mp.spawn`` DDP, before their rank
is known) are one job. Another host's claim cannot be checked and is taken over.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import time
from pathlib import Path
from typing import Optional

from hotcb.config_errors import ConfigError
from hotcb.ledger import write_json_atomic

OWNER_FILE = "hotcb.owner.json"


class RunDirInUse(ConfigError):
    """Another live job holds the run directory; nothing of this job may be written there."""


def process_alive(pid: int, since: Optional[float] = None) -> bool:
    """Whether process ``pid`` of this host still runs (and, given ``since``, was started by
    then: a later process that got the same pid is not the one that claimed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    started = _start_time(pid)
    return since is None or started is None or started <= since + 1.0


def _start_time(pid: int) -> Optional[float]:
    """When ``pid`` started, in epoch seconds, from /proc (None where there is none)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after the parenthesised name
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _spawner() -> Optional[int]:
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None else None


def claim(run_dir: Path) -> None:
    """Claim ``run_dir`` for this process; RunDirInUse if a live job on this host holds it."""
    path = run_dir / OWNER_FILE
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
        pid, host, since = int(owner["pid"]), str(owner["host"]), float(owner["since"])
    except (OSError, ValueError, KeyError, TypeError):
        owner = None  # no claim, or not one we can read: take it
    if owner is not None and pid != os.getpid() and host == socket.gethostname() and process_alive(pid, since):
        if owner.get("spawner") is not None and owner.get("spawner") == _spawner():
            return  # a sibling worker of the same job holds it
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
        raise RunDirInUse([f"run_dir: {run_dir} is in use by another job (pid {pid}, since {started}); give each "
                           f"job its own run directory (hotcb.run_dir), or stop that job first"], "hotcb")
    write_json_atomic(path, {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                             "spawner": _spawner()})


def release(run_dir: Path) -> None:
    """Drop this process's claim on ``run_dir`` (another's is left alone)."""
    path = run_dir / OWNER_FILE
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass
