"""``hotcb compare`` over a real multirun of a small app: one row per recipe, a PNG per metric."""

from __future__ import annotations

import shutil

from conftest import ROOT, hotcb_cli, run_python

from hotcb.report import compare_jobs, load_jobs

APP = ROOT / "tests" / "packaging" / "app"


def test_compare_a_two_recipe_two_seed_multirun(tmp_path):
    app = shutil.copytree(APP, tmp_path / "app")
    sweep = tmp_path / "sweep"
    proc = run_python(str(app / "train.py"), "-m", "tune=active", "recipe=lr_only,tiny", "seed=0,1", "epochs=3",
                      f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    jobs = load_jobs(sweep)
    assert [j.path.name for j in jobs] == ["0", "1", "2", "3"]  # `latest` (a link) is not a job
    assert all(j.status == "completed" and len(j.trajectory) == 3 for j in jobs)
    rows = compare_jobs(jobs)
    assert [r.label for r in rows] == ["recipe=lr_only", "recipe=tiny"]
    for row in rows:
        finals = [j.final("val/loss") for j in row.jobs]
        assert row.metric[0] == sum(finals) / 2
        assert row.mutations == sum(j.summary["applied"] for j in row.jobs) / 2

    out = hotcb_cli("compare", str(sweep), "--plot", str(tmp_path / "cmp.png"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split("|")[1:-1] == [" group          ", " runs ", " final val/loss  ", " final val/score  ",
                                         " mutations/run ", " accept rate "]
    assert lines[2].startswith("| recipe=lr_only | 2    | ") and lines[3].startswith("| recipe=tiny    | 2    | ")
    assert lines[4] == f"plot: {tmp_path / 'cmp.png'}"
    assert (tmp_path / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_refuses_a_directory_without_jobs(tmp_path):
    out = hotcb_cli("compare", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip() == f"hotcb: error: {tmp_path} holds no Hydra jobs (no */.hydra/overrides.yaml)"


def test_compare_counts_a_job_that_failed_validation(tmp_path):
    """A multirun job whose config is invalid fails before building anything, the sweep goes on,
    and the comparison lists it as failed; a group of one run shows no spread."""
    app = shutil.copytree(APP, tmp_path / "app")
    sweep = tmp_path / "sweep"
    proc = run_python(str(app / "train.py"), "-m", "tune=active", "hotcb.recipe.acceptance.epsilon=-1,0.001", "epochs=2",
                      f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 1  # Hydra's exit code for a sweep with a failed job
    assert "hotcb.recipe.acceptance.epsilon: Input should be greater than or equal to 0 (got -1)" in proc.stderr
    assert [j.status for j in load_jobs(sweep)] == ["failed", "completed"]

    out = hotcb_cli("compare", str(sweep), "--plot", str(tmp_path / "cmp.png"))
    assert out.returncode == 0, out.stderr
    failed, done = (line.split("|")[1:-1] for line in out.stdout.splitlines()[2:4])
    assert [c.strip() for c in failed] == ["hotcb.recipe.acceptance.epsilon=-1", "0 (+1 failed)", "-", "-", "-", "-"]
    assert done[1].strip() == "1" and "±" not in done[2] and float(done[2]) > 0
