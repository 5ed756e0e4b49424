"""The actuator contract: how the tuner (and live commands) touch training state.

An actuator owns one knob. It can ``snapshot`` the knob, ``validate`` a patch against hard
limits, ``apply`` it and ``restore`` a snapshot. A patch is ``{"value": v}`` (set) or
``{"mult": m}`` (scale), optionally with ``"index"`` for one element of a tuple knob.

Each built-in actuator walks a small state machine so that status can say how far it is
trusted: INIT → UNTOUCHED (bound to live state) → UNVERIFIED (changed, not yet judged) →
VERIFIED (an accepted segment kept it), or DISABLED after repeated faults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable


class ParamKind(str, Enum):
    FLOAT = "float"
    LOG_FLOAT = "log_float"
    TUPLE = "tuple"


class ActuatorState(str, Enum):
    INIT = "INIT"
    UNTOUCHED = "UNTOUCHED"
    UNVERIFIED = "UNVERIFIED"
    VERIFIED = "VERIFIED"
    DISABLED = "DISABLED"


@dataclass
class ValidationResult:
    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class ApplyResult:
    ok: bool
    detail: str = ""
    before: Any = None
    after: Any = None


@runtime_checkable
class BaseActuator(Protocol):
    """What the kernel needs from any actuator, built-in or custom."""

    name: str

    def snapshot(self, env: dict) -> dict: ...

    def validate(self, patch: dict, env: dict) -> ValidationResult: ...

    def apply(self, patch: dict, env: dict) -> ApplyResult: ...

    def restore(self, snapshot: dict, env: dict) -> ApplyResult: ...

    def describe_space(self) -> dict: ...


@dataclass
class Limits:
    """Hard limits that hold whatever a recipe or a command asks for."""

    low: float = -math.inf
    high: float = math.inf
    low_inclusive: bool = True
    high_inclusive: bool = True

    def check(self, value: float) -> str:
        if not math.isfinite(value):
            return f"{value!r} is not a finite number"
        if value < self.low or (value == self.low and not self.low_inclusive):
            return f"{value!r} is below the hard limit {'>=' if self.low_inclusive else '>'} {self.low}"
        if value > self.high or (value == self.high and not self.high_inclusive):
            return f"{value!r} is above the hard limit {'<=' if self.high_inclusive else '<'} {self.high}"
        return ""

    def describe(self) -> str:
        lo = "[" if self.low_inclusive else "("
        hi = "]" if self.high_inclusive else ")"
        return f"{lo}{self.low}, {self.high}{hi}"


def as_number(value: Any, what: str) -> float:
    """A plain float from a number-like value; strings such as "1e-4" are refused, not parsed."""
    if isinstance(value, bool) or isinstance(value, str):
        raise TypeError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, got {type(value).__name__} {value!r}") from None


@dataclass
class HotcbActuator:
    """Base for built-in actuators: patch parsing, hard limits and the state machine.

    Subclasses implement ``read(env)`` and ``write(value, env)`` over a list of per-slot values
    (one slot per optimizer param group, or a single slot).
    """

    name: str
    kind: ParamKind = ParamKind.FLOAT
    limits: Limits = field(default_factory=Limits)
    max_failures: int = 3
    state: ActuatorState = ActuatorState.INIT
    failures: int = 0
    # Values right after the last apply: a relative restore undoes the change by the same ratio,
    # so a schedule that moved the knob since then keeps its progress.
    _applied: list[Any] | None = field(default=None, repr=False)
    relative_restore: bool = False
    _ever_verified: bool = field(default=False, repr=False)

    # -- subclass hooks -------------------------------------------------------------------
    def read(self, env: dict) -> list[Any]:
        raise NotImplementedError

    def write(self, values: list[Any], env: dict) -> None:
        raise NotImplementedError

    # -- protocol ---------------------------------------------------------------------------
    def bind(self) -> None:
        if self.state is ActuatorState.INIT:
            self.state = ActuatorState.UNTOUCHED

    def snapshot(self, env: dict) -> dict:
        return {"values": list(self.read(env))}

    def current(self, env: dict | None = None) -> Any:
        values = self.read(env or {})
        return values[0] if len(values) == 1 else values

    def target_values(self, patch: dict, env: dict) -> list[Any]:
        """The per-slot values ``patch`` would produce; raises ValueError/TypeError if invalid."""
        unknown = set(patch) - {"value", "mult", "index"}
        if unknown or ("value" in patch) == ("mult" in patch):
            raise ValueError(f"a patch needs exactly one of 'value' or 'mult' (got keys {sorted(patch)})")
        current = self.read(env)
        if self.kind is ParamKind.TUPLE:
            return [self._tuple_target(v, patch) for v in current]
        if "mult" in patch:
            mult = as_number(patch["mult"], f"{self.name} multiplier")
            if not (math.isfinite(mult) and mult > 0):
                raise ValueError(f"{self.name} multiplier must be a finite number > 0, got {mult!r}")
            targets = [as_number(v, self.name) * mult for v in current]
        else:
            targets = [as_number(patch["value"], self.name)] * len(current)
        for t in targets:
            problem = self.limits.check(t)
            if problem:
                raise ValueError(f"{self.name}: {problem}")
        return targets

    def _tuple_target(self, current: tuple, patch: dict) -> tuple:
        items = list(current)
        index = patch.get("index")
        if index is None:
            new = patch.get("value")
            if not isinstance(new, (list, tuple)) or len(new) != len(items):
                raise ValueError(f"{self.name} needs a sequence of {len(items)} numbers, got {new!r}")
            items = [as_number(v, self.name) for v in new]
        else:
            if not isinstance(index, int) or not 0 <= index < len(items):
                raise ValueError(f"{self.name} index must be in [0, {len(items) - 1}], got {index!r}")
            base = as_number(items[index], self.name)
            items[index] = base * as_number(patch["mult"], self.name) if "mult" in patch else as_number(patch["value"], self.name)
        for v in items:
            problem = self.limits.check(v)
            if problem:
                raise ValueError(f"{self.name}: {problem}")
        return tuple(float(v) for v in items)

    def validate(self, patch: dict, env: dict) -> ValidationResult:
        if self.state is ActuatorState.DISABLED:
            return ValidationResult(False, f"actuator {self.name} is disabled after repeated faults")
        try:
            self.target_values(patch, env)
        except (TypeError, ValueError) as exc:
            return ValidationResult(False, str(exc))
        return ValidationResult(True)

    def apply(self, patch: dict, env: dict) -> ApplyResult:
        check = self.validate(patch, env)
        if not check:
            return ApplyResult(False, check.reason)
        before = self.read(env)
        try:
            targets = self.target_values(patch, env)
            self.write(targets, env)
        except Exception as exc:  # noqa: BLE001 - a faulty knob must not stop training
            self._fault()
            return ApplyResult(False, f"{type(exc).__name__}: {exc}", before=before)
        self.state = ActuatorState.UNVERIFIED
        self._applied = list(targets)
        return ApplyResult(True, before=before, after=targets)

    def restore(self, snapshot: dict, env: dict) -> ApplyResult:
        before = self.read(env)
        targets = list(snapshot["values"])
        if self.relative_restore and self._applied is not None and len(self._applied) == len(targets):
            targets = [c * s / a if a else s for c, s, a in zip(before, targets, self._applied)]
        try:
            self.write(targets, env)
        except Exception as exc:  # noqa: BLE001
            self._fault()
            return ApplyResult(False, f"{type(exc).__name__}: {exc}", before=before)
        self.reverted()
        return ApplyResult(True, before=before, after=targets)

    def reverted(self) -> None:
        """The last change was undone (by ``restore`` or a training-state rollback)."""
        self._applied = None
        if self.state is ActuatorState.UNVERIFIED:
            self.state = ActuatorState.VERIFIED if self._ever_verified else ActuatorState.UNTOUCHED

    def mark_verified(self) -> None:
        """The change lived through an evaluated segment without a fault."""
        if self.state is ActuatorState.UNVERIFIED:
            self.state = ActuatorState.VERIFIED
            self._ever_verified = True

    def _fault(self) -> None:
        self.failures += 1
        if self.failures >= self.max_failures:
            self.state = ActuatorState.DISABLED

    def describe_space(self) -> dict:
        return {"name": self.name, "kind": self.kind.value, "limits": self.limits.describe(), "state": self.state.value}

