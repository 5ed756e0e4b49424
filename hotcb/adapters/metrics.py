"""Metric names and the ``env["metric"]`` accessor shared by every adapter.

Adapters normalise toward the standard names (``train/loss``, ``val/loss``, ``val/score``,
``lr``, ``grad/norm``, ``time/step_sec``, ``system/gpu_mem_mb``): ``val_loss`` and
``eval_loss`` become ``val/loss``, accuracy-like validation metrics also answer to
``val/score``. The original names keep working.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

_PREFIXES = {"val": "val", "valid": "val", "validation": "val", "eval": "val", "train": "train", "test": "test"}
_SCORE_NAMES = ("acc", "accuracy", "f1", "score", "auc")


_ALIASES = {"loss": "train/loss", "grad_norm": "grad/norm", "learning_rate": "lr"}  # HF Trainer logs


def normalize_name(name: str) -> str:
    """``val_loss`` → ``val/loss``, ``eval_accuracy`` → ``val/accuracy``, ``lr-Adam`` → ``lr``,
    HF's ``loss`` → ``train/loss``, ``grad_norm`` → ``grad/norm``."""
    if name.startswith("lr-"):
        return "lr"
    if name in _ALIASES:
        return _ALIASES[name]
    for sep in ("/", "_", "-", "."):
        head, found, tail = name.partition(sep)
        if found and head in _PREFIXES and tail:
            return f"{_PREFIXES[head]}/{tail}"
    return name


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "numel", lambda: 1)() == 1:
        value = value.item()
    return value


def normalized(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A dict holding each metric under its original and its normalised name, plus ``val/score``."""
    out: dict[str, Any] = {}
    for name, value in metrics.items():
        value = _plain(value)
        out[name] = value
        out.setdefault(normalize_name(name), value)
    if "val/score" not in out:
        for name in _SCORE_NAMES:
            if f"val/{name}" in out:
                out["val/score"] = out[f"val/{name}"]
                break
    return out


class MetricAccessor:
    """``env["metric"](name, default=None)`` over a mapping that may change under it."""

    def __init__(self, source: Callable[[], Mapping[str, Any]] | Mapping[str, Any], extra: Callable[[], Mapping[str, Any]] | None = None):
        self._source = source if callable(source) else (lambda: source)
        self._extra = extra

    def snapshot(self) -> dict[str, Any]:
        data = normalized(self._source())
        if self._extra is not None:
            for k, v in self._extra().items():
                data.setdefault(k, v)
        return data

    def __call__(self, name: str, default: Any = None) -> Any:
        value = self.snapshot().get(name, default)
        return default if value is None else value

    def names(self) -> list[str]:
        return sorted(self.snapshot())


def metric_accessor(metrics: Mapping[str, Any]) -> MetricAccessor:
    """The seed's ``lambda name, default=None: metrics.get(name, default)``, with name normalisation."""
    return MetricAccessor(metrics)


def actuator_metrics(kernel: Any) -> dict[str, float]:
    """Every actuator's value and the tuner's counts as scalars for a training framework's
    loggers, named like Lightning's LR monitor: ``hotcb/opt.lr`` (``hotcb/opt.lr/pg1`` per
    param group when there are several), ``hotcb/opt.betas/0`` for tuple elements, and
    ``hotcb/tune/accepted`` etc."""
    out: dict[str, float] = {}
    for name, actuator in kernel.mutable_state.items():
        try:
            values = actuator.snapshot({}).get("values")
        except Exception:  # noqa: BLE001 - a custom actuator without readable values
            continue
        if not isinstance(values, list):
            continue
        for group, value in enumerate(values):
            key = f"hotcb/{name}" + (f"/pg{group}" if len(values) > 1 else "")
            items = value if isinstance(value, (list, tuple)) else None
            if items is not None:
                out.update({f"{key}/{i}": float(v) for i, v in enumerate(items)})
            elif isinstance(value, (int, float)):
                out[key] = float(value)
    for count, value in kernel.tune_counts().items():
        out[f"hotcb/tune/{count}"] = float(value)
    return out


def finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
