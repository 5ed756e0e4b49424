"""Shared fixtures. Tests use real components: Lightning Trainers, Optuna studies, subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED_RECIPE = """\
version: 1
objective:
  primary: val/loss
  mode: min
  backup_metrics:
    - grad/norm
phases:
  early: {start_frac: 0.0, end_frac: 0.2}
  mid:   {start_frac: 0.2, end_frac: 0.7}
  late:  {start_frac: 0.7, end_frac: 1.0}
actuators:
  opt:
    enabled: true
    mutations:
      lr_mult:
        bounds: [0.7, 1.2]
        prior_center: 0.95
        cooldown: 2
        risk: low
  loss:
    enabled: true
    keys:
      sp_mse_w:
        mode: mult
        bounds: [0.5, 2.0]
        cooldown: 1
search:
  algorithm: tpe
  startup_trials: 8
acceptance:
  epsilon: 0.001
  horizon: next_val_epoch_end
  rollback_on_reject: true
safety:
  block_on_nan: true
  block_on_anomaly: true
  max_global_reject_streak: 4
"""


@pytest.fixture
def seed_recipe_text() -> str:
    """The seed specification's example recipe, verbatim."""
    return SEED_RECIPE


def run_python(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` in a subprocess with the repo importable; returns the completed process."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)


def hotcb_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the real ``hotcb`` console entry point in a subprocess."""
    return run_python("-m", "hotcb.cli", *args, timeout=timeout)


def torchrun(job: Path, *args: str, timeout: float = 300) -> str:
    """Run ``job ARGS`` on 2 local ranks under torchrun (gloo, CPU); returns the output. A
    hang kills the whole process group and fails the test with what the ranks printed."""
    # --standalone: a rendezvous on a free local port, so parallel test runs cannot meet.
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(job), *args],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout:g} s:\n{output[-6000:]}")
    assert proc.returncode == 0, output[-6000:]
    return output


def assert_ranks_agree_and_rollbacks_restore(out: Path, run: Path) -> list:
    """Both ranks wrote ``out/rankN.json`` traces ([step, lr, weight sum, weight square sum]
    per step): they must be identical, rank 0 the only writer, and after each state rollback
    the weights must be those of the rejected segment's decision point. Returns rank 0's trace."""
    from hotcb.ledger import read_jsonl

    rank0, rank1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (rank0["writer"], rank1["writer"]) == (True, False)
    assert rank0["trace"] == rank1["trace"]  # lr and weights identical at every step
    mutations = read_jsonl(run / "hotcb.tune.mutations.jsonl")
    rejected = [m for m in mutations if m["status"] == "rejected"]
    assert len(rejected) >= 2 and all(m["rollback"] == "state" for m in rejected)
    by_step = {row[0]: row for row in rank0["trace"]}
    for m in rejected:
        start = next(a["step"] for a in mutations if a["id"] == m["id"] and a["status"] == "applied")
        if m["step"] in by_step:
            assert by_step[m["step"]][2:] == by_step[start][2:]
    return rank0["trace"]
