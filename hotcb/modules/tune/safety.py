"""Safety: what cuts a segment short, and how far a proposal may move a knob.

Blockers (a non-finite loss, an anomaly flag, a grad-norm spike) reject the running segment at
once and hold off the next proposal. Limits keep a proposal inside ``safety.max_step_mult``
(one step), the family's ``range`` (absolute values) and ``safety.max_total_mult`` of the
knob's *origin*, its value when the tuner first touched it, so that a walk of accepted steps
cannot drift without bound. Both read the recipe's ``safety`` section at each call:
``tune set safety.*`` takes effect at once.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Any, Optional

from hotcb.modules.tune.schemas import Family, SafetySpec


class GradNormWatch:
    """Blockers seen in one train step; keeps the recent grad norms a spike is measured against."""

    def __init__(self) -> None:
        self.grad_norms: list[float] = []

    def blocker(self, env: dict, safety: SafetySpec) -> str:
        """Why this step blocks tuning, or "" when it does not."""
        if safety.block_on_nan:
            loss = env.get("loss")
            if loss is not None:
                try:
                    value = float(loss.detach() if hasattr(loss, "detach") else loss)
                except (TypeError, ValueError):
                    value = 0.0
                if not math.isfinite(value):
                    return f"non-finite loss {value!r}"
        if safety.block_on_anomaly and env.get("anomaly"):
            return f"anomaly flag: {env.get('anomaly')!r}"
        if safety.grad_spike_factor is not None:
            norm = env.get("grad_norm")
            if norm is not None:
                norm = float(norm)
                if not math.isfinite(norm):
                    return f"non-finite grad norm {norm!r}"
                history = self.grad_norms
                if len(history) >= 5 and norm > safety.grad_spike_factor * statistics.median(history):
                    return f"grad-norm spike {norm:.4g} > {safety.grad_spike_factor} x median {statistics.median(history):.4g}"
                history.append(norm)
                del history[: -safety.grad_spike_window]
        return ""


def _scalars(family: Family, values: list) -> list[float]:
    """The family's numbers among an actuator's per-slot values: one element of a tuple knob
    (betas) when the family names an index."""
    if family.index is not None:
        values = [v[family.index] for v in values if isinstance(v, tuple)]
    return [float(v) for v in values if isinstance(v, (int, float))]


def origin_of(family: Family, actuator: Any, env: dict) -> list[float]:
    """The knob's values now: what ``max_total_mult`` is measured from once the tuner touches it."""
    return _scalars(family, actuator.snapshot(env).get("values", []))


def step_problem(safety: SafetySpec, family: Family, value: float) -> str:
    """Why one multiplicative step is too large for ``max_step_mult``, or ""."""
    limit = safety.max_step_mult
    if limit is None or family.mode != "mult":
        return ""
    if value > limit or value < 1.0 / limit:
        return f"multiplier {value:.4g} exceeds safety.max_step_mult {limit} (either way)"
    return ""


def walk_problem(safety: SafetySpec, family: Family, actuator: Any, patch: dict, env: dict, origin: list[float]) -> str:
    """Why ``patch`` would take the knob outside the family's ``range`` or ``max_total_mult``
    of ``origin``, or ""."""
    targets_of = getattr(actuator, "target_values", None)
    if targets_of is None:
        return ""
    try:
        targets = _scalars(family, targets_of(patch, env))
    except (TypeError, ValueError, IndexError):
        return ""  # the actuator's validate() reports it
    if family.spec.range is not None:
        lo, hi = family.spec.range
        outside = [t for t in targets if not lo <= t <= hi]
        if outside:
            return f"value {outside[0]:.4g} would leave {family.name} range [{lo}, {hi}]"
    limit = safety.max_total_mult
    if limit is not None and family.mode == "mult":
        for t, v0 in zip(targets, origin):
            if v0 > 0 and not v0 / limit <= t <= v0 * limit:
                return f"value {t:.4g} would drift more than safety.max_total_mult={limit} from {v0:.4g}"
    return ""


def allowed_value(safety: SafetySpec, family: Family, actuator: Any, env: dict, origin: list[float],
                  rng: random.Random) -> Optional[float]:
    """A value of ``family`` drawn (log-)uniformly from the part of its bounds that the limits
    allow now; None when too little is left to be worth a trial."""
    lo, hi = family.spec.bounds
    if family.mode == "mult":
        if safety.max_step_mult is not None:
            lo, hi = max(lo, 1.0 / safety.max_step_mult), min(hi, safety.max_step_mult)
        limit = safety.max_total_mult
        for c, v0 in zip(origin_of(family, actuator, env), origin):
            if c > 0 and v0 > 0 and limit is not None:
                lo, hi = max(lo, v0 / limit / c), min(hi, v0 * limit / c)
            if c > 0 and family.spec.range is not None:
                lo, hi = max(lo, family.spec.range[0] / c), min(hi, family.spec.range[1] / c)
        if not (lo > 0 and hi > lo * 1.01):
            return None
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if family.spec.range is not None:
        lo, hi = max(lo, family.spec.range[0]), min(hi, family.spec.range[1])
    return rng.uniform(lo, hi) if hi > lo else None
