"""A bare torch.distributed loop under torchrun (2 processes, gloo): the kernel joins the world by itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotcb.channel import Command, send
from hotcb.ledger import read_jsonl
from tests.conftest import ROOT, assert_ranks_agree_and_rollbacks_restore, torchrun


@pytest.mark.slow
def test_bare_torch_ddp_ranks_follow_rank_zero(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "out"
    out.mkdir()
    command = send(run, Command("opt", "set", {"lr": 0.02}))  # waiting before the run starts
    torchrun(ROOT / "tests" / "jobs" / "torch_ddp.py", str(run), str(out))
    trace = assert_ranks_agree_and_rollbacks_restore(out, run)
    lr = [row[1] for row in trace]
    assert lr[0] == 0.05 and lr[1] == 0.02  # the command applied on both ranks after step 1
    assert [(r["id"], r["step"]) for r in read_jsonl(run / "hotcb.applied.jsonl")] == [(command.id, 1)]
