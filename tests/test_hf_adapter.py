"""HuggingFace Trainer: decisions at on_evaluate, lr changes that survive the scheduler and a resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import TrainerCallback

from examples.hf_trainer import RECIPE, make_trainer
from hotcb import HotKernel
from hotcb.channel import Command, send
from hotcb.ledger import read_jsonl
from hotcb.modules.tune.storage import MUTATIONS_FILE, SUMMARY_FILE
from tests.conftest import ROOT, run_python
from tests.test_resume import check_records


def test_example_runs(tmp_path: Path) -> None:
    done = run_python(str(ROOT / "examples" / "hf_trainer.py"), "--run-dir", str(tmp_path / "run"), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / SUMMARY_FILE).read_text())
    assert summary["decisions"] == 4  # eval every 8 of 32 steps
    applied = [m for m in read_jsonl(tmp_path / "run" / MUTATIONS_FILE) if m["status"] == "applied"]
    assert applied and all(m["step"] % 8 == 0 for m in applied)
    assert "'hotcb/opt.lr/pg0'" in done.stdout  # actuator values reach the Trainer's logs


class Operator(TrainerCallback):
    """Records the lr at each step's start; sends commands and crashes at given steps."""

    def __init__(self, run_dir: Path, sends: dict[int, Command], crash_at: int | None = None):
        self.run_dir, self.sends, self.crash_at = run_dir, dict(sends), crash_at
        self.lr: dict[int, float] = {}

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.lr[state.global_step] = optimizer.param_groups[0]["lr"]

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.sends:
            send(self.run_dir, self.sends.pop(state.global_step))
        if state.global_step == self.crash_at:
            raise RuntimeError("simulated crash")


@pytest.mark.slow
def test_resume_keeps_accepted_lr_and_applies_commands_once(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "trainer"
    command = Command("opt", "set", {"weight_decay": 0.01})
    first = Operator(run, {18: command}, crash_at=20)
    with pytest.raises(RuntimeError, match="simulated crash"):
        make_trainer(HotKernel(run, recipe=RECIPE, tune_mode="active"), out, callbacks=[first]).train()
    before = read_jsonl(run / MUTATIONS_FILE)
    accepted = next(m for m in before if m["status"] == "accepted")  # m0001, judged at step 16
    assert accepted["id"] == "m0001" and accepted["step"] == 16
    assert any(m["status"] == "applied" and m["step"] == 16 for m in before)  # open at the checkpoint

    kernel = HotKernel(run, recipe=RECIPE, tune_mode="active")
    second = Operator(run, {})
    trainer = make_trainer(kernel, out, callbacks=[second])
    trainer.train(resume_from_checkpoint=str(out / "checkpoint-16"))

    # The accepted lr_mult is still in effect over the linear schedule after the resume; the
    # mutation that was open at the checkpoint was cancelled before the first resumed step.
    lr0, total = 5e-4, 32
    for step in range(16, 24):
        assert second.lr[step] == pytest.approx(lr0 * accepted["value"] * (total - step) / total, rel=1e-9)
    ledger = check_records(run, [command.id])
    assert next(r for r in ledger if r.get("id") == command.id)["step"] == 16
    after = read_jsonl(run / MUTATIONS_FILE)
    assert any(m["status"] == "cancelled" and "resumed" in m.get("reason", "") for m in after)
    assert kernel.status()["tune"]["decisions"] == 4
