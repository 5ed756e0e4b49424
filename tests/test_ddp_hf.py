"""The HuggingFace Trainer under torchrun (2 processes, gloo): the kernel joins the Trainer's
process group by itself, rank 0 decides, and both ranks train with the same lr and weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotcb.channel import Command, send
from hotcb.ledger import read_jsonl
from tests.conftest import ROOT, assert_ranks_agree_and_rollbacks_restore, torchrun


@pytest.mark.slow
def test_hf_trainer_ddp_ranks_follow_rank_zero(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "out"
    out.mkdir()
    command = send(run, Command("opt", "scale", {"lr": 0.5}))  # waiting before the run starts
    torchrun(ROOT / "tests" / "jobs" / "hf_ddp.py", str(run), str(out))
    trace = assert_ranks_agree_and_rollbacks_restore(out, run)
    assert len(trace) == 32
    ledger = read_jsonl(run / "hotcb.applied.jsonl")
    assert [(r["id"], r["status"], r["step"]) for r in ledger] == [(command.id, "applied", 0)]  # once, at train start
    assert trace[0][1] == pytest.approx(0.5 * 5e-4)  # the linear schedule (no warm-up) starts at the scaled lr
