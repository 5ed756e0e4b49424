"""A bare torch.distributed loop, started by torchrun: the kernel joins the world by itself.

Usage: ``torchrun --standalone --nproc-per-node 2 torch_ddp.py RUN_DIR OUT_DIR``. Each rank
writes ``OUT_DIR/rankN.json``: its lr and weight checksums at every step.
"""

from __future__ import annotations

import datetime
import faulthandler
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from examples.digits import digits_tensors, mlp
from hotcb import HotKernel
from hotcb.actuators import mutable_state, optimizer_actuators
from hotcb.adapters.torch import metric_accessor

RECIPE = {
    "objective": {"primary": "val/loss", "mode": "min"},
    "actuators": {"opt": {"enabled": True, "mutations": {"lr_mult": {"bounds": [0.5, 2.0], "cooldown": 0}}}},
    "search": {"algorithm": "tpe", "startup_trials": 2, "seed": 0},
    # Every mutation rejected and its training state rolled back on every rank.
    "acceptance": {"baseline": "pre", "rollback": "state", "epsilon": 1e9},
    "safety": {"max_global_reject_streak": 100},
}


def main(run_dir: str, out_dir: str) -> None:
    faulthandler.dump_traceback_later(240, exit=True)  # a hang shows where it is, then ends
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = digits_tensors()
    model = mlp()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    kernel = HotKernel(run_dir, mutable_state=mutable_state(optimizer_actuators(optimizer)), recipe=RECIPE,
                       tune_mode="active")
    metrics: dict = {}
    env = {"model": model, "optimizer": optimizer, "metric": metric_accessor(metrics), "max_steps": 60}
    trace, step = [], 0
    shard = torch.arange(rank, len(xt), world)
    for epoch in range(5):
        for batch in shard.split(64):
            w = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
            trace.append([step, optimizer.param_groups[0]["lr"], float(w.sum()), float(w.square().sum())])
            loss = torch.nn.functional.cross_entropy(ddp(xt[batch]), yt[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            kernel.apply(env={**env, "step": step, "epoch": epoch, "loss": loss.detach()}, events=["train_batch_end"])
        with torch.no_grad():
            metrics["val_loss"] = float(torch.nn.functional.cross_entropy(model(xv), yv))
        kernel.apply(env={**env, "step": step, "epoch": epoch}, events=["val_epoch_end"])
    kernel.close(env={"step": step})
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"trace": trace, "writer": kernel.is_writer}))
    dist.destroy_process_group()
    faulthandler.cancel_dump_traceback_later()


if __name__ == "__main__":
    main(*sys.argv[1:3])
