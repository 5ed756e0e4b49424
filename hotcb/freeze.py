"""Kernel freeze modes: who may still change a running job.

``off``: external commands are applied. ``prod``: every external command is ignored (and
recorded as ignored) except ``freeze`` itself, so a production run cannot be steered by
accident. ``replay``: external commands are ignored too; changes come only from a replayed log.
"""

from __future__ import annotations

from enum import Enum


class FreezeMode(str, Enum):
    OFF = "off"
    PROD = "prod"
    REPLAY = "replay"

    @classmethod
    def parse(cls, value: "str | FreezeMode") -> "FreezeMode":
        try:
            return cls(value)
        except ValueError:
            accepted = ", ".join(m.value for m in cls)
            raise ValueError(f"freeze mode {value!r} is not one of: {accepted}") from None

    def admits(self, module: str) -> bool:
        """Whether an external command for ``module`` may take effect under this mode."""
        return self is FreezeMode.OFF or module == "freeze"
