"""Optimizer actuators: lr, weight_decay and betas, per param group, scheduler-aware.

An lr change is made as a ratio per param group and carried into everything that would
otherwise recompute the lr from its old base: the group's ``initial_lr``/``max_lr``/``min_lr``
(OneCycleLR), each attached scheduler's ``base_lrs``, ``max_lrs``, ``min_lrs`` and last lr,
and its ``eta_min`` (cosine schedules), recursing into SequentialLR/ChainedScheduler. Without
that, the next ``scheduler.step()`` silently undoes the change; with it, ``lr_mult=m`` keeps
the lr at ``m`` times the unmutated schedule for every later step (LambdaLR and therefore the
transformers schedulers, StepLR, CosineAnnealingLR, OneCycleLR, ReduceLROnPlateau, ...).

A snapshot of the lr also records those schedule bases, so ``restore`` puts them back
exactly; only the current lr is restored by ratio, which keeps the schedule's progress made
during the segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hotcb.actuators.base import HotcbActuator, Limits, ParamKind

_GROUP_LR_KEYS = ("initial_lr", "max_lr", "min_lr")
_SCHEDULER_LIST_ATTRS = ("base_lrs", "max_lrs", "min_lrs", "_last_lr")
_SCHEDULER_SCALAR_ATTRS = ("eta_min",)

# No optimizer trains at an lr or weight decay above 1e4; the cap keeps a typo such as 1e300
# from overflowing the optimizer's float32 arithmetic and crashing the run.
HARD_LIMITS = {
    "lr": Limits(0.0, 1e4, low_inclusive=False),
    "weight_decay": Limits(0.0, 1e4),
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
        ratios = []
        for group, new in zip(groups, values):
            if self.kind is ParamKind.TUPLE:
                group[self.param] = tuple(float(v) for v in new)
                continue
            new, old = float(new), float(group[self.param])
            group[self.param] = new
            ratios.append(new / old if old > 0 else 1.0)
        if self.param == "lr" and any(r != 1.0 for r in ratios):
            for group, ratio in zip(groups, ratios):
                for key in _GROUP_LR_KEYS:
                    if isinstance(group.get(key), (int, float)):
                        group[key] = float(group[key]) * ratio
            for scheduler in self._attached_schedulers(env):
                _rescale_scheduler(scheduler, ratios)

    # -- exact schedule bases in snapshots ----------------------------------------------
    def snapshot(self, env: dict) -> dict:
        snap = super().snapshot(env)
        if self.param == "lr":
            snap["schedule"] = {
                "groups": [{k: g[k] for k in _GROUP_LR_KEYS if isinstance(g.get(k), (int, float))}
                           for g in self.optimizer.param_groups],
                "schedulers": [_schedule_bases(s) for s in self._attached_schedulers(env)],
            }
        return snap

    def restore(self, snapshot: dict, env: dict) -> Any:
        result = super().restore(snapshot, env)
        schedule = snapshot.get("schedule")
        if result.ok and schedule is not None:
            schedulers = self._attached_schedulers(env)
            for group, bases in zip(self.optimizer.param_groups, schedule["groups"]):
                group.update(bases)
            if len(schedulers) == len(schedule["schedulers"]):
                for scheduler, bases in zip(schedulers, schedule["schedulers"]):
                    _set_schedule_bases(scheduler, bases)
        return result

    def _attached_schedulers(self, env: dict) -> list[Any]:
        found = list(self.schedulers)
        extra = env.get("schedulers") or ([env["scheduler"]] if env.get("scheduler") is not None else [])
        for s in extra:
            if s not in found and getattr(s, "optimizer", None) is self.optimizer:
                found.append(s)
        return found


def _children(scheduler: Any) -> tuple:
    return tuple(getattr(scheduler, "_schedulers", ()) or ())


def _rescale_scheduler(scheduler: Any, ratios: list[float], seen: set[int] | None = None) -> None:
    """Scale a scheduler's lr bases by each group's ratio; a scalar shared by all groups
    (``eta_min``) is scaled only when every group moved by the same ratio. ``seen`` guards
    lists shared between a SequentialLR and its child (``_last_lr``) from being scaled twice."""
    seen = set() if seen is None else seen
    for child in _children(scheduler):
        _rescale_scheduler(child, ratios, seen)
    for attr in _SCHEDULER_LIST_ATTRS:
        values = getattr(scheduler, attr, None)
        if isinstance(values, list) and id(values) not in seen:
            seen.add(id(values))
            for i, ratio in enumerate(ratios[: len(values)]):
                if isinstance(values[i], (int, float)):
                    values[i] = float(values[i]) * ratio
    if all(math.isclose(r, ratios[0], rel_tol=1e-12) for r in ratios):
        for attr in _SCHEDULER_SCALAR_ATTRS:
            value = getattr(scheduler, attr, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(scheduler, attr, float(value) * ratios[0])


def _schedule_bases(scheduler: Any) -> dict:
    """The scheduler's lr bases (not its progress), children included."""
    bases: dict[str, Any] = {}
    for attr in (*_SCHEDULER_LIST_ATTRS, *_SCHEDULER_SCALAR_ATTRS):
        value = getattr(scheduler, attr, None)
        if attr != "_last_lr" and isinstance(value, (list, int, float)) and not isinstance(value, bool):
            bases[attr] = list(value) if isinstance(value, list) else value
    bases["children"] = [_schedule_bases(c) for c in _children(scheduler)]
    return bases


def _set_schedule_bases(scheduler: Any, bases: dict) -> None:
    for attr, value in bases.items():
        if attr != "children":
            setattr(scheduler, attr, list(value) if isinstance(value, list) else value)
    for child, child_bases in zip(_children(scheduler), bases.get("children", [])):
        _set_schedule_bases(child, child_bases)


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
