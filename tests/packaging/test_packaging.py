"""hotcb as a user gets it: the wheel installed in a fresh environment, used by a standalone app
outside the repository. Run by `nox -s packaging` (skipped against a source checkout)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

import hotcb

APP = Path(__file__).resolve().parent / "app"
INSTALLED = not (Path(hotcb.__file__).resolve().parents[1] / "noxfile.py").exists()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not INSTALLED, reason="needs hotcb installed from the wheel: nox -s packaging")]


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return shutil.copytree(APP, tmp_path / "app")


def test_the_wheel_ships_every_config_group_and_the_plugin():
    import hydra_plugins.hotcb_searchpath as plugin

    assert "site-packages" in Path(plugin.__file__).parts
    conf = files("hotcb.conf")
    for group, option in [("hotcb", "default"), ("tune", "active"), ("recipe", "lr_only"), ("search", "gp"), ("adapter", "torch")]:
        assert conf.joinpath(group, f"{option}.yaml").is_file()


def test_app_composes_active_lr_only_gp_through_the_plugin(app):
    from hydra import compose, initialize_config_dir

    from hotcb.config_origin import ConfigOrigin
    from hotcb.modules.tune.search import default_sampler_factory
    from hotcb.schema import validate_hotcb

    overrides = ["tune=active", "recipe=lr_only", "search=gp"]
    with initialize_config_dir(config_dir=str(app / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
        config = validate_hotcb(cfg, ConfigOrigin.from_hydra(cfg.hydra))
    assert cfg.hydra.runtime.choices["recipe"] == "lr_only"
    assert config.tune.mode == "active"
    assert type(default_sampler_factory(config.recipe.search)()).__name__ == "GPSampler"


def test_app_trains_and_the_cli_validates(app, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(app / "train.py"), "tune=active", "recipe=lr_only", "search=gp", "epochs=2",
                           f"hydra.run.dir={run_dir}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / "hotcb.tune.summary.json").exists()
    hotcb_exe = Path(sys.executable).with_name("hotcb")
    check = subprocess.run([str(hotcb_exe), "config", "validate", "--config-dir", str(app / "conf"), "--config-name", "train",
                            "tune=active", "recipe=lr_only", "search=gp"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "hotcb: configuration is valid (adapter=torch hotcb=default recipe=lr_only search=gp tune=active)"
