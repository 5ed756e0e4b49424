"""Actuators: the bridge between the tuner (or a live command) and live training state."""

from hotcb.actuators.base import (
    ActuatorState,
    ApplyResult,
    BaseActuator,
    HotcbActuator,
    Limits,
    ParamKind,
    ValidationResult,
)
from hotcb.actuators.loss import LossWeightActuator, loss_actuators
from hotcb.actuators.mutable_state import MutableState, mutable_state
from hotcb.actuators.optimizer import OptimizerActuator, optimizer_actuators

__all__ = [
    "ActuatorState",
    "ApplyResult",
    "BaseActuator",
    "HotcbActuator",
    "Limits",
    "LossWeightActuator",
    "MutableState",
    "OptimizerActuator",
    "ParamKind",
    "ValidationResult",
    "loss_actuators",
    "mutable_state",
    "optimizer_actuators",
]
