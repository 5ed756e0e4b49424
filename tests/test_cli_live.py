"""Drive a running main job from the CLI: `tune set`, then `tune disable`, seen in the ledger and
in behaviour (no mutation after the disable); a bad `tune set` is rejected while training goes on."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, hotcb_cli
from hotcb.ledger import read_json, read_jsonl


def _wait_for(predicate, timeout=240.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_cli_drives_a_running_job(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    job = subprocess.Popen(
        [sys.executable, "examples/train.py", "tune=active", "recipe=lr_only", "trainer.max_epochs=400",
         f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        first = job.stdout.readline()
        match = re.match(r"hotcb: run directory (.+)$", first.strip())
        assert match, first
        run_dir = Path(match.group(1))
        summary = run_dir / "hotcb.tune.summary.json"
        _wait_for(lambda: (read_json(summary) or {}).get("applied", 0) >= 1, what="a first mutation")

        ok = hotcb_cli("--dir", str(run_dir), "--wait", "120", "tune", "set", "acceptance.epsilon=0.002")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert re.search(r"applied at step \d+: acceptance.epsilon=0.002", ok.stdout)

        bad = hotcb_cli("--dir", str(run_dir), "--wait", "120", "tune", "set", "acceptance.epsilon=-1")
        assert bad.returncode == 1
        assert "recipe.acceptance.epsilon: Input should be greater than or equal to 0 (got -1)" in bad.stdout

        off = hotcb_cli("--dir", str(run_dir), "--wait", "120", "tune", "disable")
        assert off.returncode == 0, off.stdout + off.stderr
        ledger = read_jsonl(run_dir / "hotcb.applied.jsonl")
        assert [(r["op"], r["status"]) for r in ledger] == [("set", "applied"), ("set", "rejected"), ("disable", "applied")]
        disable_step = ledger[-1]["step"]
        decisions_at_disable = read_json(summary)["decisions"]
        # let a few more validation epochs pass with tuning off
        _wait_for(lambda: _current_step(run_dir) > disable_step + 60, what="training to go on after disable")

        status = hotcb_cli("--dir", str(run_dir), "tune", "status")
        assert status.returncode == 0 and "mode: off" in status.stdout
    finally:
        job.send_signal(signal.SIGINT)
        try:
            job.wait(timeout=120)
        except subprocess.TimeoutExpired:
            job.kill()

    mutations = read_jsonl(run_dir / "hotcb.tune.mutations.jsonl")
    proposals = [m for m in mutations if m["status"] in ("applied", "suggested", "failed")]
    assert proposals and all(m["step"] <= disable_step for m in proposals), "a mutation was proposed after disable"
    recipe = (run_dir / "hotcb.tune.recipe.yaml").read_text()
    assert "epsilon: 0.002" in recipe
    assert json.loads((run_dir / "hotcb.tune.summary.json").read_text())["decisions"] >= decisions_at_disable


def _current_step(run_dir: Path) -> int:
    """The step the job has reached: a no-op command (`freeze --mode off`) is recorded with it."""
    ping = hotcb_cli("--dir", str(run_dir), "--wait", "60", "freeze", "--mode", "off")
    match = re.search(r"applied at step (\d+)", ping.stdout)
    return int(match.group(1)) if match else 0
