"""hotcb: change a PyTorch run's hyperparameters while it trains, safely and with a record.

Public names are imported lazily: ``import hotcb`` does not import torch, lightning or optuna.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["HotKernel", "main", "run", "__version__"]

_LAZY = {
    "HotKernel": ("hotcb.kernel", "HotKernel"),
    "main": ("hotcb.launch", "main"),
    "run": ("hotcb.launch", "run"),
}

if TYPE_CHECKING:  # pragma: no cover
    from hotcb.kernel import HotKernel
    from hotcb.launch import main, run


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hotcb' has no attribute {name!r}")
