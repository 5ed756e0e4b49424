"""Loss-weight actuators: one knob per key of a mapping that the training step reads."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from hotcb.actuators.base import HotcbActuator, Limits, ParamKind


@dataclass
class LossWeightActuator(HotcbActuator):
    """``weights[key]``; the loss must read the mapping at every step for changes to count."""

    weights: MutableMapping = field(default_factory=dict)
    key: str = ""

    def __post_init__(self) -> None:
        self.bind()

    def read(self, env: dict) -> list[Any]:
        return [float(self.weights[self.key])]

    def write(self, values: list[Any], env: dict) -> None:
        self.weights[self.key] = float(values[0])


def loss_actuators(weights: MutableMapping, *, prefix: str = "loss") -> list[LossWeightActuator]:
    """One actuator per key; weights stay in [0, 1e6] (a weight near the float limit overflows
    the loss, and the model's weights with it, for good)."""
    return [
        LossWeightActuator(
            name=f"{prefix}.{key}", kind=ParamKind.FLOAT, limits=Limits(0.0, 1e6), weights=weights, key=str(key)
        )
        for key in weights
    ]
