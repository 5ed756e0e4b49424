"""With a real Lightning Trainer, each decision reads this validation epoch's metric, logged in
the module's own ``on_validation_epoch_end`` (which Lightning 2.x runs after the callbacks'),
and never decides during the sanity check."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from hotcb import HotKernel
from hotcb.adapters.lightning import HotCBLightning
from tune_loop import recipe


class EpochEndLogger(pl.LightningModule):
    """Logs val/loss only in its own on_validation_epoch_end, and remembers each value."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(4, 1)
        self.outputs: list[torch.Tensor] = []
        self.logged: dict[int, float] = {}  # global step -> the value logged there

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.outputs.append(torch.nn.functional.mse_loss(self.net(x), y))

    def on_validation_epoch_end(self):
        value = torch.stack(self.outputs).mean()
        self.outputs.clear()
        if not self.trainer.sanity_checking:
            self.logged[self.trainer.global_step] = float(value)
        self.log("val/loss", value)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_decisions_read_the_module_logged_metric_of_this_epoch(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
    module = EpochEndLogger()
    kernel = HotKernel(tmp_path, recipe=recipe({"lr_mult": {"bounds": [0.5, 2.0]}}, acceptance={"baseline": "pre"}),
                       tune_mode="active")
    trainer = pl.Trainer(max_epochs=4, callbacks=[HotCBLightning(kernel)], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=2)
    trainer.fit(module, data, data)
    segments = [json.loads(s) for s in (tmp_path / "hotcb.tune.segments.jsonl").read_text().splitlines()]
    assert kernel.status()["tune"]["decisions"] == 4  # the sanity check made none
    assert segments
    for seg in segments:  # each value is the one logged at that very step, not an epoch late
        assert seg["pre"]["val/loss"] == module.logged[seg["start_step"]]
        assert seg["post"]["val/loss"] == module.logged[seg["end_step"]]
