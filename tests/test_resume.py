"""Crash mid-run, resume from the last checkpoint: every command once, no mutation id twice.

Lightning (checkpoint callback state) and bare PyTorch (``kernel.state_dict()``); the
HuggingFace case is in test_hf_adapter.py.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from examples.digits import DigitsClassifier, DigitsDataModule, digits_loaders, mlp
from hotcb import HotKernel
from hotcb.actuators import mutable_state, optimizer_actuators
from hotcb.adapters.lightning import HotCBLightning
from hotcb.adapters.torch import metric_accessor
from hotcb.channel import Command, send
from hotcb.kernel import APPLIED_FILE, DISCARDED_FILE
from hotcb.ledger import read_jsonl
from hotcb.modules.tune.storage import MUTATIONS_FILE

RECIPE = {
    "objective": {"primary": "val/loss", "mode": "min"},
    "actuators": {"opt": {"enabled": True, "mutations": {"lr_mult": {"bounds": [0.5, 2.0], "cooldown": 0}}}},
    "search": {"algorithm": "tpe", "startup_trials": 2, "seed": 0},
    "acceptance": {"baseline": "pre", "rollback": "params"},
    "safety": {"max_global_reject_streak": 100},
}


def check_records(run_dir: Path, command_ids: list[str]) -> list[dict]:
    """Each command applied exactly once; each mutation id names one mutation, across the resume."""
    ledger = read_jsonl(run_dir / APPLIED_FILE)
    applied = Counter(r["id"] for r in ledger if r.get("status") == "applied" and r.get("id"))
    assert applied == Counter(command_ids)
    mutations = read_jsonl(run_dir / MUTATIONS_FILE)
    proposals = [m for m in mutations if "patch" in m]
    assert len({m["id"] for m in proposals}) == len(proposals)
    verdicts = [m["id"] for m in mutations if m["status"] in ("accepted", "rejected", "cancelled", "failed")]
    assert len(set(verdicts)) == len(verdicts) and set(verdicts) <= {m["id"] for m in proposals}
    discarded = [r["record"] for r in read_jsonl(run_dir / DISCARDED_FILE) if r["file"] == MUTATIONS_FILE]
    assert not {m["id"] for m in discarded if "patch" in m} & {m["id"] for m in proposals}
    trials = [m["trial"] for m in proposals + [d for d in discarded if "patch" in d] if m.get("trial") is not None]
    assert len(set(trials)) == len(trials)
    return ledger


class Operator(pl.Callback):
    """Plays the person at the terminal (commands at given steps), then the crash."""

    def __init__(self, run_dir: Path, sends: dict[int, Command], crash_at: int | None = None):
        self.run_dir, self.sends, self.crash_at = run_dir, dict(sends), crash_at
        self.validated_at: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step in self.sends:
            send(self.run_dir, self.sends.pop(trainer.global_step))
        if trainer.global_step == self.crash_at:
            raise RuntimeError("simulated crash")

    def on_validation_end(self, trainer, pl_module):
        self.validated_at.append(trainer.global_step)


def lightning_fit(run_dir: Path, ckpt_dir: Path, operator: Operator, resume: str | None = None):
    pl.seed_everything(0, verbose=False)
    kernel = HotKernel(run_dir, recipe=RECIPE, tune_mode="active")
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, val_check_interval=0.25,
        callbacks=[operator, HotCBLightning(kernel),
                   pl.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_on_train_epoch_end=True)],
    )
    model = DigitsClassifier(lr=3e-3)
    trainer.fit(model, datamodule=DigitsDataModule(), ckpt_path=resume)
    return kernel, trainer


def test_lightning_resume_applies_each_command_once(tmp_path: Path) -> None:
    run, ckpts = tmp_path / "run", tmp_path / "ckpt"
    first, second, third = (Command("opt", "set", {"weight_decay": w}) for w in (1e-3, 2e-3, 3e-3))
    # 23 steps an epoch, decisions every 5, a checkpoint at each epoch's end. The crash comes
    # after the second command and two more decisions, all after the last checkpoint (step 23):
    # the resume must redo the command and must not reuse those mutations' ids.
    operator = Operator(run, {3: first, 26: second}, crash_at=36)
    with pytest.raises(RuntimeError, match="simulated crash"):
        lightning_fit(run, ckpts, operator)
    assert operator.validated_at == [5, 10, 15, 20, 28, 33]
    lost = [m for m in read_jsonl(run / MUTATIONS_FILE) if m["status"] == "applied" and m["step"] > 23]
    assert len(lost) == 2 and second.id in {r.get("id") for r in read_jsonl(run / APPLIED_FILE)}

    resumed = Operator(run, {40: third})
    kernel, trainer = lightning_fit(run, ckpts, resumed, resume=str(ckpts / "last.ckpt"))
    ledger = check_records(run, [first.id, second.id, third.id])
    assert next(r for r in ledger if r.get("id") == second.id)["step"] == 23  # before the first resumed step
    assert trainer.optimizers[0].param_groups[0]["weight_decay"] == 3e-3
    discarded = {r["record"].get("id") for r in read_jsonl(run / DISCARDED_FILE)}
    assert second.id in discarded and {m["id"] for m in lost} <= discarded
    assert kernel.status()["tune"]["decisions"] == 4 + len(resumed.validated_at)


def bare_torch_run(run_dir: Path, ckpt: Path, sends: dict[int, Command], crash_at: int | None,
                   save_after: tuple[int, ...] = (0, 1, 2, 3), epochs: int = 4):
    """The seed's bare loop, saving ``kernel.state_dict()`` with the model after some epochs."""
    torch.manual_seed(0)
    train, val = digits_loaders()
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, weight_decay=0.0)
    kernel = HotKernel(run_dir, mutable_state=mutable_state(optimizer_actuators(optimizer)), recipe=RECIPE,
                       tune_mode="active")
    start_epoch, step = 0, 0
    if ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        kernel.load_state_dict(saved["hotcb"])
        start_epoch, step = saved["epoch"] + 1, saved["step"]
    metrics: dict = {}
    env = {"optimizer": optimizer, "model": model, "max_steps": epochs * len(train), "metric": metric_accessor(metrics)}
    for epoch in range(start_epoch, epochs):
        for x, y in train:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            metrics["train_loss"] = loss.item()
            if step in sends:
                send(run_dir, sends[step])
            kernel.apply(env={**env, "step": step, "epoch": epoch, "loss": loss}, events=["train_batch_end"])
            if step == crash_at:
                raise RuntimeError("simulated crash")
        with torch.no_grad():
            metrics["val_loss"] = float(sum(torch.nn.functional.cross_entropy(model(x), y) for x, y in val))
        kernel.apply(env={**env, "step": step, "epoch": epoch}, events=["val_epoch_end"])
        if epoch in save_after:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "hotcb": kernel.state_dict(),
                        "epoch": epoch, "step": step}, ckpt)
    kernel.close(env={"step": step, "epoch": epochs - 1})
    return kernel, optimizer


def test_bare_torch_resume_applies_each_command_once(tmp_path: Path) -> None:
    run, ckpt = tmp_path / "run", tmp_path / "ckpt.pt"
    first, second = Command("opt", "set", {"weight_decay": 1e-4}), Command("opt", "set", {"weight_decay": 2e-4})
    # 23 steps an epoch; the only checkpoint is at step 23; a decision (46) and the second
    # command (50) come after it, then the crash.
    with pytest.raises(RuntimeError, match="simulated crash"):
        bare_torch_run(run, ckpt, {5: first, 50: second}, crash_at=52, save_after=(0,))
    assert [m["step"] for m in read_jsonl(run / MUTATIONS_FILE) if m["status"] == "applied"] == [23, 46]
    kernel, optimizer = bare_torch_run(run, ckpt, {}, crash_at=None)
    ledger = check_records(run, [first.id, second.id])
    assert next(r for r in ledger if r.get("id") == second.id)["step"] == 24  # first call after the resume
    assert optimizer.param_groups[0]["weight_decay"] == 2e-4
    assert kernel.status()["tune"]["decisions"] == 4
