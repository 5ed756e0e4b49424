"""Lightning DDP on CPU (2 processes, gloo): rank 0 decides, every rank follows at the same step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hotcb.ledger import read_jsonl
from tests.conftest import ROOT, hotcb_cli

JOB = ROOT / "tests" / "jobs" / "lightning_digits.py"
PAUSE_AT = 5  # not a validation step (those are every 6 steps here)


@pytest.mark.slow
def test_ddp_ranks_follow_rank_zero(tmp_path: Path) -> None:
    run, trace = tmp_path / "run", tmp_path / "trace"
    # epsilon=1e9: every mutation is rejected and its training state rolled back, the hardest
    # decision to mirror (weights, optimizer and RNG restored on each rank).
    proc = subprocess.Popen(
        [sys.executable, str(JOB), "tune=active", "recipe=lr_only", f"hydra.run.dir={run}",
         "+trainer.strategy=ddp", "trainer.devices=2", "trainer.max_epochs=4", "+trainer.val_check_interval=0.5",
         "hotcb.recipe.acceptance.epsilon=1e9", "hotcb.recipe.safety.max_global_reject_streak=100",
         f"+test.trace={trace}", f"+test.pause_at={PAUSE_AT}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # the ranks Lightning starts go down with it on a failure
    )
    try:
        deadline = time.time() + 240
        while not (trace / "paused").exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, "the job never reached the pause step"
            time.sleep(0.2)
        sent = hotcb_cli("--dir", str(run), "opt", "set", "lr=0.003")
        assert sent.returncode == 0, sent.stderr
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-4000:]

    rank0 = json.loads((trace / "trace-rank0.json").read_text())
    rank1 = json.loads((trace / "trace-rank1.json").read_text())
    assert len(rank0) == 48
    # Identical lr and weights on both ranks at every step, rollbacks included.
    assert rank0 == rank1
    lr = {row["step"]: row["lr"] for row in rank0}

    # The CLI command took effect on both ranks at the same step, recorded once.
    assert lr[PAUSE_AT - 1] == pytest.approx(1e-4) and lr[PAUSE_AT] == 0.003
    ledger = read_jsonl(run / "hotcb.applied.jsonl")
    assert [(r["module"], r["op"], r["status"], r["step"]) for r in ledger] == [("opt", "set", "applied", PAUSE_AT)]

    # Every tune decision shows on both ranks: the lr moves at each applied mutation and the
    # weights come back to the decision point's at each state rollback.
    mutations = read_jsonl(run / "hotcb.tune.mutations.jsonl")
    applied = [m for m in mutations if m["status"] == "applied"]
    rejected = [m for m in mutations if m["status"] == "rejected"]
    assert len(applied) >= 2 and [m["rollback"] for m in rejected] == ["state"] * len(rejected)
    rows = {row["step"]: row for row in rank0}
    for m in applied:
        assert lr[m["step"]] == pytest.approx(lr[m["step"] - 1] * m["value"])
    for m in rejected:
        start = next(a["step"] for a in applied if a["id"] == m["id"])
        if m["step"] in rows:
            assert rows[m["step"]]["w"] == rows[start]["w"] and rows[m["step"]]["lr"] == lr[start - 1]

    # One set of artifacts, in the one run directory all ranks shared.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "run", "trace"]
    hotcb_files = sorted(p.name for p in run.iterdir() if p.name.startswith("hotcb."))
    assert hotcb_files == ["hotcb.applied.jsonl", "hotcb.commands.jsonl", "hotcb.commands.jsonl.lock",
                           "hotcb.job.json", "hotcb.metrics.jsonl", "hotcb.tune.mutations.jsonl", "hotcb.tune.recipe.yaml", "hotcb.tune.segments.jsonl",
                           "hotcb.tune.study.sqlite", "hotcb.tune.summary.json"]
    assert len({m["id"] for m in applied}) == len(applied)
    decisions = read_jsonl(run / "hotcb.metrics.jsonl")  # one line per decision point, not per rank
    assert [d["step"] for d in decisions] == [6 * k for k in range(1, 9)]
    summary = json.loads((run / "hotcb.tune.summary.json").read_text())
    assert summary["applied"] == len(applied) and summary["rejected"] == len(rejected)
