"""A bare-PyTorch training loop driven by a real HotKernel, shared by the acceptance, rollback
and safety tests.

Two tasks: ``quadratic`` (full-batch gradient descent on an isotropic quadratic: the loss falls
by the same factor every step, so a trend forecast is exact and a slower lr is *harmful while
the loss still improves*), and ``regression`` (a small MLP on noisy data with momentum,
dropout, an LR scheduler and python/numpy/torch randomness, so a state rollback has a lot to
get exactly right).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from hotcb import HotKernel
from hotcb.actuators import mutable_state, optimizer_actuators
from hotcb.adapters.metrics import metric_accessor


class Quadratic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(8))
        self.register_buffer("target", torch.linspace(1.0, 2.0, 8))

    def loss(self) -> torch.Tensor:
        return ((self.w - self.target) ** 2).sum()


class Regression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Dropout(0.1),
                                       torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 1))
        self.register_buffer("x", torch.randn(64, 4, generator=g))
        self.register_buffer("y", self.x.sum(1, keepdim=True) + 0.1 * torch.randn(64, 1, generator=g))

    def loss(self) -> torch.Tensor:
        idx = torch.randint(0, 64, (16,))  # torch RNG
        jitter = float(np.random.uniform(0.99, 1.01)) * random.uniform(0.99, 1.01)  # numpy + python RNG
        return torch.nn.functional.mse_loss(self.net(self.x[idx]) * jitter, self.y[idx])

    @torch.no_grad()
    def val_loss(self) -> float:
        self.eval()
        out = float(torch.nn.functional.mse_loss(self.net(self.x), self.y))
        self.train()
        return out


def recipe(family: dict, **sections) -> dict:
    """A recipe with one opt family and a seeded random search in memory."""
    out = {
        "objective": {"primary": "val/loss", "mode": "min"},
        "actuators": {"opt": {"mutations": family}},
        "search": {"algorithm": "random", "seed": 0, "storage": "memory"},
        "acceptance": {"epsilon": 0.0},
    }
    for name, values in sections.items():
        out[name] = {**out.get(name, {}), **values}
    return out


class Loop:
    """Train ``task`` for some epochs of ``steps`` steps with a kernel in ``tune_mode``."""

    def __init__(self, run_dir: Path, recipe_dict: dict, task: str = "quadratic", lr: float = 0.05,
                 tune_mode: str = "active", scheduler: bool = False):
        torch.manual_seed(0)
        random.seed(0)
        np.random.seed(0)
        self.model = Quadratic() if task == "quadratic" else Regression()
        if task == "quadratic":
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)
        else:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, 7, 0.9) if scheduler else None
        self.kernel = HotKernel(run_dir, recipe=recipe_dict, tune_mode=tune_mode,
                                mutable_state=mutable_state(optimizer_actuators(self.optimizer)))
        self.run_dir = Path(run_dir)
        self.step = 0
        self.epoch = 0
        self.losses: list[float] = []
        self.metrics: dict = {}

    def env(self, **more) -> dict:
        env = {"step": self.step, "epoch": self.epoch, "model": self.model, "optimizer": self.optimizer,
               "metric": metric_accessor(self.metrics), "max_steps": 1000}
        if self.scheduler is not None:
            env["scheduler"] = self.scheduler
        env.update(more)
        return env

    def train_step(self, **env_more) -> float:
        loss = self.model.loss()
        self.optimizer.zero_grad()
        loss.backward()
        norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self.model.parameters()])))
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        loss = loss.detach()
        self.losses.append(float(loss))
        self.kernel.apply(self.env(loss=loss, grad_norm=norm, **env_more), events=["train_batch_end"])
        return float(loss)

    def validate(self, value: Optional[float] = None) -> None:
        if value is None:
            value = float(self.model.loss()) if isinstance(self.model, Quadratic) else self.model.val_loss()
        self.metrics["val/loss"] = value
        self.kernel.apply(self.env(), events=["val_epoch_end"])
        self.epoch += 1

    def run(self, epochs: int, steps: int = 5, before_decision: Callable[["Loop"], None] | None = None) -> "Loop":
        for _ in range(epochs):
            for _ in range(steps):
                self.train_step()
            if before_decision is not None:
                before_decision(self)
            self.validate()
        return self

    def close(self) -> None:
        self.kernel.close(self.env())

    def records(self, name: str) -> list[dict]:
        path = self.run_dir / f"hotcb.tune.{name}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def decided(self) -> list[dict]:
        """Segments with a mutation (control segments left out)."""
        return [s for s in self.records("segments") if s["decision"] != "control"]
