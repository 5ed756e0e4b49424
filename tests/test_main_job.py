"""The main job in a subprocess: `python examples/train.py tune=active recipe=lr_only`.

Checks that the five tune artifacts are consistent with each other and with the Optuna study.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from conftest import run_python
from hotcb.kernel import APPLIED_FILE
from hotcb.ledger import read_json, read_jsonl


def _run_dir(stdout: str) -> Path:
    match = re.search(r"^hotcb: run directory (.+)$", stdout, re.M)
    assert match, stdout
    return Path(match.group(1))


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("main_job")
    proc = run_python("examples/train.py", "tune=active", "recipe=lr_only", "trainer.max_epochs=8",
                      f"hydra.run.dir={out}/run", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, _run_dir(proc.stdout)


def test_prints_run_dir_and_summary(main_job):
    proc, run_dir = main_job
    assert run_dir.is_dir()
    summary = re.search(r"tune: mode=active proposed=(\d+) applied=(\d+) accepted=(\d+) rejected=(\d+)", proc.stdout)
    assert summary, proc.stdout
    assert re.search(r"final: val/loss=[\d.]+ val/score=[\d.]+", proc.stdout)
    assert re.search(r"values: opt.lr=[\d.e-]+", proc.stdout)


def test_lightning_log_lines_print_once_and_reach_the_job_log(main_job):
    proc, run_dir = main_job
    output = proc.stdout + proc.stderr
    assert output.count("`Trainer.fit` stopped") == 1, output[-3000:]
    assert "`Trainer.fit` stopped" in (run_dir / "train.log").read_text()


def test_all_five_artifacts_exist(main_job):
    _, run_dir = main_job
    for name in ("hotcb.tune.recipe.yaml", "hotcb.tune.mutations.jsonl", "hotcb.tune.segments.jsonl",
                 "hotcb.tune.summary.json", "hotcb.tune.study.sqlite"):
        assert (run_dir / name).is_file(), name
    assert yaml.safe_load((run_dir / "hotcb.tune.recipe.yaml").read_text())["actuators"]["opt"]["mutations"]["lr_mult"]


def test_artifacts_are_consistent(main_job):
    _, run_dir = main_job
    recipe = yaml.safe_load((run_dir / "hotcb.tune.recipe.yaml").read_text())
    lo, hi = recipe["actuators"]["opt"]["mutations"]["lr_mult"]["bounds"]
    mutations = read_jsonl(run_dir / "hotcb.tune.mutations.jsonl")
    segments = read_jsonl(run_dir / "hotcb.tune.segments.jsonl")
    summary = read_json(run_dir / "hotcb.tune.summary.json")

    applied = [m for m in mutations if m["status"] == "applied"]
    assert applied, "the tuner applied nothing"
    for m in applied:
        assert isinstance(m["value"], float) and lo <= m["value"] <= hi
        assert m["patch"] == {"mult": m["value"]}
    evaluated = [s for s in segments if s["decision"] in ("accept", "reject")]
    assert evaluated
    for s in evaluated:
        assert math.isfinite(s["pre"]["val/loss"]) and math.isfinite(s["post"]["val/loss"])
        assert s["end_step"] > s["start_step"]
    for status, key in (("applied", "applied"), ("accepted", "accepted"), ("rejected", "rejected"), ("failed", "failed"),
                        ("refused", "refused")):
        assert summary[key] == sum(m["status"] == status for m in mutations), key
    assert summary["accepted"] == sum(s["decision"] == "accept" for s in segments)
    assert summary["rejected"] == sum(s["decision"] == "reject" for s in segments)


def test_study_trials_carry_the_segment_scores(main_job):
    import optuna

    _, run_dir = main_job
    segments = {(s["family"], s["mutation_id"]): s for s in read_jsonl(run_dir / "hotcb.tune.segments.jsonl")
                if s["decision"] in ("accept", "reject")}
    applied = {m["id"]: m for m in read_jsonl(run_dir / "hotcb.tune.mutations.jsonl") if m["status"] == "applied"}
    storage = f"sqlite:///{run_dir / 'hotcb.tune.study.sqlite'}"
    study = optuna.load_study(study_name="opt.lr_mult", storage=storage)
    complete = {t.number: t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(complete) == len(segments)
    for (_, mutation_id), seg in segments.items():
        trial = complete[applied[mutation_id]["trial"]]
        assert trial.value == pytest.approx(seg["score"], rel=1e-12)
        assert trial.params["value"] == pytest.approx(seg["value"], rel=1e-12)
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]


def test_no_command_ledger_without_commands(main_job):
    _, run_dir = main_job
    assert read_jsonl(run_dir / APPLIED_FILE) == []
