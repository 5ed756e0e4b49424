"""The HuggingFace example's Trainer under torchrun: every rank records its lr and a weight
checksum at each step, so a test can check that they agree.

Usage: ``torchrun --standalone --nproc-per-node 2 hf_ddp.py RUN_DIR OUT_DIR``; writes
``OUT_DIR/rankN.json``. A command waiting in RUN_DIR's log before the start is applied at the
first safe point.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

from examples.hf_trainer import RECIPE, make_trainer
from hotcb import HotKernel


class Trace(TrainerCallback):
    def __init__(self):
        self.rows: list[list[float]] = []

    def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        w = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
        self.rows.append([state.global_step, optimizer.param_groups[0]["lr"], float(w.sum()), float(w.square().sum())])


def main(run_dir: str, out_dir: str) -> None:
    faulthandler.dump_traceback_later(240, exit=True)  # a hang shows where it is, then ends
    rank = int(os.environ["RANK"])
    # Every mutation rejected and its state rolled back: the hardest decision to mirror.
    recipe = {**RECIPE, "acceptance": {**RECIPE["acceptance"], "epsilon": 1e9, "rollback": "state"},
              "safety": {"max_global_reject_streak": 100}}
    kernel = HotKernel(run_dir, recipe=recipe, tune_mode="active")
    trace = Trace()
    trainer = make_trainer(kernel, Path(out_dir) / "trainer", callbacks=[trace])
    trainer.train()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"trace": trace.rows, "writer": kernel.is_writer}))
    faulthandler.cancel_dump_traceback_later()


if __name__ == "__main__":
    main(*sys.argv[1:3])
