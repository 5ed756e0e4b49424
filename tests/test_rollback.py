"""Rollback: a NaN-driving mutation is rejected at once and the training state comes back
bit-exact; params rollback restores the knob; after a restore the next mutation starts from
the values in the param groups; an accepted lr survives a checkpoint round trip."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from optuna.trial import TrialState

from hotcb.actuators import optimizer_actuators
from hotcb.actuators import state as training_state
from tune_loop import Loop, recipe

EXPLODE = {"lr": {"mode": "set", "bounds": [5e3, 1e4], "range": [1e-6, 1e4]}}  # at the hard limit


def _clone(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


def _reference(loop: Loop) -> dict:
    return {
        "model": _clone(loop.model.state_dict()),
        "optimizer": _clone(loop.optimizer.state_dict()),
        "scheduler": _clone(loop.scheduler.state_dict()),
        "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state().clone()),
    }


def _assert_same(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("on_disk", [False, True])
def test_nan_mutation_is_rejected_at_once_and_state_restored_bit_exact(tmp_path, on_disk):
    acceptance = {"baseline": "trend", "rollback": "state"}
    if on_disk:
        acceptance["snapshot_dir"] = str(tmp_path / "snapshots")
    rec = recipe(EXPLODE, acceptance=acceptance, safety={"grad_spike_factor": None})
    loop = Loop(tmp_path / "run", rec, task="regression", lr=0.02, scheduler=True)
    references = {}

    def remember(lp):
        references[lp.step] = _reference(lp)

    loop.run(3, steps=6, before_decision=remember)  # trend needs three points, then proposes
    assert loop.kernel.tune.segment is not None, "no mutation was applied"
    start = loop.kernel.tune.segment.start_step
    assert loop.optimizer.param_groups[0]["lr"] >= 5e3
    if on_disk:
        assert list((tmp_path / "snapshots").glob("*.pt"))
    for _ in range(20):
        loss = loop.train_step()
        if loop.kernel.tune.segment is None:
            break
    assert not math.isfinite(loss), "the mutation did not drive the loss to NaN/inf"
    nan_step = loop.step
    # Rejected at once (at the step the loss went non-finite), not at the horizon:
    seg = loop.decided()[0]
    assert seg["decision"] == "reject" and seg["end_step"] == nan_step < start + 6
    assert seg["reason"].startswith("blocked: non-finite loss") and seg["rollback"] == "state"
    # The sampler learns from the catastrophe: a score below any seen, not a FAIL it would skip.
    [trial] = loop.kernel.tune.search.study(loop.kernel.tune.families()["opt.lr"], "mid").trials
    assert trial.state is TrialState.COMPLETE and trial.value == seg["told_score"] == -2 * abs(seg["pre"]["val/loss"])
    # Every tensor and RNG state is as it was at the decision point:
    _assert_same(_reference(loop), references[start], "state")
    assert loop.optimizer.param_groups[0]["lr"] == references[start]["optimizer"]["param_groups"][0]["lr"]
    if on_disk:
        assert not list((tmp_path / "snapshots").glob("*.pt")), "the snapshot file was not cleaned up"
    # Training continues with a finite loss.
    for _ in range(12):
        assert math.isfinite(loop.train_step())
    loop.validate()
    loop.close()
    assert loop.kernel.status()["tune"]["rejected"] == 1


def test_params_rollback_restores_only_the_knob(tmp_path):
    rec = recipe({"lr_mult": {"bounds": [0.2, 0.25]}}, acceptance={"baseline": "trend", "rollback": "params"})
    loop = Loop(tmp_path, rec).run(3)
    assert loop.kernel.tune.segment is not None
    loop.run(1)
    seg = loop.decided()[0]
    assert seg["decision"] == "reject" and seg["rollback"] == "params"
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(0.05, rel=1e-12)
    assert loop.kernel.tune.rewound_steps == 0


def test_after_a_state_restore_the_next_mutation_starts_from_the_param_groups(tmp_path):
    """Restoring optimizer state must not leave the actuators working from stale values."""
    loop = Loop(tmp_path, recipe({"lr_mult": {"bounds": [0.5, 0.6]}}), task="regression", scheduler=True)
    lr, wd = optimizer_actuators(loop.optimizer, schedulers=[loop.scheduler])[:2]
    env = loop.env()
    snap = training_state.capture(env)
    assert lr.apply({"mult": 0.5}, env).ok and wd.apply({"value": 0.3}, env).ok
    for _ in range(3):
        loop.train_step()
    training_state.restore(snap, env)
    lr.reverted()
    wd.reverted()
    groups = loop.optimizer.param_groups
    assert lr.current() == groups[0]["lr"] and wd.current() == groups[0]["weight_decay"] == 1e-4
    result = lr.apply({"mult": 2.0}, env)
    assert result.before == [groups[0]["lr"] / 2.0] and result.after == [groups[0]["lr"]]
    assert type(groups[0]["lr"]) is float


def test_accepted_lr_survives_a_checkpoint_round_trip(tmp_path):
    """Save model, optimizer, scheduler and kernel state after an accepted lr change; a fresh
    process-equivalent (new objects) loads them and keeps the accepted lr and its schedule."""
    rec = recipe({"lr_mult": {"bounds": [1.8, 2.0], "cooldown": 5}})
    loop = Loop(tmp_path / "a", rec, scheduler=True).run(4)
    accepted = [s for s in loop.decided() if s["decision"] == "accept"]
    assert accepted, [s["reason"] for s in loop.decided()]
    mult = accepted[0]["value"]
    assert loop.kernel.tune.segment is None  # the family's cooldown keeps a new one from opening
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": loop.model.state_dict(), "optimizer": loop.optimizer.state_dict(),
                "scheduler": loop.scheduler.state_dict(), "hotcb": loop.kernel.state_dict(), "step": loop.step}, ckpt)
    lr_at_save = loop.optimizer.param_groups[0]["lr"]

    resumed = Loop(tmp_path / "b", rec, scheduler=True)
    state = torch.load(ckpt, weights_only=False)
    resumed.model.load_state_dict(state["model"])
    resumed.optimizer.load_state_dict(state["optimizer"])
    resumed.scheduler.load_state_dict(state["scheduler"])
    resumed.kernel.load_state_dict(state["hotcb"])
    resumed.step = state["step"]
    assert resumed.optimizer.param_groups[0]["lr"] == lr_at_save
    assert resumed.kernel.status()["tune"]["accepted"] >= 1

    twin = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    twin_scheduler = torch.optim.lr_scheduler.StepLR(twin, 7, 0.9)
    for _ in range(resumed.step):
        twin.step()
        twin_scheduler.step()
    for _ in range(20):  # the schedule goes on at the accepted multiple of the unmutated one
        resumed.optimizer.step()
        resumed.scheduler.step()
        twin.step()
        twin_scheduler.step()
        assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(mult * twin.param_groups[0]["lr"], rel=1e-9)


def test_state_rollback_restores_the_amp_grad_scaler(tmp_path):
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    env = {"model": model, "optimizer": optimizer, "grad_scaler": scaler}
    before = _clone(scaler.state_dict())
    snap = training_state.capture(env, tmp_path)
    for bad in (False, True, False):  # a grown scale, an inf-driven backoff, a skipped step
        loss = model(torch.randn(4, 3)).sum() * (float("inf") if bad else 1.0)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    assert scaler.state_dict() != before
    training_state.restore(snap, env)
    assert scaler.state_dict() == before


def test_snapshots_of_a_dead_process_are_deleted_at_the_next_capture(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    orphan = tmp_path / f"hotcb-snapshot-{int(dead.stdout)}@{host}-0000abcd.pt"
    live = tmp_path / f"hotcb-snapshot-{os.getpid()}@{host}-0000dcba.pt"
    elsewhere = tmp_path / f"hotcb-snapshot-{int(dead.stdout)}@otherhost-00001234.pt"
    longer = tmp_path / f"hotcb-snapshot-{int(dead.stdout)}@{host}-7-00005678.pt"  # host "HOST-7"
    for path in (orphan, live, elsewhere, longer):
        path.write_bytes(b"x")
    model = torch.nn.Linear(2, 1)
    snapshot = training_state.capture({"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}, tmp_path)
    assert not orphan.exists() and live.exists() and elsewhere.exists() and longer.exists()
    assert snapshot.path.name.startswith(f"hotcb-snapshot-{os.getpid()}@{host}-")
    snapshot.discard()
    assert not snapshot.path.exists()
