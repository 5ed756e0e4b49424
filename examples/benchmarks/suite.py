"""Run every method on every task over several seeds and reduce the runs to the reported measures."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from examples.benchmarks.counterfactual import summarize
from examples.benchmarks.run import METHODS, RunResult, run
from examples.benchmarks.sweep import sweep
from examples.benchmarks.tasks import Task

SWEEP = "sweep"
ORDER = ["constant", "plateau", SWEEP, "hottune-seed", "hottune", "oracle"]


@dataclass
class TaskResults:
    task: Task
    runs: dict = field(default_factory=dict)  # method key -> [RunResult per seed]
    sweep_knobs: list = field(default_factory=list)
    trials: int = 0
    seconds: float = 0.0

    def methods(self) -> list[str]:
        return [m for m in ORDER if m in self.runs]


_SWEEPS: dict = {}  # (family, seed, trials, steps) -> the sweep's best run and knob


def run_task(task: Task, seeds: list[int], trials: int, progress: Callable[[str], None] = print) -> TaskResults:
    out = TaskResults(task, trials=trials)
    started = time.perf_counter()
    for seed in seeds:
        key = (task.family or task.name, seed, trials, task.max_steps)
        if key not in _SWEEPS:  # a sweep does not depend on the starting recipe
            _SWEEPS[key] = sweep(task, seed, trials)
        best, knob = _SWEEPS[key]
        out.runs.setdefault(SWEEP, []).append(best)
        out.sweep_knobs.append(knob)
        keys = ["constant", "plateau", "hottune-seed", "hottune"] + (["oracle"] if task.oracle else [])
        for key in keys:
            out.runs.setdefault(key, []).append(run(task, seed, METHODS[key]))
        progress(f"  {task.name} seed {seed}: " + ", ".join(
            f"{k}={out.runs[k][-1].final_loss:.4g}" for k in out.methods()))
    out.seconds = time.perf_counter() - started
    return out


# -- measures --------------------------------------------------------------------------------------
def mean_sd(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class Row:
    method: str
    compute: float  # multiples of one run's max_steps
    loss: tuple[float, float]
    acc: tuple[float, float] | None
    steps_to_sweep: tuple[float, int, int]  # (mean steps where reached, reached, seeds)
    gap_closed: float
    diverged: int
    final_knob: tuple[float, float]
    regret: tuple[float, float] | None = None
    quality: dict | None = None


def rows(res: TaskResults) -> list[Row]:
    task = res.task
    targets = [r.final_loss for r in res.runs[SWEEP]]
    const = statistics.fmean(r.final_loss for r in res.runs["constant"])
    best = statistics.fmean(targets)
    oracle = res.runs.get("oracle")
    out = []
    for key in res.methods():
        runs: list[RunResult] = res.runs[key]
        compute = statistics.fmean(r.steps for r in runs) / task.max_steps
        reached = [r.steps_to(t) for r, t in zip(runs, targets)]
        if key == SWEEP:  # a sweep knows its best only after all its other trials have run
            compute *= res.trials
            others = (res.trials - 1) * task.max_steps
            reached = [None if s is None else s + others for s in reached]
        got = [s for s in reached if s is not None]
        mean_loss = statistics.fmean(r.final_loss for r in runs)
        decisions = [d for r in runs for d in r.decisions]
        out.append(Row(
            method=METHODS[key].name if key in METHODS else f"Optuna TPE sweep, best of {res.trials}",
            compute=compute,
            loss=mean_sd([r.final_loss for r in runs]),
            acc=mean_sd([r.final.get("val/acc") for r in runs]) if task.has_accuracy else None,
            steps_to_sweep=(statistics.fmean(got) if got else math.nan, len(got), len(runs)),
            gap_closed=(const - mean_loss) / (const - best) if const != best else math.nan,
            diverged=sum(r.diverged for r in runs),
            final_knob=mean_sd([r.curve[-1][2] if r.curve else math.nan for r in runs]),
            regret=mean_sd([r.final_loss - o.final_loss for r, o in zip(runs, oracle)]) if oracle else None,
            quality={**summarize(decisions), "paused": sum(r.paused for r in runs), "runs": len(runs)} if METHODS.get(key, METHODS["constant"]).kind == "hottune" else None,
        ))
    return out
