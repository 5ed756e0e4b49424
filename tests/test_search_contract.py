"""One behavioural contract, run over every search option: each `search=` config file shipped in
hotcb/conf/search/ and each `search.algorithm` the schema accepts.

Every option must: propose inside the bounds (log scale for multiplicative families); open one
trial per proposal and close each exactly once, COMPLETE with the segment's score or FAIL;
use the sampler it names, with `search.startup_trials` mapped onto it; and keep per-phase
studies apart.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml
from hydra.utils import get_class
from optuna.trial import TrialState
from tune_driver import assert_trials_match_segments, recipe, run_loop

from hotcb.modules.tune.schemas import SearchSpec
from hotcb.modules.tune.search import default_sampler_factory, journal_storage
from hotcb.modules.tune.storage import JOURNAL_FILE

CONF = Path(__file__).resolve().parents[1] / "hotcb" / "conf" / "search"
SAMPLER_CLASS = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler", "gp": "GPSampler",
                 "qmc": "QMCSampler"}


def _options() -> list:
    files = [pytest.param(yaml.safe_load(p.read_text()), id=f"conf/{p.stem}") for p in sorted(CONF.glob("*.yaml"))]
    algorithms = typing.get_args(SearchSpec.model_fields["algorithm"].annotation)
    return files + [pytest.param({"algorithm": a}, id=f"algorithm={a}") for a in algorithms]


OPTIONS = _options()


def _expected_sampler(option: dict) -> str:
    """The sampler class an option names: its ``_target_``, else its algorithm's."""
    if option.get("sampler"):
        return option["sampler"]["_target_"].rsplit(".", 1)[-1]
    return SAMPLER_CLASS[option.get("algorithm", "tpe")]


def _spec(option: dict, **more) -> dict:
    return {**option, "startup_trials": 2, "seed": 0, **more}


def test_every_shipped_option_is_covered():
    shipped = {p.stem for p in CONF.glob("*.yaml")}
    assert {"tpe", "random", "gp"} <= shipped
    for path in CONF.glob("*.yaml"):
        assert _expected_sampler(yaml.safe_load(path.read_text())) in SAMPLER_CLASS.values(), path


@pytest.mark.parametrize("option", OPTIONS)
def test_sampler_is_the_one_named_with_startup_trials_mapped(option):
    spec = SearchSpec(**_spec(option, startup_trials=5))
    sampler = default_sampler_factory(spec)()
    assert type(sampler).__name__ == _expected_sampler(option)
    if spec.sampler:
        assert isinstance(sampler, get_class(spec.sampler["_target_"]))
    if hasattr(sampler, "_n_startup_trials"):
        assert sampler._n_startup_trials == 5
    assert default_sampler_factory(spec)() is not sampler  # a fresh sampler per study


@pytest.mark.parametrize("option", OPTIONS)
def test_search_contract_in_a_tuned_run(tmp_path, option):
    expected = _expected_sampler(option)
    epochs = 9 if expected == "GPSampler" else 14  # GP fits are slow on a shared CPU
    loop = run_loop(tmp_path, recipe(**_spec(option, phase_conditioned=True, storage="journal")), epochs=epochs)
    studies = assert_trials_match_segments(tmp_path, journal_storage(tmp_path / JOURNAL_FILE))
    assert studies and all(name.startswith("opt.lr_mult@") for name in studies)
    assert loop.kernel.tune.counts["applied"] >= 4 and not loop.kernel.disabled
    for trials in studies.values():
        assert [t.number for t in trials] == list(range(len(trials)))
        for trial in trials:
            assert trial.state in (TrialState.COMPLETE, TrialState.FAIL)
            assert 0.5 <= trial.params["value"] <= 2.0 and trial.distributions["value"].log
    status = loop.kernel.tune.summary()["search_info"]
    assert status["sampler"] == expected
    if expected == "CmaEsSampler":  # CMA-ES itself samples the 1-D studies, not a fallback
        assert any("cma:generation" in t.system_attrs for trials in studies.values() for t in trials)


@pytest.mark.parametrize("option", OPTIONS)
def test_missing_sampler_modules_are_refused_before_training(tmp_path, monkeypatch, option):
    import importlib.util

    from hotcb.config_errors import ConfigError
    from hotcb.modules.tune.search import SAMPLER_NEEDS

    needs = SAMPLER_NEEDS.get(_expected_sampler(option), ())
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in needs else real_find_spec(name, *a))
    if not needs:
        run_loop(tmp_path, recipe(**_spec(option, storage="memory")), epochs=1)
        return
    with pytest.raises(ConfigError, match=f"search: .*{_expected_sampler(option)} needs {needs[0]}"):
        run_loop(tmp_path, recipe(**_spec(option, storage="memory")), epochs=1)


@pytest.mark.parametrize("option", OPTIONS)
def test_proposals_made_inside_the_trainers_inference_mode(tmp_path, option):
    """Lightning and HF decide inside validation, under torch.inference_mode (or no_grad):
    every sampler must propose there too (the GP sampler fits its kernel with autograd)."""
    import torch

    from hotcb import HotKernel
    from hotcb.actuators import mutable_state, optimizer_actuators

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    tune_recipe = recipe(**_spec(option, storage="memory", startup_trials=2))
    kernel = HotKernel(tmp_path, recipe=tune_recipe, tune_mode="active",
                       mutable_state=mutable_state(optimizer_actuators(optimizer)))
    for step in range(1, 9):
        with torch.inference_mode() if step % 2 else torch.no_grad():
            kernel.apply({"step": step, "max_steps": 100,
                          "metric": lambda n, d=None, s=step: 1.0 / s if n == "val/loss" else d}, ["val_epoch_end"])
    assert not kernel.disabled and kernel.tune.counts["applied"] >= 3, kernel.disabled
