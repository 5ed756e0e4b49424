"""A bare training loop with a synthetic objective that drives a real HotKernel.

The kernel, controller, actuators and Optuna studies are the real ones; only the training is
synthetic, so that a search test runs in a second. The loss is a stationary function of the
learning rate, ``5 - 0.1 * ln(lr / 0.1)`` plus a little noise, and the recipe's baseline is
``pre``, so a segment's score is about ``0.1 * ln(lr_mult)``: a higher lr_mult always wins,
and a multiplier below 1 is rejected and rolled back.
Also holds the checks that the search tests share.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from hotcb import HotKernel
from hotcb.actuators import mutable_state, optimizer_actuators
from hotcb.ledger import read_jsonl

BASE_LR = 0.1
RECIPE: dict = {
    "objective": {"primary": "val/loss", "mode": "min"},
    "actuators": {"opt": {"mutations": {"lr_mult": {"bounds": [0.5, 2.0], "cooldown": 0}}}},
    "search": {"algorithm": "tpe", "startup_trials": 3, "seed": 0},
    "acceptance": {"baseline": "pre", "rollback": "params", "epsilon": 0.0},
    "safety": {"max_global_reject_streak": 1000, "grad_spike_factor": None},
}


def recipe(**search: Any) -> dict:
    """RECIPE with ``search`` fields replaced."""
    out = copy.deepcopy(RECIPE)
    out["search"].update(search)
    return out


@dataclass
class Loop:
    kernel: HotKernel
    optimizer: Any
    lrs: list = field(default_factory=list)  # lr in force at each train step


def run_loop(run_dir: str | Path, tune_recipe: Optional[dict] = None, *, mode: str = "active", epochs: int = 16,
             steps_per_epoch: int = 4, state: Optional[dict] = None, register: bool = True,
             stop: Optional[Callable[[HotKernel, int], bool]] = None, seed: int = 0, **kernel_args: Any) -> Loop:
    """Train ``epochs`` synthetic epochs under a fresh kernel (restored from ``state`` if given).

    ``stop(kernel, epoch)`` returning True ends the loop at once without closing the kernel,
    as a killed process would."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=BASE_LR)
    actuators = mutable_state(optimizer_actuators(optimizer) if register else [])
    kernel = HotKernel(run_dir, recipe=tune_recipe or RECIPE, mutable_state=actuators, tune_mode=mode, **kernel_args)
    start_epoch = 0
    if state is not None:
        kernel.load_state_dict(state["kernel"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"]
    noise = random.Random(seed)
    loop = Loop(kernel, optimizer)
    max_steps = epochs * steps_per_epoch
    for epoch in range(start_epoch, epochs):
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i + 1
            lr = optimizer.param_groups[0]["lr"]
            loop.lrs.append((step, lr))
            loss = 5.0 - 0.1 * math.log(lr / BASE_LR) + 0.005 * noise.gauss(0, 1)
            kernel.apply(_env(step, max_steps, optimizer, loss), events=["train_batch_end"])
        kernel.apply(_env(step, max_steps, optimizer, loss), events=["val_epoch_end"])
        if stop is not None and stop(kernel, epoch):
            return loop
    kernel.close()
    return loop


def checkpoint(kernel: HotKernel, epoch: int) -> dict:
    """What a checkpoint holds after ``epoch`` (0-based) finished: tuner and optimizer state."""
    optimizer = kernel.mutable_state["opt.lr"].optimizer
    return {"kernel": copy.deepcopy(kernel.state_dict()), "optimizer": copy.deepcopy(optimizer.state_dict()),
            "epoch": epoch + 1}


def _env(step: int, max_steps: int, optimizer: Any, loss: float) -> dict:
    metrics = {"val/loss": loss, "train/loss": loss}
    return {"step": step, "max_steps": max_steps, "optimizer": optimizer, "loss": loss,
            "metric": lambda name, default=None: metrics.get(name, default)}


# -- shared checks --------------------------------------------------------------------------------
def trials_by_study(run_dir: str | Path, storage: Any = None) -> dict[str, list]:
    """Every trial of every study in the run's study file, by study name."""
    import optuna

    from hotcb.modules.tune.search import sqlite_storage
    from hotcb.modules.tune.storage import STUDY_FILE

    storage = storage or sqlite_storage(Path(run_dir) / STUDY_FILE)
    return {name: optuna.load_study(study_name=name, storage=storage).trials
            for name in optuna.study.get_all_study_names(storage)}


def assert_trials_match_segments(run_dir: str | Path, storage: Any = None) -> dict[str, list]:
    """Each proposal is one trial; an evaluated segment's trial is COMPLETE with exactly the
    segment's score (a blocked one's: the ``told_score`` it records); every other trial is
    FAIL. Nothing RUNNING, nothing PRUNED."""
    from optuna.trial import TrialState

    studies = trials_by_study(run_dir, storage)
    mutations = read_jsonl(Path(run_dir) / "hotcb.tune.mutations.jsonl")
    segments = read_jsonl(Path(run_dir) / "hotcb.tune.segments.jsonl")
    proposed = {r["id"]: (r["study"], r["trial"]) for r in mutations if r["status"] in ("applied", "failed", "suggested")}
    scores = {s["mutation_id"]: s["score"] if s["score"] is not None else s.get("told_score")
              for s in segments if s.get("mutation_id")}
    trials = {(name, t.number): t for name, ts in studies.items() for t in ts if "warm_start" not in t.user_attrs}
    assert sorted(proposed.values()) == sorted(trials), "one trial per proposal, no more, no fewer"
    for mutation_id, key in proposed.items():
        trial = trials[key]
        score = scores.get(mutation_id)
        if score is not None:
            assert trial.state is TrialState.COMPLETE and trial.value == score, (mutation_id, trial, score)
        else:
            assert trial.state is TrialState.FAIL, (mutation_id, trial)
    return studies
