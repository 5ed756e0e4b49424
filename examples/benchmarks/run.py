"""One training run of one task under one method, in a bare PyTorch loop.

hottune runs use the real library exactly as the seed's bare-PyTorch pattern does: a
``HotKernel`` over the problem's optimizer / loss-weight actuators, ``kernel.apply`` after every
train step and at every validation, with ``env`` holding the step, epoch, max_steps, metric
accessor, model, optimizer and loss. The harness reads what the tuner did only from its public
artifacts (``hotcb.tune.mutations.jsonl``, ``hotcb.tune.segments.jsonl``).

With ``acceptance.rollback: state`` a rejected segment rewinds the weights, and the task's clock
(which batch comes next, where a schedule stands) rewinds with them, as if the data loader's
position were part of the snapshot. The loop keeps going until it has made ``max_steps`` steps
of *kept* progress, so the real compute (all steps taken, rolled-back ones included) is
reported, not assumed.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from examples.benchmarks.counterfactual import other_branch
from examples.benchmarks.tasks import Task

SEED_RECIPE = {"baseline": "pre", "rollback": "params"}  # the seed's semantics
DEFAULT_RECIPE: dict = {}  # the library defaults (baseline trend, rollback state)


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # constant | plateau | oracle | hottune
    acceptance: dict | None = None  # hottune only: overrides of the recipe's acceptance section


METHODS = {
    "constant": Method("constant", "constant"),
    "plateau": Method("plateau", "plateau"),
    "oracle": Method("oracle schedule", "oracle"),
    "hottune-seed": Method("hottune seed (pre/params)", "hottune", SEED_RECIPE),
    "hottune": Method("hottune default (trend/state)", "hottune", DEFAULT_RECIPE),
}


@dataclass
class RunResult:
    final: dict  # the last validation metrics
    curve: list = field(default_factory=list)  # (steps taken, val/loss, knob value) per validation
    steps: int = 0  # real compute in train steps, rolled-back ones included
    decisions: list = field(default_factory=list)  # Branches per judged hottune segment
    accepted: int = 0
    rejected: int = 0
    paused: bool = False  # the tuner ended the run paused (safety.max_global_reject_streak)
    diverged: bool = False

    @property
    def final_loss(self) -> float:
        return self.final["val/loss"]

    def steps_to(self, target: float) -> int | None:
        """Steps taken until val/loss first reached ``target`` (None if never)."""
        return next((s for s, loss, _ in self.curve if loss <= target), None)


def recipe_for(task: Task, seed: int, acceptance: dict, storage: str = "memory") -> dict:
    """The benchmark recipe. Quality runs keep the Optuna study in memory (proposals are the same
    as with the default sqlite file, only faster); the overhead figures use sqlite."""
    return {
        "version": 1,
        "objective": {"primary": "val/loss", "mode": "min"},
        "actuators": copy.deepcopy(task.recipe_actuators),
        "search": {"algorithm": "tpe", "startup_trials": 4, "seed": seed, "storage": storage},
        "acceptance": dict(acceptance),
    }


def knob_value(task: Task, problem) -> float:
    return problem.weights["aux"] if task.knob == "aux" else problem.lr


def run(task: Task, seed: int, method: Method, knob: float | None = None,
        decision_quality: bool = True, run_dir: str | None = None) -> RunResult:
    """Train ``task`` once; ``knob`` overrides the starting value (the sweep uses it)."""
    torch.set_num_threads(1)
    problem = task.build(seed, task.start if knob is None else knob)
    initial = problem.evaluate(0)["val/loss"]
    if method.kind == "hottune":
        with tempfile.TemporaryDirectory(prefix="hotcb-bench-") as tmp:
            return _train(task, seed, method, problem, initial, Path(run_dir or tmp), decision_quality)
    return _train(task, seed, method, problem, initial, None, False)


def _train(task, seed, method, problem, initial, run_dir, decision_quality) -> RunResult:
    from hotcb import HotKernel
    from hotcb.actuators import MutableState
    from hotcb.adapters.torch import metric_accessor

    metrics: dict = {}
    accessor = metric_accessor(metrics)
    kernel = None
    if method.kind == "hottune":
        kernel = HotKernel(run_dir, mutable_state=MutableState(problem.actuators()), tune_mode="active",
                           recipe=recipe_for(task, seed, method.acceptance))
    plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(problem.optimizer, factor=0.5, patience=2)
               if method.kind == "plateau" else None)
    log = _ArtifactLog(run_dir) if kernel is not None else None
    result = RunResult(final={})
    pending: dict = {}  # mutation id -> Branches waiting for the tuner's verdict
    step = rewound = 0
    segment_open = False
    epoch_len = max(1, task.eval_every)

    def env(loss=None) -> dict:
        return {"step": step, "epoch": (step - rewound) // epoch_len, "max_steps": task.max_steps,
                "metric": accessor, "model": problem.model, "optimizer": problem.optimizer, "loss": loss}

    def absorb_verdicts() -> None:
        """Count the tuner's new verdicts; a state rollback rewinds the task's clock too."""
        nonlocal rewound, segment_open
        for seg in log.new_segments():
            segment_open = False
            if seg.get("rollback") == "state":
                rewound += int(seg["end_step"]) - int(seg["start_step"])
            accepted = seg["decision"] == "accept"
            result.accepted += accepted
            result.rejected += not accepted
            branches = pending.pop(seg["mutation_id"], None)
            if branches is not None:
                branches.judged(accepted, seg.get("post", {}).get("val/loss"))
                result.decisions.append(branches)

    while step - rewound < task.max_steps:
        step += 1
        kept = step - rewound  # the task's clock: data and schedules rewind with the weights
        if method.kind == "oracle":
            for group in problem.optimizer.param_groups:
                group["lr"] = task.oracle(kept, task.max_steps)
        loss = problem.train_step(kept)
        metrics["train/loss"] = loss
        if kernel is not None:
            kernel.apply(env=env(loss), events=["train_batch_end"])
            if segment_open:  # a blocker (non-finite loss, grad spike) may have closed it early
                absorb_verdicts()
                kept = step - rewound
        if kept % task.eval_every and kept < task.max_steps:
            continue
        values = problem.evaluate(kept)
        metrics.update(values)
        if not math.isfinite(values["val/loss"]):
            result.diverged = True
        if plateau is not None:
            plateau.step(values["val/loss"])
        if kernel is not None:
            kernel.apply(env=env(loss), events=["val_epoch_end"])
            absorb_verdicts()
            kept = step - rewound  # a state rollback just now puts the next branch back in time
            for mutation in log.new_applied():
                segment_open = True
                if decision_quality and kept + task.eval_every <= task.max_steps:
                    pending[mutation["id"]] = other_branch(problem, task, kept, mutation)
        result.curve.append((step, values["val/loss"], knob_value(task, problem)))
    if kernel is not None:
        kernel.close(env=env())
        result.paused = bool(json.loads((run_dir / "hotcb.tune.summary.json").read_text()).get("paused"))
    result.steps = step
    final = problem.evaluate(step - rewound)
    if not all(math.isfinite(v) for v in final.values()):
        result.diverged = True
        final = {k: (initial if k == "val/loss" else 0.0) for k in final}  # diverged: no progress
    result.final = final
    return result


class _ArtifactLog:
    """Reads new lines of the tuner's JSONL artifacts between decisions."""

    def __init__(self, run_dir: Path):
        self.segments = _Tail(run_dir / "hotcb.tune.segments.jsonl")
        self.mutations = _Tail(run_dir / "hotcb.tune.mutations.jsonl")

    def new_segments(self) -> list[dict]:
        return [r for r in self.segments.read() if r.get("decision") in ("accept", "reject")]

    def new_applied(self) -> list[dict]:
        return [r for r in self.mutations.read() if r.get("status") == "applied"]


class _Tail:
    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        return [json.loads(line) for line in data[:end].splitlines() if line.strip()]
