"""Multirun recipe comparisons on the main job, with Hydra's basic and joblib launchers, and a
sweep in which one job fails without harming the others. Slow: real Lightning training."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import ROOT, hotcb_cli, run_python

from hotcb.report import compare_jobs, load_jobs

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_two_recipes_two_seeds(launcher, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["examples/train.py", "-m", "tune=active", "recipe=lr_only,lr_wd", "seed=0,1", "trainer.max_epochs=4",
            f"hydra.sweep.dir={sweep}"]
    if launcher == "joblib":
        args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    proc = run_python(*args, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = load_jobs(sweep)
    assert len(jobs) == 4 and all(j.status == "completed" for j in jobs)
    assert all(len(j.trajectory) == 4 and j.summary["mode"] == "active" for j in jobs)
    rows = compare_jobs(jobs)
    assert [r.label for r in rows] == ["recipe=lr_only", "recipe=lr_wd"]
    out = hotcb_cli("compare", str(sweep))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[2].startswith("| recipe=lr_only | 2    | ")
    assert (sweep / "compare.png").exists()


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_one_failed_job_leaves_the_others_intact(launcher, tmp_path):
    app = shutil.copytree(ROOT / "tests" / "packaging" / "app", tmp_path / "app")
    sweep = tmp_path / "sweep"
    args = [str(app / "train.py"), "-m", "tune=active", "fail=false,true,false", "epochs=5", f"hydra.sweep.dir={sweep}"]
    if launcher == "joblib":
        args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"]
    proc = run_python(*args, cwd=tmp_path, timeout=600)
    assert proc.returncode != 0  # Hydra reports the failed job after the sweep
    jobs = {j.path.name: j for j in load_jobs(sweep)}
    assert [jobs[n].status for n in ("0", "1", "2")] == ["completed", "failed", "completed"]
    for name in ("0", "2"):
        assert len(jobs[name].trajectory) == 5 and jobs[name].summary["decisions"] == 5
        for line in (sweep / name / "hotcb.tune.mutations.jsonl").read_text().splitlines():
            json.loads(line)
    failed = sweep / "1"
    assert json.loads((failed / "hotcb.job.json").read_text())["error"] == "RuntimeError: this job was told to fail"
    assert json.loads((failed / "hotcb.tune.summary.json").read_text())["mode"] == "active"  # closed, not torn
    assert f"hotcb: job failed; its files are in {failed}" in (failed / "train.log").read_text()
    out = hotcb_cli("compare", str(sweep))
    assert out.returncode == 0, out.stderr
    cells = [[c.strip() for c in line.split("|")[1:3]] for line in out.stdout.splitlines()[2:4]]
    assert cells == [["fail=False", "2"], ["fail=True", "0 (+1 failed)"]]  # Hydra writes sweep values as Python does
    assert f"failed: {failed} (tune=active fail=True epochs=5)" in out.stdout
