"""A bare torch.distributed loop under torchrun (2 processes, gloo): the kernel joins the world by itself."""

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

JOB = ROOT / "tests" / "jobs" / "torch_ddp.py"


@pytest.mark.slow
def test_bare_torch_ddp_ranks_follow_rank_zero(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "out"
    out.mkdir()
    command = send(run, Command("opt", "set", {"lr": 0.02}))  # waiting before the run starts
    # --standalone: a rendezvous on a free local port, so parallel test runs cannot meet.
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
