"""The main job: python examples/train.py tune=active recipe=lr_only

hotcb.main composes conf/train.yaml with hotcb's own config groups, validates the hotcb
subtree, builds the kernel and the Lightning callback, and hands them to this function.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `examples.digits` for the _target_s

import hotcb  # noqa: E402


@hotcb.main(config_path="../conf", config_name="train")
def train(cfg, hot) -> float:
    import lightning.pytorch as pl  # here, so that `hotcb.validate_only=true` imports no torch
    from hydra.utils import instantiate

    pl.seed_everything(cfg.seed, verbose=False)
    data = instantiate(cfg.data)
    model = instantiate(cfg.model)
    trainer = pl.Trainer(**cfg.trainer, callbacks=[hot.callback])
    trainer.fit(model, datamodule=data)
    return float(trainer.callback_metrics["val_loss"])


if __name__ == "__main__":
    train()
