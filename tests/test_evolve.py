"""evolve_recipe and `hotcb tune evolve`: learning across runs from their summaries."""

from __future__ import annotations

import math

import pytest
from conftest import hotcb_cli
from tune_driver import recipe, run_loop

from hotcb.modules.tune.recipe import evolve_recipe, load_recipe
from hotcb.modules.tune.schemas import TuneRecipe

BASE = TuneRecipe.from_dict({
    "actuators": {
        "opt": {"mutations": {"lr_mult": {"bounds": [0.5, 2.0], "prior_center": 1.0},
                              "wd": {"bounds": [0.0, 0.01]},
                              "beta2": {"bounds": [0.9, 0.99]}}},
        "loss": {"keys": {"aux": {"mode": "mult", "bounds": [0.25, 4.0]}}},
    }
})


def summary(**families) -> dict:
    """A run summary's ``families`` section: family=(tried, [(value, score), ...])."""
    return {"families": {name.replace("__", "."): {"tried": tried, "accepted": len(wins),
                                                   "accepted_values": [{"value": v, "score": s} for v, s in wins]}
                         for name, (tried, wins) in families.items()}}


def spec(recipe: TuneRecipe, name: str):
    group, key = name.split(".")
    actuators = recipe.actuators[group]
    return {**actuators.mutations, **actuators.keys}[key]


def test_prior_moves_toward_score_weighted_winners_on_a_log_scale():
    evolved = evolve_recipe(BASE, [summary(opt__lr_mult=(4, [(1.5, 0.3), (0.8, 0.1)]))], alpha=0.5)
    winner = math.exp((0.3 * math.log(1.5) + 0.1 * math.log(0.8)) / 0.4)
    assert spec(evolved, "opt.lr_mult").prior_center == pytest.approx(math.exp(0.5 * math.log(winner)))
    assert spec(evolved, "opt.lr_mult").bounds == [0.5, 2.0]  # two winners, spread out: bounds kept
    assert evolve_recipe(BASE, [summary(opt__lr_mult=(4, [(1.5, 0.3)]))], alpha=0.0) == BASE


def test_bounds_narrow_around_consistent_winners():
    wins = [(1.2, 0.1), (1.3, 0.2), (1.25, 0.1)]
    evolved = spec(evolve_recipe(BASE, [summary(opt__lr_mult=(5, wins))], alpha=1.0), "opt.lr_mult")
    lo, hi = evolved.bounds
    assert math.log(hi / lo) == pytest.approx(0.5 * math.log(4.0))  # half the (log) span
    assert lo <= 1.2 and hi >= 1.3 and lo <= evolved.prior_center <= hi


def test_narrowed_multiplier_bounds_keep_room_on_both_sides_of_one():
    """Winners that all raised the lr (1.5-1.6) would centre the window above 1: the next run
    could never lower it. The window shifts to keep 1 inside, its width and the winners kept."""
    wins = [(1.5, 0.1), (1.55, 0.2), (1.6, 0.1)]
    lo, hi = spec(evolve_recipe(BASE, [summary(opt__lr_mult=(5, wins))], alpha=1.0), "opt.lr_mult").bounds
    margin = 0.1 * math.log(4.0)
    assert math.log(lo) == pytest.approx(-margin) and hi >= 1.6
    assert math.log(hi / lo) == pytest.approx(0.5 * math.log(4.0))


def test_bounds_widen_when_winners_sit_on_an_edge():
    high = spec(evolve_recipe(BASE, [summary(opt__lr_mult=(3, [(1.95, 0.2), (2.0, 0.1)]))]), "opt.lr_mult")
    assert high.bounds[0] == 0.5 and high.bounds[1] == pytest.approx(2.0 * 4.0**0.5)
    low = spec(evolve_recipe(BASE, [summary(loss__aux=(3, [(0.26, 0.2)]))]), "loss.aux")
    assert low.bounds[0] == pytest.approx(0.25 / 16.0**0.5) and low.bounds[1] == 4.0


def test_widening_crosses_no_natural_limit():
    wd = spec(evolve_recipe(BASE, [summary(opt__wd=(3, [(0.0, 0.2), (0.0005, 0.1)]))]), "opt.wd")
    assert wd.bounds[0] == 0.0 and wd.bounds[1] == 0.01  # weight decay never goes negative
    beta2 = spec(evolve_recipe(BASE, [summary(opt__beta2=(3, [(0.989, 0.2)]))]), "opt.beta2")
    assert beta2.bounds[1] < 1.0


def test_a_family_that_never_won_is_disabled_after_enough_tries():
    runs = [summary(loss__aux=(3, [])), summary(loss__aux=(3, []), opt__lr_mult=(2, []))]
    evolved = evolve_recipe(BASE, runs)
    assert "loss.aux" not in {f.name for f in evolved.families()}
    assert "opt.lr_mult" in {f.name for f in evolved.families()}  # 2 tries: too few to judge
    assert evolve_recipe(BASE, runs[:1]) == BASE


def test_bad_alpha_is_refused():
    with pytest.raises(ValueError, match="alpha must be in"):
        evolve_recipe(BASE, [], alpha=1.5)


def test_cli_evolves_a_recipe_from_real_runs(tmp_path):
    runs = [tmp_path / f"run{i}" for i in range(2)]
    for i, run in enumerate(runs):
        run_loop(run, recipe(storage="journal"), epochs=10, seed=i)
    base = tmp_path / "base.yaml"
    assert hotcb_cli("--dir", str(runs[0]), "tune", "export-recipe", "--out", str(base)).returncode == 0
    out = tmp_path / "evolved.yaml"
    result = hotcb_cli("tune", "evolve", *map(str, runs), "--base", str(base), "--out", str(out), "--alpha", "0.5")
    assert result.returncode == 0, result.stderr
    assert "opt.lr_mult: prior_center" in result.stdout and f"wrote {out}" in result.stdout
    assert out.read_text().startswith("# @package hotcb.recipe\n")
    evolved = spec(load_recipe(out), "opt.lr_mult")
    assert evolved.prior_center > 1.0  # in these runs a higher lr always won


def test_cli_evolve_names_a_directory_without_summary(tmp_path):
    result = hotcb_cli("tune", "evolve", str(tmp_path), "--out", str(tmp_path / "x.yaml"))
    assert result.returncode == 2 and "has no tune summary" in result.stderr
