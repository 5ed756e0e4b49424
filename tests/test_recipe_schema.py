"""TuneRecipe: the seed's recipe validates unchanged and round-trips; bad recipes name the field."""

from __future__ import annotations

import pytest
import yaml

from hotcb import HotKernel
from hotcb.config_errors import ConfigError
from hotcb.modules.tune.schemas import TuneRecipe


def test_seed_recipe_validates_and_round_trips(seed_recipe_text):
    data = yaml.safe_load(seed_recipe_text)
    recipe = TuneRecipe.from_dict(data)
    assert recipe.objective.primary == "val/loss"
    assert recipe.actuators["opt"].mutations["lr_mult"].bounds == [0.7, 1.2]
    assert recipe.acceptance.epsilon == 0.001
    again = TuneRecipe.from_dict(recipe.to_dict())
    assert again == recipe
    # everything the seed wrote survives the round trip unchanged
    dumped = recipe.to_dict()
    for section in ("objective", "phases", "actuators"):
        for key, value in data[section].items():
            assert _subset(value, dumped[section][key]), (section, key)


def _subset(small, big) -> bool:
    if isinstance(small, dict):
        return all(k in big and _subset(v, big[k]) for k, v in small.items())
    return small == big


def test_seed_recipe_families(seed_recipe_text):
    families = {f.name: f for f in TuneRecipe.from_dict(yaml.safe_load(seed_recipe_text)).families()}
    assert families["opt.lr_mult"].actuator == "opt.lr" and families["opt.lr_mult"].mode == "mult"
    assert families["loss.sp_mse_w"].actuator == "loss.sp_mse_w" and families["loss.sp_mse_w"].mode == "mult"


BAD = [
    ({"objective": {"primary": "val/loss", "mode": "min", "extra_key": 1}}, "recipe.objective.extra_key: unknown field; accepted: primary, mode, backup_metrics (got 1)"),
    ({"actuators": {"opt": {"mutations": {"lr_mult": {"bounds": [1.5, 1.2]}}}}},
     "recipe.actuators.opt.mutations.lr_mult.bounds: lower bound 1.5 > upper bound 1.2 (got [1.5, 1.2])"),
    ({"objective": {"mode": "maximize"}}, "recipe.objective.mode: must be one of 'min' or 'max' (got 'maximize')"),
    ({"actuators": {"opt": {"mutations": {"lr_mult": {"bounds": [0.5, 2.0], "risk": "high"}}}}},
     "recipe.actuators.opt.mutations.lr_mult.risk: must be one of 'low' or 'medium' (got 'high')"),
    ({"actuators": {"opt": {"mutations": {"lr_mult": {"bounds": [0.5, 2.0], "cooldown": -1}}}}},
     "recipe.actuators.opt.mutations.lr_mult.cooldown: Input should be greater than or equal to 0 (got -1)"),
    ({"acceptance": {"epsilon": "0.002"}}, "recipe.acceptance.epsilon: Input should be a valid number (got '0.002')"),
    ({"actuators": {"opt": {"mutations": {"lr_mult": {"bounds": ["0.5", 2.0]}}}}},
     "recipe.actuators.opt.mutations.lr_mult.bounds.0: Input should be a valid number (got '0.5')"),
]


@pytest.mark.parametrize("data, message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_recipe_names_the_field(data, message):
    with pytest.raises(ConfigError) as info:
        TuneRecipe.from_dict(data)
    assert message in info.value.problems


def test_bad_recipe_fails_before_training(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("version: 1\nobjective: {mode: maximize}\n")
    with pytest.raises(ConfigError, match=r"recipe.objective.mode: must be one of 'min' or 'max'"):
        HotKernel(run_dir=tmp_path / "run", tune_recipe_path=path)


def test_recipe_in_run_dir_is_picked_up(tmp_path, seed_recipe_text):
    (tmp_path / "hotcb.tune.recipe.yaml").write_text(seed_recipe_text)
    kernel = HotKernel(run_dir=tmp_path)
    assert kernel.recipe.acceptance.epsilon == 0.001
