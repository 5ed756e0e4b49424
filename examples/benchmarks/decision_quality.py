"""How often do the acceptance baselines agree with the counterfactual oracle?

On the digits task (examples/digits.py, bare PyTorch), training follows the unmutated run. At
each decision point after a warm-up, an lr multiplier is drawn log-uniformly, the exact
training state is captured, and both branches are run to the horizon from it: the mutated one
(the lr scaled through the real optimizer actuator) and the unmutated one. The oracle calls the
mutation helpful when the mutated branch's val/loss at the horizon is lower. Each baseline's
decision comes from hotcb's own SegmentEvaluator, fed the same trajectory the tune controller
would see. Because both branches start from one snapshot (same weights, optimizer, RNG, batch
order), the oracle has no noise of its own.

    python -m examples.benchmarks.decision_quality --seeds 5 --epochs 30
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.digits import digits_loaders, mlp  # noqa: E402
from hotcb.actuators import optimizer_actuators  # noqa: E402
from hotcb.actuators import state as training_state  # noqa: E402
from hotcb.modules.tune.evaluator import Point, SegmentEvaluator  # noqa: E402
from hotcb.modules.tune.schemas import AcceptanceSpec, Objective  # noqa: E402

OBJECTIVE = Objective(primary="val/loss", mode="min")
# Baselines compared: name -> acceptance settings (epsilon 0: only the baseline differs).
VARIANTS = {
    "pre": {"baseline": "pre"},
    "trend": {"baseline": "trend"},
    "trend_window4": {"baseline": "trend", "trend_window": 4},
    "trend_noise_k0.5": {"baseline": "trend", "noise_k": 0.5},
    "trend_no_noise": {"baseline": "trend", "noise_k": 0.0},
}


def _train_epoch(model, optimizer, loader) -> None:
    model.train()
    for x, y in loader:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@torch.no_grad()
def _val_loss(model, loader) -> float:
    model.eval()
    total, n = 0.0, 0
    for x, y in loader:
        total += float(torch.nn.functional.cross_entropy(model(x), y, reduction="sum"))
        n += len(y)
    return total / n


def run_seed(seed: int, epochs: int, warmup: int, horizon: int, mult_range: tuple[float, float], lr: float) -> list[dict]:
    """One training run; a record per decision with the oracle and every baseline's verdict."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    train, val = digits_loaders(batch_size=64, seed=seed)
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    actuator = optimizer_actuators(optimizer)[0]
    env = {"model": model, "optimizer": optimizer}
    evaluators = {name: SegmentEvaluator(AcceptanceSpec(epsilon=0.0, **kw), OBJECTIVE) for name, kw in VARIANTS.items()}
    draw = random.Random(1000 + seed)
    steps_per_epoch = len(train)
    records = []
    epoch = 0
    while epoch < epochs:
        step = epoch * steps_per_epoch
        value = _val_loss(model, val)
        for ev in evaluators.values():
            ev.observe(step, value)
        if epoch < warmup or not all(ev.ready() for ev in evaluators.values()):
            _train_epoch(model, optimizer, train)
            epoch += 1
            continue
        mult = math.exp(draw.uniform(math.log(mult_range[0]), math.log(mult_range[1])))
        snapshot = training_state.capture(env)
        actuator.apply({"mult": mult}, env)
        for _ in range(horizon):
            _train_epoch(model, optimizer, train)
        mutated = _val_loss(model, val)
        training_state.restore(snapshot, env)
        actuator.reverted()
        for _ in range(horizon):  # training goes on along the unmutated branch
            _train_epoch(model, optimizer, train)
        unmutated = _val_loss(model, val)
        end = step + horizon * steps_per_epoch
        record = {"seed": seed, "epoch": epoch, "mult": mult, "pre_value": value, "mutated": mutated,
                  "unmutated": unmutated, "oracle": mutated < unmutated}
        for name, ev in evaluators.items():
            record[name] = ev.judge(Point(step, value), Point(end, mutated)).accepted
        records.append(record)
        epoch += horizon
    return records


def summarize(records: list[dict]) -> dict:
    helpful = [r for r in records if r["oracle"]]
    harmful = [r for r in records if not r["oracle"]]
    out = {"decisions": len(records), "oracle_helpful": len(helpful)}
    for name in VARIANTS:
        out[name] = {
            "agreement": sum(r[name] == r["oracle"] for r in records) / len(records),
            "accept_rate": sum(r[name] for r in records) / len(records),
            "accepts_harmful": sum(r[name] for r in harmful) / len(harmful) if harmful else None,
            "accepts_helpful": sum(r[name] for r in helpful) / len(helpful) if helpful else None,
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3, help="unmutated epochs before the first decision")
    parser.add_argument("--horizon", type=int, default=1, help="validation epochs per segment")
    parser.add_argument("--mult", type=float, nargs=2, default=(0.5, 2.0), metavar=("LO", "HI"))
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", help="also write the summary and every decision to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    records = [r for seed in range(args.first_seed, args.first_seed + args.seeds)
               for r in run_seed(seed, args.epochs, args.warmup, args.horizon, tuple(args.mult), args.lr)]
    summary = {"settings": vars(args), **summarize(records)}
    print(json.dumps({k: v for k, v in summary.items() if k != "settings"}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps({**summary, "records": records}, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
