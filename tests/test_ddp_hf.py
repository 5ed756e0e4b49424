"""The HuggingFace Trainer under torchrun (2 processes, gloo): the kernel joins the Trainer's
process group by itself, rank 0 decides, and both ranks train with the same lr and weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hotcb.channel import Command, send
from hotcb.ledger import read_jsonl
from tests.conftest import ROOT

JOB = ROOT / "tests" / "jobs" / "hf_ddp.py"


@pytest.mark.slow
def test_hf_trainer_ddp_ranks_follow_rank_zero(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "out"
    out.mkdir()
    command = send(run, Command("opt", "scale", {"lr": 0.5}))  # waiting before the run starts
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(JOB), str(run), str(out)],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in 300 s:\n{output[-6000:]}")
    assert proc.returncode == 0, output[-6000:]

    rank0, rank1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (rank0["writer"], rank1["writer"]) == (True, False)
    assert len(rank0["trace"]) == 32
    assert rank0["trace"] == rank1["trace"]  # lr and weights identical at every step
    ledger = read_jsonl(run / "hotcb.applied.jsonl")
    assert [(r["id"], r["status"], r["step"]) for r in ledger] == [(command.id, "applied", 0)]  # once, at train start
    lr = [row[1] for row in rank0["trace"]]
    assert lr[0] == pytest.approx(0.5 * 5e-4)  # the warm-up-free linear schedule starts at the scaled lr
    mutations = read_jsonl(run / "hotcb.tune.mutations.jsonl")
    rejected = [m for m in mutations if m["status"] == "rejected"]
    assert len(rejected) >= 2 and all(m["rollback"] == "state" for m in rejected)
    by_step = {row[0]: row for row in rank0["trace"]}
    for m in rejected:  # weights back to the decision point's, on both ranks
        start = next(a["step"] for a in mutations if a["id"] == m["id"] and a["status"] == "applied")
        if m["step"] in by_step:
            assert by_step[m["step"]][2:] == by_step[start][2:]
