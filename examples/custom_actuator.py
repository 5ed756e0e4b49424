"""A custom actuator: hottune tunes the dropout rate of a model while it trains.

    python examples/custom_actuator.py --run-dir runs/dropout --epochs 20

An actuator owns one knob. Subclassing ``HotcbActuator`` leaves two methods to write, ``read``
and ``write``; patch parsing, hard limits, snapshots, restores and the trust state machine come
with the base class. Registered under a name, the knob is open to the tuner (a recipe family
names it with ``actuator:``) and to live commands. From a Hydra app, name it as a component:

    hotcb:
      allow_targets: [examples.custom_actuator]
      actuators:
        dropout: {_target_: examples.custom_actuator.DropoutActuator, name: dropout}
      recipe:
        actuators:
          model:
            mutations:
              dropout: {actuator: dropout, mode: set, bounds: [0.0, 0.5]}
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from examples.digits import digits_loaders  # noqa: E402
from hotcb import HotKernel  # noqa: E402
from hotcb.actuators import HotcbActuator, Limits, mutable_state, optimizer_actuators  # noqa: E402


@dataclass
class DropoutActuator(HotcbActuator):
    """The drop probability of every dropout layer in ``env["model"]``, moved as one knob."""

    limits: Limits = field(default_factory=lambda: Limits(0.0, 1.0, high_inclusive=False))
    _last: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.bind()

    def _layers(self, env: dict) -> list[nn.Module]:
        model = env.get("model")
        if model is None:
            raise LookupError(f"{self.name}: the safe point's env has no 'model'")
        layers = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
        if not layers:
            raise LookupError(f"{self.name}: the model has no dropout layer")
        return layers

    def read(self, env: dict) -> list[Any]:
        if env.get("model") is None and self._last is not None:
            return [self._last]  # status outside a safe point: the value last seen
        self._last = float(self._layers(env)[0].p)
        return [self._last]

    def write(self, values: list[Any], env: dict) -> None:
        for layer in self._layers(env):
            layer.p = float(values[0])
        self._last = float(values[0])


RECIPE = {
    "objective": {"primary": "val/loss", "mode": "min"},
    "actuators": {"model": {"mutations": {"dropout": {"actuator": "dropout", "mode": "set", "bounds": [0.0, 0.5]}}}},
    "search": {"algorithm": "tpe", "startup_trials": 3, "seed": 0},
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/dropout")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--dropout", type=float, default=0.6, help="deliberately too high for this small model")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    train, val = digits_loaders()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(args.dropout), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    state = mutable_state(optimizer_actuators(optimizer))
    state.register(DropoutActuator(name="dropout"))
    kernel = HotKernel(args.run_dir, mutable_state=state, recipe=RECIPE, tune_mode="active")
    metrics: dict[str, float] = {}
    step, max_steps = 0, args.epochs * len(train)
    for epoch in range(args.epochs):
        model.train()
        for x, y in train:
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            kernel.apply({"step": step, "epoch": epoch, "max_steps": max_steps, "loss": loss.detach(),
                          "model": model, "optimizer": optimizer}, events=["train_batch_end"])
        model.eval()
        with torch.no_grad():
            x, y = next(iter(val))
            metrics["val/loss"] = float(nn.functional.cross_entropy(model(x), y))
        kernel.apply({"step": step, "epoch": epoch, "max_steps": max_steps, "model": model, "optimizer": optimizer,
                      "metric": lambda name, default=None: metrics.get(name, default)}, events=["val_epoch_end"])
    kernel.close({"step": step, "model": model})
    summary = kernel.status()["tune"]
    print(f"tune: proposed={summary['proposed']} accepted={summary['accepted']} rejected={summary['rejected']}")
    print(f"final: val/loss={metrics['val/loss']:.4f} dropout {args.dropout} -> {model[2].p:.3g}")
    return {"val/loss": metrics["val/loss"], "dropout": model[2].p}


if __name__ == "__main__":
    main()
