"""TuneRecipe: the validated form of a tune recipe (search space, objective, safety).

The seed's YAML schema is accepted unchanged. Validation is strict: unknown keys, a string
where a number belongs, reversed bounds, a mode other than min/max or a risk class other than
low/medium fail with a message naming the dotted field (see :mod:`hotcb.config_errors`).
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hotcb.config_errors import ConfigError, problems_from_pydantic

Number = float
_HORIZON = re.compile(r"^(next_val_epoch_end|val_epochs:[1-9][0-9]*|steps:[1-9][0-9]*)$")
# Optimizer mutation names the opt group understands without an explicit ``param``.
OPT_ALIASES = {"lr": "lr", "wd": "weight_decay", "weight_decay": "weight_decay"}
BETA_INDEX = {"beta1": 0, "beta2": 1}


class _Strict(BaseModel):
    # No NaN or infinity: an infinite epsilon or limit would quietly switch a check off.
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, allow_inf_nan=False)


class Objective(_Strict):
    primary: str = Field(default="val/loss", min_length=1)
    mode: Literal["min", "max"] = "min"
    backup_metrics: list[str] = Field(default_factory=list)


class Phase(_Strict):
    start_frac: Number = Field(ge=0.0, le=1.0)
    end_frac: Number = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> "Phase":
        if self.start_frac >= self.end_frac:
            raise ValueError(f"start_frac {self.start_frac} must be < end_frac {self.end_frac}")
        return self


class MutationSpec(_Strict):
    """One mutation family: which knob, how it moves (``mult`` or ``set``), within which bounds."""

    bounds: list[Number]
    mode: Optional[Literal["mult", "set"]] = None
    prior_center: Optional[Number] = None
    cooldown: int = Field(default=0, ge=0)
    risk: Literal["low", "medium"] = "low"
    enabled: bool = True
    param: Optional[str] = None
    actuator: Optional[str] = None
    # Absolute [lower, upper] for the knob's value: a mutation that would leave it is not applied.
    range: Optional[list[Number]] = None

    @field_validator("bounds", "range")
    @classmethod
    def _bounds(cls, v: Optional[list[float]]) -> Optional[list[float]]:
        if v is None:
            return v
        if len(v) != 2:
            raise ValueError(f"must be [lower, upper], got {len(v)} values")
        lo, hi = v
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("must be finite numbers")
        if lo > hi:
            raise ValueError(f"lower bound {lo} > upper bound {hi}")
        if lo == hi:
            raise ValueError(f"[{lo}, {hi}] leaves nothing to search")
        return [float(lo), float(hi)]

    @model_validator(mode="after")
    def _center(self) -> "MutationSpec":
        lo, hi = self.bounds
        if self.prior_center is not None and not lo <= self.prior_center <= hi:
            raise ValueError(f"prior_center {self.prior_center} lies outside bounds [{lo}, {hi}]")
        if self.mode == "mult" and lo <= 0:
            raise ValueError(f"a multiplicative mutation needs bounds > 0, got lower bound {lo}")
        return self


class ActuatorGroup(_Strict):
    enabled: bool = True
    mutations: dict[str, MutationSpec] = Field(default_factory=dict)
    keys: dict[str, MutationSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _multiplicative_bounds(self) -> "ActuatorGroup":
        for name, spec in self.mutations.items():
            if spec.mode is None and name.endswith("_mult") and spec.bounds[0] <= 0:
                raise ValueError(f"mutations.{name}: a multiplicative mutation needs bounds > 0, got lower bound {spec.bounds[0]}")
        return self


class SearchSpec(_Strict):
    algorithm: Literal["tpe", "random", "cmaes", "gp", "qmc"] = "tpe"
    startup_trials: int = Field(default=8, ge=0)
    seed: Optional[int] = Field(default=None, ge=0, le=2**32 - 1)  # numpy's range, which samplers seed
    phase_conditioned: bool = False
    storage: Literal["sqlite", "journal", "memory"] = "sqlite"
    warm_start: list[str] = Field(default_factory=list)
    # A Hydra ``_target_`` spec for the Optuna sampler; overrides ``algorithm`` when given.
    sampler: Optional[dict[str, Any]] = None


class AcceptanceSpec(_Strict):
    epsilon: Number = Field(default=0.0, ge=0.0)
    horizon: str = "next_val_epoch_end"
    rollback_on_reject: bool = True
    baseline: Literal["pre", "trend", "control"] = "trend"
    rollback: Literal["params", "state"] = "state"
    noise_k: Number = Field(default=1.0, ge=0.0)
    trend_window: int = Field(default=3, ge=2)
    instability_weight: Number = Field(default=0.0, ge=0.0)
    snapshot_dir: Optional[str] = None

    @field_validator("horizon")
    @classmethod
    def _horizon(cls, v: str) -> str:
        if not _HORIZON.match(v):
            raise ValueError("horizon must be next_val_epoch_end, val_epochs:N or steps:N (N >= 1)")
        return v

    def horizon_parts(self) -> tuple[str, int]:
        """('val_epochs', n) or ('steps', n)."""
        if self.horizon == "next_val_epoch_end":
            return "val_epochs", 1
        kind, n = self.horizon.split(":")
        return kind, int(n)


class SafetySpec(_Strict):
    block_on_nan: bool = True
    block_on_anomaly: bool = True
    max_global_reject_streak: int = Field(default=4, ge=1)
    # A reject-streak pause lifts itself after this many decision points (null: only
    # `hotcb tune enable` lifts it). A pause for good left most runs untuned after an early
    # unlucky streak; a timed pause still stops thrashing.
    pause_decisions: Optional[int] = Field(default=5, ge=1)
    grad_spike_factor: Optional[Number] = Field(default=10.0, gt=1.0)
    grad_spike_window: int = Field(default=50, ge=5)
    global_cooldown: int = Field(default=0, ge=0)
    max_step_mult: Optional[Number] = Field(default=None, gt=1.0)
    # A multiplicative walk stays within [v0 / max_total_mult, v0 * max_total_mult], v0 being
    # the knob's value when the tuner first touched it (a family's ``range`` is checked too).
    max_total_mult: Optional[Number] = Field(default=100.0, gt=1.0)


def _default_phases() -> dict[str, Phase]:
    return {
        "early": Phase(start_frac=0.0, end_frac=0.2),
        "mid": Phase(start_frac=0.2, end_frac=0.7),
        "late": Phase(start_frac=0.7, end_frac=1.0),
    }


class Family(BaseModel):
    """A resolved mutation family: ``group.name`` → one actuator and how to patch it."""

    model_config = ConfigDict(frozen=True)

    name: str
    actuator: str
    mode: Literal["mult", "set"]
    index: Optional[int] = None
    spec: MutationSpec

    @property
    def log_scale(self) -> bool:
        return self.mode == "mult"

    def patch(self, value: float) -> dict:
        patch: dict[str, Any] = {"mult" if self.mode == "mult" else "value": float(value)}
        if self.index is not None:
            patch["index"] = self.index
        return patch


class TuneRecipe(_Strict):
    version: Literal[1] = 1
    objective: Objective = Field(default_factory=Objective)
    phases: dict[str, Phase] = Field(default_factory=_default_phases)
    actuators: dict[str, ActuatorGroup] = Field(default_factory=dict)
    search: SearchSpec = Field(default_factory=SearchSpec)
    acceptance: AcceptanceSpec = Field(default_factory=AcceptanceSpec)
    safety: SafetySpec = Field(default_factory=SafetySpec)

    @classmethod
    def from_dict(cls, data: Any, source: str = "recipe") -> "TuneRecipe":
        """Validate plain data (e.g. loaded YAML); raises ConfigError naming each bad field."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError([f"{source}: a recipe must be a mapping, got {type(data).__name__}"], source)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(problems_from_pydantic(exc, prefix=source, model=cls), source) from None

    def to_dict(self) -> dict:
        return self.model_dump(mode="json", exclude_none=True)

    def families(self, *, include_disabled: bool = False) -> list[Family]:
        """Every enabled mutation family (or every one), in recipe order."""
        out = []
        for group_name, group in self.actuators.items():
            if not (group.enabled or include_disabled):
                continue
            for name, spec in {**group.mutations, **group.keys}.items():
                if spec.enabled or include_disabled:
                    out.append(_resolve(group_name, name, spec, is_key=name in group.keys))
        return out

    def phase_at(self, frac: float) -> str:
        """Name of the phase holding ``frac`` of training (the last phase holds 1.0)."""
        names = list(self.phases)
        for name in names:
            p = self.phases[name]
            if p.start_frac <= frac < p.end_frac:
                return name
        return names[-1] if names else "all"


def _resolve(group: str, name: str, spec: MutationSpec, *, is_key: bool) -> Family:
    index = None
    if spec.param:
        param = spec.param
    elif is_key:
        param = name
    elif name in BETA_INDEX:
        param, index = "betas", BETA_INDEX[name]
    elif name.endswith("_mult"):
        param = OPT_ALIASES.get(name[: -len("_mult")], name[: -len("_mult")])
    else:
        param = OPT_ALIASES.get(name, name)
    mode = spec.mode or ("mult" if name.endswith("_mult") else "set")
    actuator = spec.actuator or f"{group}.{param}"
    return Family(name=f"{group}.{name}", actuator=actuator, mode=mode, index=index, spec=spec)


def set_dotted(data: dict, dotted: str, value: Any) -> dict:
    """A copy of ``data`` with ``dotted`` (e.g. ``acceptance.epsilon``) set to ``value``."""
    import copy

    out = copy.deepcopy(data)
    keys = dotted.split(".")
    node = out
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value
    return out
