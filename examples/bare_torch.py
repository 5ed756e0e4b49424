"""hottune in a bare PyTorch loop, exactly as the seed's quick start shows.

    python examples/bare_torch.py --run-dir runs/bare --epochs 20 --tune active

Without --tune the kernel starts with tuning off; enable it from another terminal:
    hotcb --dir runs/bare tune enable --mode active
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from examples.digits import digits_loaders, mlp  # noqa: E402
from hotcb import HotKernel  # noqa: E402
from hotcb.actuators import optimizer_actuators, mutable_state  # noqa: E402

RECIPE = {
    "actuators": {"opt": {"mutations": {"lr_mult": {"bounds": [0.33, 3.0]}}}},
    "search": {"algorithm": "tpe", "startup_trials": 4, "seed": 0},
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/bare")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-4, help="deliberately ten times too small")
    parser.add_argument("--tune", default=None, choices=["off", "observe", "suggest", "active"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    dl, val_dl = digits_loaders(seed=args.seed)
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    num_epochs = args.epochs

    ms = mutable_state(optimizer_actuators(optimizer))
    kernel = HotKernel(run_dir=args.run_dir, mutable_state=ms, recipe=RECIPE, tune_mode=args.tune)
    metrics: dict[str, float] = {}
    max_steps = num_epochs * len(dl)

    step = 0
    for epoch in range(num_epochs):
        for batch_idx, (x, y) in enumerate(dl):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            step += 1
            kernel.apply(
                env={"step": step, "epoch": epoch, "max_steps": max_steps, "loss": loss.detach(),
                     "model": model, "optimizer": optimizer},
                events=["train_batch_end"],
            )

        with torch.no_grad():
            x, y = next(iter(val_dl))
            logits = model(x)
            metrics["val/loss"] = float(nn.functional.cross_entropy(logits, y))
            metrics["val/score"] = float((logits.argmax(1) == y).float().mean())

        # Decision point for tune
        kernel.apply(
            env={"step": step, "epoch": epoch, "optimizer": optimizer, "model": model, "max_steps": max_steps,
                 "metric": lambda name, default=None: metrics.get(name, default)},
            events=["val_epoch_end"],
        )

    kernel.close(env={"step": step, "epoch": epoch})
    summary = kernel.status()["tune"]
    print(f"run directory {Path(args.run_dir).resolve()}")
    print(f"tune: mode={summary['mode']} proposed={summary.get('proposed', 0)} accepted={summary.get('accepted', 0)} "
          f"rejected={summary.get('rejected', 0)}")
    print(f"final: val/loss={metrics['val/loss']:.4f} val/score={metrics['val/score']:.4f} lr={optimizer.param_groups[0]['lr']:.3g}")
    return metrics


if __name__ == "__main__":
    main()
