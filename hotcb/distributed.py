"""One decision maker, many processes (DDP).

Every rank runs the same loop and calls ``kernel.apply`` at the same safe points, but only
rank 0 reads the command log, talks to the Optuna study and writes files. At each safe point
rank 0 records what it changed, in order: the actuators whose values moved, and each
training-state capture, restore or discard. It broadcasts that record (one small object)
and every other rank replays it before training goes on, so all ranks hold the same
hyperparameters at every step. A capture or restore is replayed on each rank's own replica
(DDP keeps replicas identical), so a state rollback needs no weights on the wire.

The broadcast is a collective: every rank reaches it from the same call, never from code
only rank 0 runs.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

from hotcb.actuators import state as training_state
from hotcb.actuators.mutable_state import MutableState

log = logging.getLogger(__name__)

# (op, argument): ("values", {actuator: snapshot}), ("capture", spill_dir or None),
# ("restore", None), ("discard", None)
Op = tuple[str, Any]


def launcher_rank() -> int:
    """This process's rank as a launcher announces it before any process group exists.

    0 means "this process is (or becomes) global rank 0"; any other value means it is not.
    Launchers differ: torchrun sets RANK, SLURM sets SLURM_PROCID, Lightning's own DDP
    launcher sets LOCAL_RANK and NODE_RANK for the processes it starts.
    """
    for var in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    local = os.environ.get("LOCAL_RANK", "0")
    node = os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0"))
    return max(int(local) if local.isdigit() else 0, int(node) if node.isdigit() else 0)


def torch_process_group() -> Optional["ProcessGroup"]:
    """The initialised ``torch.distributed`` world, if this process is part of one (size > 1).

    Looks only if torch.distributed was imported already, so a plain run pays no import.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return None

    def broadcast(obj: Any) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    return ProcessGroup(dist.get_rank(), dist.get_world_size(), broadcast)


@dataclass
class ProcessGroup:
    """Where this process sits, and how to send rank 0's object to every rank."""

    rank: int
    world_size: int
    broadcast: Callable[[Any], Any]


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. tensors: count as changed, the replay is idempotent
        return False


def read_values(state: MutableState, env: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, actuator in state.items():
        try:
            out[name] = actuator.snapshot(env)
        except Exception as exc:  # noqa: BLE001 - an unreadable knob is not mirrored
            log.debug("hotcb: cannot read actuator %s: %s", name, exc)
    return out


class Recorder:
    """Rank 0's side: what changed during one safe point, in the order it happened."""

    def __init__(self, state: MutableState):
        self.state = state
        self.ops: list[Op] = []
        self._known: dict[str, Any] = {}
        self._env: dict = {}

    def begin(self, env: dict) -> None:
        self.ops, self._env = [], env
        self._known = read_values(self.state, env)
        env["state_observer"] = self.observe

    def _values(self) -> None:
        now = read_values(self.state, self._env)
        changed = {k: v for k, v in now.items() if not _same(self._known.get(k), v)}
        if changed:
            self.ops.append(("values", changed))
        self._known = now

    def observe(self, op: str, snapshot: Any) -> None:
        """Called by :mod:`hotcb.actuators.state` on capture, restore and discard."""
        self._values()  # the values in force when the state was captured
        spill = str(snapshot.path.parent) if op == "capture" and snapshot.path is not None else None
        self.ops.append((op, spill))

    def end(self) -> list[Op]:
        self._values()
        self._env.pop("state_observer", None)
        ops, self.ops, self._env = self.ops, [], {}
        try:
            pickle.dumps(ops)
        except Exception as exc:  # noqa: BLE001 - a broken record must not desync the ranks
            log.error("hotcb: cannot send this safe point's changes to the other ranks: %s", exc)
            return [("error", f"{type(exc).__name__}: {exc}")]
        return ops


class Replayer:
    """A rank > 0's side: apply rank 0's record to this rank's actuators and training state."""

    def __init__(self, state: MutableState):
        self.state = state
        self.snapshot: Any = None  # at most one: segments never overlap

    def replay(self, ops: list[Op], env: dict) -> None:
        for op, arg in ops:
            if op == "values":
                for name, snap in arg.items():
                    actuator = self.state.get(name)
                    if actuator is None:
                        raise RuntimeError(f"rank 0 changed actuator {name!r}, which this rank does not have")
                    result = actuator.restore(snap, env)
                    if not getattr(result, "ok", True):
                        raise RuntimeError(f"{name}: {result.detail}")
            elif op == "capture":
                self._drop()
                self.snapshot = training_state.capture(env, arg)
            elif op == "restore":
                if self.snapshot is None:
                    raise RuntimeError("rank 0 restored a training-state snapshot this rank never captured")
                training_state.restore(self.snapshot, env)
            elif op == "discard":
                self._drop()
            elif op == "error":
                log.error("hotcb: rank 0 could not send its changes (%s); this rank may now differ", arg)

    def _drop(self) -> None:
        if self.snapshot is not None:
            self.snapshot.discard()
            self.snapshot = None
