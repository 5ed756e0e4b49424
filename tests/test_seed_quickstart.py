"""The seed's Lightning quick start, run as written (with a model and data around it)."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import hotcb_cli  # noqa: E402
from examples.digits import DigitsClassifier, DigitsDataModule  # noqa: E402
from hotcb.ledger import read_json, read_jsonl  # noqa: E402


class PrebuiltOptimizerModel(DigitsClassifier):
    """The seed builds its MutableState from an optimizer that exists before the Trainer does."""

    def __init__(self, optimizer_factory):
        super().__init__(lr=1e-4)
        self.optimizer = optimizer_factory(self.parameters())

    def configure_optimizers(self):
        return self.optimizer


def test_lightning_quickstart_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tune_recipe.yaml").write_text(
        "actuators:\n  opt:\n    mutations:\n      lr_mult: {bounds: [0.5, 3.0]}\n"
        "  loss:\n    keys:\n      weight_a: {mode: mult, bounds: [0.5, 2.0]}\n"
        "search: {algorithm: random, seed: 0}\n"
    )
    model = PrebuiltOptimizerModel(lambda params: torch.optim.Adam(params, lr=1e-4))
    optimizer = model.optimizer
    dm = DigitsDataModule()

    # ---- the seed's snippet, verbatim ----
    from hotcb import HotKernel
    from hotcb.adapters.lightning import HotCBLightning
    from hotcb.actuators import optimizer_actuators, loss_actuators, mutable_state

    # Create MutableState with all controllable params
    loss_weights = {"weight_a": 1.0, "weight_b": 0.5}
    ms = mutable_state(
        optimizer_actuators(optimizer) + loss_actuators(loss_weights)
    )

    kernel = HotKernel(
        run_dir="runs/exp1",
        tune_recipe_path="tune_recipe.yaml",  # optional
        mutable_state=ms,
    )

    # Adapter auto-discovers optimizer actuators if not already in MutableState
    trainer = pl.Trainer(callbacks=[HotCBLightning(kernel)])
    # ---- end of snippet (the Trainer gets CPU-friendly limits below) ----
    trainer = pl.Trainer(callbacks=[HotCBLightning(kernel)], max_epochs=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    # "Then enable tuning from another terminal": the CLI appends to the command log.
    assert hotcb_cli("--dir", str(tmp_path / "runs/exp1"), "tune", "enable", "--mode", "active").returncode == 0
    trainer.fit(model, datamodule=dm)

    assert sorted(ms) == ["loss.weight_a", "loss.weight_b", "opt.betas", "opt.lr", "opt.weight_decay"]
    (enable,) = read_jsonl(tmp_path / "runs/exp1/hotcb.applied.jsonl")
    # Sent before fit: taken in at train start, before the first step.
    assert (enable["op"], enable["status"], enable["step"]) == ("enable", "applied", 0)
    assert read_json(tmp_path / "runs/exp1/hotcb.tune.summary.json")["mode"] == "active"
    assert kernel.recipe.actuators["loss"].keys["weight_a"].bounds == [0.5, 2.0]
