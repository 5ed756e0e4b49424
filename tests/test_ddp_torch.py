"""A bare torch.distributed loop (2 processes, gloo): the kernel joins the world by itself."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from examples.digits import digits_tensors, mlp
from hotcb import HotKernel
from hotcb.actuators import mutable_state, optimizer_actuators
from hotcb.adapters.torch import metric_accessor
from hotcb.channel import Command, send
from hotcb.ledger import read_jsonl

RECIPE = {
    "objective": {"primary": "val/loss", "mode": "min"},
    "actuators": {"opt": {"enabled": True, "mutations": {"lr_mult": {"bounds": [0.5, 2.0], "cooldown": 0}}}},
    "search": {"algorithm": "tpe", "startup_trials": 2, "seed": 0},
    # Every mutation rejected and its training state rolled back on every rank.
    "acceptance": {"baseline": "pre", "rollback": "state", "epsilon": 1e9},
    "safety": {"max_global_reject_streak": 100},
}


def _worker(rank: int, world: int, run_dir: str, out_dir: str) -> None:
    os.environ["RANK"] = str(rank)  # as torchrun sets it
    # A rendezvous file, not a TCP port: parallel test runs cannot meet in the same world.
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))  # a desync fails the test, not hangs it
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


@pytest.mark.slow
def test_bare_torch_ddp_ranks_follow_rank_zero(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "out"
    out.mkdir()
    command = send(run, Command("opt", "set", {"lr": 0.02}))  # waiting before the run starts
    mp.spawn(_worker, args=(2, str(run), str(out)), nprocs=2, join=True)

    rank0, rank1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (rank0["writer"], rank1["writer"]) == (True, False)
    assert rank0["trace"] == rank1["trace"]  # lr and weights identical at every step
    lr = [row[1] for row in rank0["trace"]]
    assert lr[0] == 0.05 and lr[1] == 0.02  # the command applied on both ranks after step 1
    assert [(r["id"], r["step"]) for r in read_jsonl(run / "hotcb.applied.jsonl")] == [(command.id, 1)]
    mutations = read_jsonl(run / "hotcb.tune.mutations.jsonl")
    rejected = [m for m in mutations if m["status"] == "rejected"]
    assert len(rejected) >= 2 and all(m["rollback"] == "state" for m in rejected)
    by_step = {row[0]: row for row in rank0["trace"]}
    for m in rejected:  # weights back to the decision point's, on both ranks
        start = next(a["step"] for a in mutations if a["id"] == m["id"] and a["status"] == "applied")
        if m["step"] in by_step:
            assert by_step[m["step"]][2:] == by_step[start][2:]
