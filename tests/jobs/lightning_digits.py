"""The digits job of the DDP and resume tests: conf/train.yaml under hotcb.main, plus a tracer.

Extra options (Hydra overrides): ``+test.trace=DIR`` writes, per rank, the lr in force and a
weight checksum at every step to DIR/trace-rank{R}.json; ``+test.pause_at=STEP`` makes rank 0
write DIR/paused and wait there for the run's command log to appear (so a test can send a CLI
command at a known step); ``+test.stop_at=STEP`` stops the run after that step;
``+test.ckpt_dir=DIR`` keeps a checkpoint after every validation and ``+test.resume=PATH``
resumes from one.
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

import hotcb  # noqa: E402
from hotcb.channel import COMMANDS_FILE  # noqa: E402


class Tracer(pl.Callback):
    def __init__(self, trace_dir, kernel, pause_at=None, stop_at=None):
        self.dir = Path(trace_dir) if trace_dir else None
        self.kernel, self.pause_at, self.stop_at = kernel, pause_at, stop_at
        self.rows = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        weights = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        self.rows.append({"step": trainer.global_step, "lr": trainer.optimizers[0].param_groups[0]["lr"],
                          "w": float(weights.double().sum()), "w2": float(weights.double().square().sum())})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.pause_at and trainer.is_global_zero:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "paused").write_text(str(trainer.global_step))
            deadline = time.time() + 120
            while not (self.kernel.run_dir / COMMANDS_FILE).exists() and time.time() < deadline:
                time.sleep(0.05)
        if trainer.global_step == self.stop_at:
            trainer.should_stop = True

    def on_fit_end(self, trainer, pl_module):
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / f"trace-rank{trainer.global_rank}.json").write_text(json.dumps(self.rows))


@hotcb.main(config_path="../../conf", config_name="train")
def train(cfg, hot) -> float:
    test = cfg.get("test") or {}
    pl.seed_everything(cfg.seed, verbose=False)
    data = instantiate(cfg.data)
    model = instantiate(cfg.model)
    callbacks = [Tracer(test.get("trace"), hot.kernel, test.get("pause_at"), test.get("stop_at")), hot.callback]
    if test.get("ckpt_dir"):
        callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=test["ckpt_dir"], save_last=True, save_top_k=-1,
                                                      every_n_epochs=1, filename="{epoch}-{step}"))
    trainer = pl.Trainer(**cfg.trainer, callbacks=callbacks)
    trainer.fit(model, datamodule=data, ckpt_path=test.get("resume"))
    return float(trainer.callback_metrics["val_loss"])


if __name__ == "__main__":
    train()
