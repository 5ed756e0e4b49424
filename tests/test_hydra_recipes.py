"""Recipes under version control: a project's conf/recipe/ shadows or adds to the library's,
and an exported recipe is usable as ``recipe=NAME`` unchanged."""

from __future__ import annotations

import shutil

import yaml
from conftest import ROOT, hotcb_cli, run_python
from hydra import compose, initialize_config_dir

from hotcb.modules.tune.recipe import load_recipe
from hotcb.schema import validate_hotcb

APP = ROOT / "tests" / "packaging" / "app"


def test_project_recipe_shadows_and_adds(tmp_path):
    app = shutil.copytree(APP, tmp_path / "app")
    (app / "conf" / "recipe" / "lr_only.yaml").write_text(
        "# @package hotcb.recipe\nactuators:\n  opt:\n    mutations:\n      lr_mult: {bounds: [0.9, 1.1]}\n")
    with initialize_config_dir(config_dir=str(app / "conf"), version_base="1.3"):
        shadowed = validate_hotcb(compose("train", overrides=["recipe=lr_only"]))
        added = validate_hotcb(compose("train", overrides=["recipe=tiny"]))
        library = validate_hotcb(compose("train", overrides=["recipe=lr_wd"]))
    assert shadowed.recipe.actuators["opt"].mutations["lr_mult"].bounds == [0.9, 1.1]
    assert shadowed.recipe.search.algorithm == "tpe"  # nothing of the library's lr_only merged in
    assert shadowed.recipe.acceptance.baseline == "trend" and "wd_mult" not in shadowed.recipe.actuators["opt"].mutations
    assert added.recipe.search.algorithm == "random"
    assert set(library.recipe.actuators["opt"].mutations) == {"lr_mult", "wd_mult"}


def test_export_recipe_round_trip(tmp_path):
    """run → tune export-recipe → conf/recipe/mine.yaml → recipe=mine runs with the same recipe."""
    app = shutil.copytree(APP, tmp_path / "app")
    first = tmp_path / "first"
    proc = run_python(str(app / "train.py"), "tune=active", "recipe=lr_wd", "epochs=2", f"hydra.run.dir={first}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mine = app / "conf" / "recipe" / "mine.yaml"
    out = hotcb_cli("--dir", str(first), "tune", "export-recipe", "--out", str(mine))
    assert out.returncode == 0, out.stderr
    assert mine.read_text().startswith("# @package hotcb.recipe\n")

    second = tmp_path / "second"
    proc = run_python(str(app / "train.py"), "tune=active", "recipe=mine", "epochs=2", f"hydra.run.dir={second}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exported = load_recipe(yaml.safe_load(mine.read_text()))
    assert load_recipe(second / "hotcb.tune.recipe.yaml") == exported
    assert load_recipe(first / "hotcb.tune.recipe.yaml") == exported
