"""Decision quality: was the tuner's accept/reject the right call at its own horizon?

At each applied mutation the harness copies the run (the copy sees the same batches, since a
task's data depends only on the step), undoes the change in the copy and trains it to the
segment's horizon: that is the branch the tuner did not take. When the tuner's verdict arrives,
the oracle says "accept" iff the mutated branch ended with a lower val/loss than the unmutated
one. The mutated value is the segment's own ``post`` metric; when a blocker closed the segment
early (no ``post``), a copy kept at the decision point is trained to the horizon instead.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Branches:
    mutation_id: str
    step: int
    without: float  # val/loss at the horizon with the change undone
    _mutated: Any = None  # a copy of the run right after the change, for blocked segments
    _horizon: int = 0
    with_change: float | None = None
    accepted: bool | None = None

    def judged(self, accepted: bool, post: float | None) -> None:
        self.accepted = accepted
        if post is None or not math.isfinite(post):
            post = _train_to(self._mutated, self.step, self._horizon)
        self.with_change = post
        self._mutated = None

    @property
    def oracle_accept(self) -> bool:
        return math.isfinite(self.with_change) and self.with_change < self.without


def other_branch(problem: Any, task: Any, step: int, mutation: dict) -> Branches:
    """Train the unmutated copy of ``problem`` from ``step`` to the horizon (``task.eval_every``)."""
    mutated = copy.deepcopy(problem)
    unmutated = copy.deepcopy(problem)
    _undo(unmutated, mutation)
    without = _train_to(unmutated, step, task.eval_every)
    return Branches(mutation["id"], step, without, _mutated=mutated, _horizon=task.eval_every)


def _undo(problem: Any, mutation: dict) -> None:
    before = mutation["before"]
    group, _, key = mutation["actuator"].partition(".")
    if group == "loss":
        problem.weights[key] = float(before[0])
    else:
        for param_group, value in zip(problem.optimizer.param_groups, before):
            param_group[key] = value


def _train_to(problem: Any, step: int, horizon: int) -> float:
    for s in range(step + 1, step + horizon + 1):
        problem.train_step(s)
    value = problem.evaluate(step + horizon)["val/loss"]
    return value if math.isfinite(value) else math.inf


def summarize(decisions: list[Branches]) -> dict:
    """Accept precision and agreement with the oracle over judged decisions."""
    judged = [d for d in decisions if d.accepted is not None]
    accepted = [d for d in judged if d.accepted]
    return {
        "decisions": len(judged),
        "accepted": len(accepted),
        "oracle_accepts": sum(d.oracle_accept for d in judged),
        "precision": sum(d.oracle_accept for d in accepted) / len(accepted) if accepted else None,
        "agreement": sum(d.accepted == d.oracle_accept for d in judged) / len(judged) if judged else None,
    }
