"""Exact training-state snapshots for ``acceptance.rollback: state``.

At a decision point we capture everything a harmful segment could change: model parameters
and buffers, optimizer state (param groups included), LR scheduler state, the AMP grad
scaler, and the python / numpy / torch RNG states. Restoring puts all of it back bit-exact,
so a rejected mutation leaves no trace in the weights. Snapshots live in memory, or on disk
under ``snapshot_dir`` when the model is too large to hold twice.
"""

from __future__ import annotations

import copy
import os
import random
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _objects(env: dict, single: str, plural: str) -> list[Any]:
    many = env.get(plural)
    if many:
        return list(many)
    one = env.get(single)
    return [one] if one is not None else []


def _clone(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_clone(v) for v in obj)
    return copy.deepcopy(obj)


def _rng_state() -> dict:
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:  # pragma: no cover - numpy ships with torch wheels
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainingSnapshot:
    """A captured training state; ``path`` is set when it was spilled to disk."""

    parts: dict[str, Any] | None
    path: Path | None = None
    nbytes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    # env["state_observer"] at capture time: told of capture, restore and discard, so that
    # other DDP ranks can do the same on their replicas (hotcb.distributed).
    observer: Any = field(default=None, repr=False)

    def load(self) -> dict[str, Any]:
        if self.parts is not None:
            return self.parts
        import torch

        return torch.load(self.path, weights_only=False)

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        self.parts = None
        if self.observer is not None:
            self.observer("discard", self)
            self.observer = None


def _nbytes(obj: Any) -> int:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def snapshot_dir_problem(snapshot_dir: str | os.PathLike | None) -> str:
    """Why snapshots could not be written to ``snapshot_dir`` (made at the first capture if
    missing), or "". Folders it makes to find out are removed again: validating leaves no trace."""
    if snapshot_dir is None:
        return ""
    directory = Path(snapshot_dir).absolute()
    missing = [p for p in (directory, *directory.parents) if not p.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        writable = os.access(directory, os.W_OK | os.X_OK)
    except OSError as exc:
        return f"cannot create snapshot directory {directory}: {exc.strerror or exc}"
    finally:
        for made in missing:  # deepest first
            try:
                made.rmdir()
            except OSError:
                break
    return "" if writable else f"snapshot directory {directory} is not writable"


_SNAPSHOT_PREFIX = "hotcb-snapshot-"


def _remove_orphans(directory: Path) -> None:
    """Delete snapshots left by processes of this host that died mid-segment (each is a full
    copy of model and optimizer); a live process's, or another host's, are left alone."""
    from hotcb.run_claim import process_alive

    host = socket.gethostname()
    for path in directory.glob(f"{_SNAPSHOT_PREFIX}*@*.pt"):
        pid, _, rest = path.name[len(_SNAPSHOT_PREFIX):].partition("@")
        if rest.rsplit("-", 1)[0] == host and pid.isdigit() and not process_alive(int(pid)):
            path.unlink(missing_ok=True)


def capture(env: dict, snapshot_dir: str | os.PathLike | None = None) -> TrainingSnapshot:
    """Capture model, optimizers, schedulers, grad scaler and RNG state from ``env``."""
    models = _objects(env, "model", "models")
    optimizers = _objects(env, "optimizer", "optimizers")
    schedulers = _objects(env, "scheduler", "schedulers")
    scaler = env.get("grad_scaler")
    parts = {
        "models": [_clone(m.state_dict()) for m in models],
        "optimizers": [_clone(o.state_dict()) for o in optimizers],
        "schedulers": [_clone(s.state_dict()) for s in schedulers],
        "grad_scaler": _clone(scaler.state_dict()) if scaler is not None else None,
        "rng": _rng_state(),
    }
    counts = {"models": len(models), "optimizers": len(optimizers), "schedulers": len(schedulers)}
    nbytes = _nbytes(parts)
    if snapshot_dir is None:
        snapshot = TrainingSnapshot(parts, nbytes=nbytes, counts=counts)
    else:
        import torch

        directory = Path(snapshot_dir)
        directory.mkdir(parents=True, exist_ok=True)
        _remove_orphans(directory)
        path = directory / f"{_SNAPSHOT_PREFIX}{os.getpid()}@{socket.gethostname()}-{uuid.uuid4().hex[:8]}.pt"
        torch.save(parts, path)
        snapshot = TrainingSnapshot(None, path=path, nbytes=nbytes, counts=counts)
    snapshot.observer = env.get("state_observer")
    if snapshot.observer is not None:
        snapshot.observer("capture", snapshot)
    return snapshot


def restore(snapshot: TrainingSnapshot, env: dict) -> None:
    """Put every captured part back. Raises if ``env`` does not hold the same objects."""
    parts = snapshot.load()
    models = _objects(env, "model", "models")
    optimizers = _objects(env, "optimizer", "optimizers")
    schedulers = _objects(env, "scheduler", "schedulers")
    found = {"models": len(models), "optimizers": len(optimizers), "schedulers": len(schedulers)}
    if found != snapshot.counts:
        raise RuntimeError(f"cannot restore training state: captured {snapshot.counts}, env now has {found}")
    for model, state in zip(models, parts["models"]):
        model.load_state_dict(state)
    for optimizer, state in zip(optimizers, parts["optimizers"]):
        optimizer.load_state_dict(_clone(state))
    for scheduler, state in zip(schedulers, parts["schedulers"]):
        scheduler.load_state_dict(_clone(state))
    scaler = env.get("grad_scaler")
    if scaler is not None and parts["grad_scaler"] is not None:
        scaler.load_state_dict(parts["grad_scaler"])
    _set_rng_state(parts["rng"])
    if env.get("state_observer") is not None:
        env["state_observer"]("restore", snapshot)
