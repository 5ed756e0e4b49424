"""Shared fixtures. Tests use real components: Lightning Trainers, Optuna studies, subprocesses."""

from __future__ import annotations

import os
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
