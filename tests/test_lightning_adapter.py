"""HotCBLightning on one device: decision points, skipped sanity checks, logging, contract keys."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest

from examples.digits import DigitsClassifier, DigitsDataModule
from hotcb import HotKernel
from hotcb.adapters.lightning import HotCBLightning
from hotcb.ledger import read_jsonl
from hotcb.modules.tune.storage import MUTATIONS_FILE

RECIPE = {
    "objective": {"primary": "val/loss", "mode": "min"},
    "actuators": {"opt": {"enabled": True, "mutations": {"lr_mult": {"bounds": [0.5, 2.0], "cooldown": 0}}}},
    "search": {"algorithm": "random", "seed": 0},
    "acceptance": {"baseline": "pre", "rollback": "params"},
    "safety": {"max_global_reject_streak": 100},
}


class Probe(pl.Callback):
    """Sees each env the kernel gets at a decision (via a wrapped kernel.apply)."""

    def __init__(self, kernel: HotKernel):
        self.decisions: list[dict] = []
        apply = kernel.apply

        def spy(env=None, events=("train_batch_end",)):
            if "val_epoch_end" in events:
                self.decisions.append({"step": env["step"], "val/loss": env["metric"]("val/loss"),
                                       "max_steps": env["max_steps"], "kernel": env["kernel"]})
            apply(env, events)

        kernel.apply = spy


def fit(tmp_path: Path, **trainer_args):
    kernel = HotKernel(tmp_path / "run", recipe=RECIPE, tune_mode="active")
    probe = Probe(kernel)
    args = dict(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=2)
    trainer = pl.Trainer(**{**args, **trainer_args}, callbacks=[HotCBLightning(kernel)])
    trainer.fit(DigitsClassifier(lr=3e-3), datamodule=DigitsDataModule())
    return kernel, probe, trainer


@pytest.mark.parametrize(("trainer_args", "steps"), [
    ({"val_check_interval": 0.5}, [11, 22, 34, 45]),  # 23 steps an epoch, every 11 batches
    ({"max_epochs": 4, "check_val_every_n_epoch": 2}, [46, 92]),
])
def test_decisions_follow_validation_schedule(tmp_path: Path, trainer_args: dict, steps: list[int]) -> None:
    kernel, probe, trainer = fit(tmp_path, **trainer_args)
    # One decision per validation run, none for the sanity check, each with this run's metric.
    assert [d["step"] for d in probe.decisions] == steps
    assert all(d["val/loss"] is not None and d["kernel"] is kernel for d in probe.decisions)
    assert probe.decisions[0]["max_steps"] == trainer.estimated_stepping_batches
    assert kernel.status()["tune"]["decisions"] == len(steps)
    applied = [m["step"] for m in read_jsonl(tmp_path / "run" / MUTATIONS_FILE) if m["status"] == "applied"]
    assert applied and set(applied) <= set(steps)


def test_actuator_values_and_tune_counts_reach_the_loggers(tmp_path: Path) -> None:
    logger = pl.loggers.CSVLogger(tmp_path / "logs", name="", version="")
    kernel, _, trainer = fit(tmp_path, logger=logger, log_every_n_steps=5, val_check_interval=0.5)
    with open(tmp_path / "logs" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    lr = [(int(r["step"]), float(r["hotcb/opt.lr"])) for r in rows if r.get("hotcb/opt.lr")]
    assert len(lr) >= 8 and lr[-1][1] == pytest.approx(trainer.optimizers[0].param_groups[0]["lr"])
    applied = [r for r in rows if r.get("hotcb/tune/applied")]
    assert float(applied[-1]["hotcb/tune/applied"]) == kernel.tune_counts()["applied"] >= 1
    assert {"hotcb/opt.weight_decay", "hotcb/opt.betas/0", "hotcb/opt.betas/1"} <= set(rows[0])
