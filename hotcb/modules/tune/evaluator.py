"""Scoring a segment: was the metric after the mutation better than it would have been without?

``score = gain - instability_penalty``; a segment is accepted when ``score > epsilon + noise_k *
noise`` and no blocker fired. What ``gain`` is measured against is ``acceptance.baseline``:

- ``pre``: the value at the decision point (the seed's rule). Training improves the metric
  anyway, so this accepts nearly everything.
- ``trend``: a forecast of where the metric would have gone without the mutation, from the
  last ``trend_window`` unmutated intervals: the latest per-step rate, decaying from interval
  to interval as the recent rates have (see ``_trend_change``). Rates are taken in log space
  while the metric stays positive (losses decay roughly geometrically, so a linear forecast
  would soon predict values below zero). ``noise`` is the scaled median absolute deviation of
  those rates times the segment length. On the digits task this damped forecast agrees with
  the counterfactual oracle more often than the median rate it replaced
  (examples/benchmarks/decision_quality.py; figures in docs/recipe.md).
- ``control``: the drift rate measured by interleaved control segments (no mutation).

Values are oriented so that larger gain is better for both ``mode: min`` and ``mode: max``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Optional

from hotcb.modules.tune.schemas import AcceptanceSpec, Objective

MAD_TO_SIGMA = 1.4826


@dataclass
class Verdict:
    accepted: bool
    score: Optional[float]
    gain: Optional[float]
    penalty: float
    noise: float
    expected: Optional[float]
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Point:
    step: int
    value: float


class SegmentEvaluator:
    """Keeps the unmutated trajectory of the primary metric and judges segments against it."""

    def __init__(self, acceptance: AcceptanceSpec, objective: Objective):
        self.acceptance = acceptance
        self.objective = objective
        self.trajectory: list[Point] = []  # decision-point values with no mutation in between
        self.control_rates: list[float] = []

    # -- trajectory ---------------------------------------------------------------------------
    def observe(self, step: int, value: float, *, continuous: bool = True) -> None:
        """Record an unmutated point; ``continuous=False`` starts a new stretch (after a change)."""
        if not math.isfinite(value):
            return
        if not continuous:
            self.trajectory = []
        if self.trajectory and step <= self.trajectory[-1].step:
            self.trajectory[-1] = Point(step, value)
            return
        self.trajectory.append(Point(step, value))
        self.trajectory = self.trajectory[-(self.acceptance.trend_window + 1) :]

    def observe_control(self, pre: Point, post: Point) -> None:
        if post.step > pre.step and math.isfinite(pre.value) and math.isfinite(post.value):
            self.control_rates.append((post.value - pre.value) / (post.step - pre.step))
            self.control_rates = self.control_rates[-self.acceptance.trend_window :]

    def _log_space(self) -> bool:
        return all(p.value > 0 for p in self.trajectory)

    def _rates(self) -> list[float]:
        if self.acceptance.baseline == "control":
            return list(self.control_rates)
        pts = self.trajectory
        f = math.log if self._log_space() else (lambda v: v)
        return [(f(b.value) - f(a.value)) / (b.step - a.step) for a, b in zip(pts, pts[1:]) if b.step > a.step]

    def ready(self) -> bool:
        """Whether mutations may start: ``trend`` needs two unmutated intervals first;
        ``control`` measures its drift with control segments the controller interleaves."""
        if self.acceptance.baseline != "trend":
            return True
        return len(self._rates()) >= 2

    def needs_control(self) -> bool:
        return self.acceptance.baseline == "control" and not self.control_rates

    # -- judgement ----------------------------------------------------------------------------
    def forecast(self, pre: Point, post_step: int) -> tuple[float, float]:
        """(expected value at ``post_step`` without the mutation, noise scale)."""
        if self.acceptance.baseline == "pre":
            return pre.value, 0.0
        rates = self._rates()
        if not rates:
            return pre.value, 0.0
        center = statistics.median(rates)
        spread = MAD_TO_SIGMA * statistics.median([abs(r - center) for r in rates]) if len(rates) > 1 else 0.0
        span = post_step - pre.step
        if self.acceptance.baseline == "control":
            return pre.value + center * span, spread * span
        change = self._trend_change(rates, span)
        if self._log_space() and pre.value > 0:
            expected = pre.value * math.exp(change)
            return expected, expected * spread * span
        return pre.value + change, spread * span

    def _trend_change(self, rates: list[float], span: int) -> float:
        """Change over ``span`` steps if the latest rate keeps decaying as it has been.

        Training curves decelerate: each interval's rate is roughly a fixed fraction ``d`` of
        the one before. ``d`` is the median ratio of consecutive same-signed rates (clipped to
        [0, 1]); the forecast carries the latest rate on with that decay. When the rates
        change sign (a noise-dominated stretch) it falls back to their median, undamped.
        """
        pts = self.trajectory
        ratios = [b / a for a, b in zip(rates, rates[1:]) if a * b > 0]
        if not ratios:
            return statistics.median(rates) * span
        decay = min(1.0, max(0.0, statistics.median(ratios)))
        interval = max(1, pts[-1].step - pts[-2].step)
        n = span / interval  # future intervals, possibly fractional
        factor = n * decay if decay in (0.0, 1.0) else decay * (1 - decay**n) / (1 - decay)
        return rates[-1] * interval * factor

    def judge(self, pre: Point, post: Optional[Point], *, penalty: float = 0.0, blocked: str = "") -> Verdict:
        if blocked:
            return Verdict(False, None, None, penalty, 0.0, None, f"blocked: {blocked}")
        if post is None or not math.isfinite(post.value):
            return Verdict(False, None, None, penalty, 0.0, None, "metric missing, not finite or stale at the horizon: never a win")
        expected, noise = self.forecast(pre, post.step)
        sign = 1.0 if self.objective.mode == "min" else -1.0
        gain = sign * (expected - post.value)
        score = gain - penalty
        threshold = self.acceptance.epsilon + self.acceptance.noise_k * noise
        accepted = score > threshold
        reason = (
            f"score {score:.4g} {'>' if accepted else '<='} threshold {threshold:.4g}"
            f" (gain {gain:.4g} vs {self.acceptance.baseline} baseline {expected:.4g}, noise {noise:.3g})"
        )
        return Verdict(accepted, score, gain, penalty, noise, expected, reason)


def instability_penalty(pre: dict, post: dict, names: list[str], weight: float, scale: float) -> float:
    """``weight * |scale|`` per unit of relative increase of each backup metric (e.g. grad/norm)."""
    if weight <= 0:
        return 0.0
    total = 0.0
    for name in names:
        a, b = pre.get(name), post.get(name)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isfinite(a) and math.isfinite(b) and a:
            total += max(0.0, (b - a) / abs(a))
    return weight * abs(scale) * total
