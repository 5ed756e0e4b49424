"""Optimizer actuators: lr, weight_decay and betas, per param group, scheduler-aware.

An lr change is made as a ratio per param group and carried into everything that would
otherwise recompute the lr from its old base: the group's ``initial_lr``/``max_lr``/``min_lr``
(OneCycleLR) and each attached scheduler's ``base_lrs``, ``max_lrs``, ``min_lrs`` and last lr,
recursing into SequentialLR/ChainedScheduler. Without that, the next ``scheduler.step()``
silently undoes the change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hotcb.actuators.base import HotcbActuator, Limits, ParamKind

_GROUP_LR_KEYS = ("initial_lr", "max_lr", "min_lr")
_SCHEDULER_LIST_ATTRS = ("base_lrs", "max_lrs", "min_lrs", "_last_lr")

HARD_LIMITS = {
    "lr": Limits(0.0, math.inf, low_inclusive=False),
    "weight_decay": Limits(0.0, math.inf),
    "betas": Limits(0.0, 1.0, high_inclusive=False),
}
KINDS = {"lr": ParamKind.LOG_FLOAT, "weight_decay": ParamKind.LOG_FLOAT, "betas": ParamKind.TUPLE}


@dataclass
class OptimizerActuator(HotcbActuator):
    """One hyperparameter (``param``) of every param group of one optimizer."""

    optimizer: Any = None
    param: str = "lr"
    schedulers: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.relative_restore = self.kind is not ParamKind.TUPLE
        self.bind()

    def read(self, env: dict) -> list[Any]:
        values = [g[self.param] for g in self.optimizer.param_groups]
        return [tuple(float(x) for x in v) if isinstance(v, (tuple, list)) else float(v) for v in values]

    def write(self, values: list[Any], env: dict) -> None:
        groups = self.optimizer.param_groups
        if len(values) != len(groups):
            raise ValueError(f"{self.name}: {len(values)} values for {len(groups)} param groups")
        for index, (group, new) in enumerate(zip(groups, values)):
            if self.kind is ParamKind.TUPLE:
                group[self.param] = tuple(float(v) for v in new)
                continue
            new = float(new)
            old = float(group[self.param])
            group[self.param] = new
            if self.param == "lr" and old > 0 and new != old:
                self._rescale_schedule(index, new / old, env)

    def _rescale_schedule(self, index: int, ratio: float, env: dict) -> None:
        group = self.optimizer.param_groups[index]
        for key in _GROUP_LR_KEYS:
            if isinstance(group.get(key), (int, float)):
                group[key] = float(group[key]) * ratio
        for scheduler in self._attached_schedulers(env):
            _rescale_scheduler(scheduler, index, ratio)

    def _attached_schedulers(self, env: dict) -> list[Any]:
        found = list(self.schedulers)
        extra = env.get("schedulers") or ([env["scheduler"]] if env.get("scheduler") is not None else [])
        for s in extra:
            if s not in found and getattr(s, "optimizer", None) is self.optimizer:
                found.append(s)
        return found


def _rescale_scheduler(scheduler: Any, index: int, ratio: float) -> None:
    for child in getattr(scheduler, "_schedulers", ()) or ():
        _rescale_scheduler(child, index, ratio)
    for attr in _SCHEDULER_LIST_ATTRS:
        values = getattr(scheduler, attr, None)
        if isinstance(values, list) and index < len(values) and isinstance(values[index], (int, float)):
            values[index] = float(values[index]) * ratio


def optimizer_actuators(optimizer: Any, *, prefix: str = "opt", schedulers: list[Any] | None = None) -> list[OptimizerActuator]:
    """One actuator per tunable hyperparameter the optimizer has: lr, weight_decay, betas."""
    first = optimizer.param_groups[0]
    return [
        OptimizerActuator(
            name=f"{prefix}.{param}",
            kind=KINDS[param],
            limits=HARD_LIMITS[param],
            optimizer=optimizer,
            param=param,
            schedulers=list(schedulers or []),
        )
        for param in ("lr", "weight_decay", "betas")
        if param in first
    ]
