"""The offline alternative: an Optuna TPE sweep of N full runs over the tuned knob.

Each trial trains the task from scratch with one constant knob value drawn from ``task.space``
and is scored by its final val/loss; the sweep reports its best run. TPE starts modelling after
4 random trials (Optuna's default of 10 would leave an 8-trial sweep purely random).
"""

from __future__ import annotations

import optuna

from examples.benchmarks.run import METHODS, RunResult, run
from examples.benchmarks.tasks import Task


def sweep(task: Task, seed: int, trials: int = 8) -> tuple[RunResult, float]:
    """(the best trial's run, its knob value)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4))
    runs: dict[int, RunResult] = {}

    def objective(trial: optuna.Trial) -> float:
        lo, hi = task.space
        value = trial.suggest_float(task.knob, lo, hi, log=task.log_space)
        runs[trial.number] = run(task, seed, METHODS["constant"], knob=value, decision_quality=False)
        return runs[trial.number].final_loss

    study.optimize(objective, n_trials=trials)
    best = study.best_trial
    return runs[best.number], best.params[task.knob]
