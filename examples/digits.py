"""The digits task shared by the examples and benchmarks: data, model, and a plain-torch loader."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def digits_tensors(val_fraction: float = 0.2, seed: int = 0):
    """Standardised features and labels, split into train and validation sets."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32) / 16.0
    y = torch.tensor(y, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = int(len(x) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    mean, std = x[train].mean(0), x[train].std(0).clamp_min(0.1)  # some pixels are always blank
    x = (x - mean) / std
    return (x[train], y[train]), (x[val], y[val])


def digits_loaders(batch_size: int = 64, val_fraction: float = 0.2, seed: int = 0):
    (xt, yt), (xv, yv) = digits_tensors(val_fraction, seed)
    gen = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(xt, yt), batch_size=batch_size, shuffle=True, generator=gen)
    val = DataLoader(TensorDataset(xv, yv), batch_size=512)
    return train, val


def mlp(hidden: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


class DigitsDataModule(pl.LightningDataModule):
    def __init__(self, batch_size: int = 64, val_fraction: float = 0.2, seed: int = 0):
        super().__init__()
        self.batch_size, self.val_fraction, self.seed = batch_size, val_fraction, seed

    def setup(self, stage: str | None = None) -> None:
        self._train, self._val = digits_loaders(self.batch_size, self.val_fraction, self.seed)

    def train_dataloader(self):
        return self._train

    def val_dataloader(self):
        return self._val


class DigitsClassifier(pl.LightningModule):
    def __init__(self, hidden: int = 64, lr: float = 1e-3, weight_decay: float = 0.0):
        super().__init__()
        self.save_hyperparameters()
        self.net = mlp(hidden)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y), prog_bar=True)
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
