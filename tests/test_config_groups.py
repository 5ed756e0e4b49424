"""Every option of every library config group composes, validates and instantiates.

The options are discovered from the installed package (``hotcb/conf/<group>/*.yaml``), so a new
option file is tested without touching this file. Composition goes through a user-style app
config that pulls hotcb in with one defaults line, as the docs tell users to do.
"""

from __future__ import annotations

import importlib.util
from importlib.resources import files
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from hotcb.config_origin import ConfigOrigin
from hotcb.launch import build
from hotcb.modules.tune.search import default_sampler_factory
from hotcb.schema import validate_hotcb

CONF = files("hotcb.conf")
GROUPS = ("hotcb", "tune", "recipe", "search", "adapter")
OPTIONS = [
    (group, entry.name[: -len(".yaml")])
    for group in GROUPS
    for entry in sorted(CONF.joinpath(group).iterdir(), key=lambda e: e.name)
    if entry.name.endswith(".yaml")
]
APP = "defaults:\n  - hotcb: default\n  - _self_\nseed: 0\n"


def test_discovery_finds_the_documented_options():
    found = {g: {o for gg, o in OPTIONS if gg == g} for g in GROUPS}
    assert found["tune"] == {"off", "observe", "suggest", "active", "replay"}
    assert {"lr_only", "lr_wd", "adam", "loss_weights", "full"} <= found["recipe"]
    assert found["search"] >= {"tpe", "random", "cmaes", "gp", "qmc"}
    assert found["adapter"] >= {"lightning", "hf", "torch"}
    assert found["hotcb"] == {"default"}


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "app.yaml").write_text(APP)
    return conf


def _compose(conf: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("app", overrides=overrides, return_hydra_config=True)
        return cfg, validate_hotcb(cfg, ConfigOrigin.from_hydra(cfg.hydra))


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_validates_and_instantiates(group, option, app_dir, tmp_path):
    overrides = [f"{group}={option}"]
    if (group, option) == ("tune", "replay"):
        # replay refuses a directory that is not a tuned run, or one that kept no mutation
        (tmp_path / "hotcb.tune.mutations.jsonl").write_text(
            '{"id": "m0001", "status": "applied", "step": 1, "actuator": "opt.lr", "patch": {"mult": 1.5}}\n'
            '{"id": "m0001", "status": "accepted", "step": 2}\n')
        overrides.append(f"hotcb.tune.replay_from={tmp_path}")
    cfg, config = _compose(app_dir, overrides)
    assert cfg.hydra.runtime.choices[group] == option

    target = config.adapter["_target_"]
    if not importlib.util.find_spec(target.rsplit(".", 1)[0].split(".")[0]) or (
        target.startswith("hotcb.adapters.hf") and (
            importlib.util.find_spec("hotcb.adapters.hf") is None or importlib.util.find_spec("transformers") is None)
    ):
        pytest.skip(f"{target} is not importable here")

    hot = build(config, tmp_path / "run")
    try:
        assert type(hot.adapter).__name__ == target.rsplit(".", 1)[1]
        assert hot.kernel.recipe == config.recipe
        if config.tune.mode != "off":
            assert hot.kernel.tune.mode.value == config.tune.mode
        sampler = default_sampler_factory(config.recipe.search)()
        expected = (config.recipe.search.sampler or {}).get("_target_")
        if expected:
            assert type(sampler).__name__ == expected.rsplit(".", 1)[1]
        if group == "search":
            assert config.recipe.search.algorithm == option
    finally:
        hot.kernel.close()


def test_search_option_merges_over_the_recipe_search_section(app_dir):
    """search=X replaces algorithm and sampler; the recipe's startup_trials fills the sampler."""
    _, config = _compose(app_dir, ["recipe=lr_only", "search=gp", "hotcb.recipe.search.seed=7"])
    assert config.recipe.search.algorithm == "gp"
    assert config.recipe.search.startup_trials == 4  # from recipe=lr_only
    sampler = default_sampler_factory(config.recipe.search)()
    assert type(sampler).__name__ == "GPSampler"
    assert sampler._n_startup_trials == 4
    _, plain = _compose(app_dir, ["recipe=lr_only"])
    assert plain.recipe.search.sampler is None and plain.recipe.search.algorithm == "tpe"


def test_adam_recipe_betas_are_set_mode_families(app_dir):
    _, config = _compose(app_dir, ["recipe=adam"])
    families = {f.name: f for f in config.recipe.families()}
    assert families["opt.beta1"].mode == "set" and families["opt.beta1"].index == 0
    assert families["opt.beta2"].mode == "set" and families["opt.beta2"].index == 1
    assert families["opt.beta2"].actuator == "opt.betas"
    assert families["opt.lr_mult"].mode == "mult"


def _fields(model: type) -> dict:
    """Every field of a pydantic model, nested models expanded, as a tree of names."""
    from pydantic import BaseModel

    out = {}
    for name, field in model.model_fields.items():
        tp = field.annotation
        out[name] = _fields(tp) if isinstance(tp, type) and issubclass(tp, BaseModel) else None
    return out


def test_recipe_schema_defaults_hold_every_field_at_the_models_default():
    """hotcb/schema/recipe.yaml makes each field settable without `+`: it must list every
    field (but the free-form actuators and phases) and agree with TuneRecipe's defaults."""
    import yaml

    from hotcb.modules.tune.schemas import TuneRecipe

    data = yaml.safe_load(CONF.joinpath("hotcb", "schema", "recipe.yaml").read_text())
    expected = _fields(TuneRecipe)
    del expected["actuators"], expected["phases"]
    assert {k: (set(v) if v else None) for k, v in expected.items()} == \
        {k: (set(v) if isinstance(v, dict) else None) for k, v in data.items()}
    defaults = TuneRecipe().model_dump()
    assert TuneRecipe.model_validate(data).model_dump() == defaults


def test_any_recipe_field_is_set_without_a_plus(app_dir):
    cfg, config = _compose(app_dir, ["recipe=adam", "hotcb.recipe.safety.max_step_mult=2",
                                     "hotcb.recipe.acceptance.snapshot_dir=/tmp/snaps", "hotcb.recipe.search.phase_conditioned=true"])
    assert (config.recipe.safety.max_step_mult, config.recipe.acceptance.snapshot_dir) == (2, "/tmp/snaps")
    assert config.recipe.search.phase_conditioned is True
    assert config.recipe.actuators["opt"].mutations  # the recipe's own sections are untouched
