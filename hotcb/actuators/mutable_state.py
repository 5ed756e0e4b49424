"""MutableState: the named set of actuators a kernel may touch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from hotcb.actuators.base import BaseActuator


class MutableState:
    """A registry of actuators by name. Names are unique; registering a name twice is an error."""

    def __init__(self, actuators: Iterable[BaseActuator] = ()):
        self._actuators: dict[str, BaseActuator] = {}
        for actuator in actuators:
            self.register(actuator)

    def register(self, actuator: BaseActuator, name: str | None = None, *, replace: bool = False) -> None:
        key = name or actuator.name
        if key in self._actuators and not replace:
            raise ValueError(f"an actuator named {key!r} is already registered")
        if not isinstance(actuator, BaseActuator):
            missing = [m for m in ("snapshot", "validate", "apply", "restore", "describe_space") if not hasattr(actuator, m)]
            raise TypeError(f"actuator {key!r} does not implement BaseActuator (missing: {', '.join(missing) or 'name'})")
        self._actuators[key] = actuator

    def get(self, name: str) -> BaseActuator | None:
        return self._actuators.get(name)

    def __getitem__(self, name: str) -> BaseActuator:
        return self._actuators[name]

    def __contains__(self, name: object) -> bool:
        return name in self._actuators

    def __iter__(self) -> Iterator[str]:
        return iter(self._actuators)

    def __len__(self) -> int:
        return len(self._actuators)

    def items(self):
        return self._actuators.items()

    def has_prefix(self, prefix: str) -> bool:
        return any(n.startswith(prefix + ".") for n in self._actuators)


def mutable_state(actuators: Iterable[BaseActuator] = ()) -> MutableState:
    return MutableState(actuators)
