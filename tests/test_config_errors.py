"""Broken configs, and the exact messages users get for them.

Each case is a small app config directory (a user's primary config pulling hotcb in, plus
project options that shadow or add to the library's) and command-line overrides. The message
lines are asserted word for word: they are what a user reads to fix the config, so they must
name the option the value came from, the dotted path, the bad value and what is accepted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from hotcb.config_errors import ConfigError
from hotcb.config_origin import ConfigOrigin
from hotcb.schema import validate_hotcb

from conftest import ROOT, hotcb_cli, run_python

APP = "defaults:\n  - hotcb: default\n  - _self_\nseed: 0\n"
LR = "hotcb.recipe.actuators.opt.mutations.lr_mult"
ACCEPTED_TARGETS = "accepted: hotcb.*, optuna.samplers.*, torch.optim.* (add a prefix to hotcb.allow_targets)"

# (id, {relative path: text}, overrides, expected problem lines)
CASES = [
    ("reversed-bounds", {"recipe/mine.yaml": "# @package hotcb.recipe\nactuators:\n  opt:\n    mutations:\n      lr_mult: {bounds: [1.5, 1.2]}\n"},
     ["recipe=mine"],
     [f"recipe=mine → {LR}.bounds: lower bound 1.5 > upper bound 1.2 (got [1.5, 1.2])"]),
    ("shadowed-library-recipe", {"recipe/lr_only.yaml": "# @package hotcb.recipe\nactuators:\n  opt:\n    mutations:\n      lr_mult: {bounds: [0.5, 2.0], risk: high}\n"},
     ["recipe=lr_only"],
     [f"recipe=lr_only → {LR}.risk: must be one of 'low' or 'medium' (got 'high')"]),
    ("one-bound", {"recipe/mine.yaml": "# @package hotcb.recipe\nactuators:\n  opt:\n    mutations:\n      lr_mult: {bounds: [0.5]}\n"},
     ["recipe=mine"],
     [f"recipe=mine → {LR}.bounds: must be [lower, upper], got 1 values (got [0.5])"]),
    ("prior-outside-bounds", {"recipe/mine.yaml": "# @package hotcb.recipe\nactuators:\n  opt:\n    mutations:\n      lr_mult: {bounds: [0.5, 2.0], prior_center: 3.0}\n"},
     ["recipe=mine"],
     [f"recipe=mine → {LR}: prior_center 3.0 lies outside bounds [0.5, 2.0] (got {{'bounds': [0.5, 2.0], 'prior_center': 3.0}})"]),
    ("objective-mode", {"recipe/mine.yaml": "# @package hotcb.recipe\nobjective: {primary: val/loss, mode: maximize}\n"},
     ["recipe=mine"],
     ["recipe=mine → hotcb.recipe.objective.mode: must be one of 'min' or 'max' (got 'maximize')"]),
    ("misspelt-section", {"recipe/mine.yaml": "# @package hotcb.recipe\nacceptence: {epsilon: 0.01}\n"},
     ["recipe=mine"],
     ["recipe=mine → hotcb.recipe.acceptence: unknown field; accepted: version, objective, phases, actuators, "
      "search, acceptance, safety (got {'epsilon': 0.01})"]),
    ("horizon", {"recipe/mine.yaml": "# @package hotcb.recipe\nacceptance: {horizon: soon}\n"},
     ["recipe=mine"],
     ["recipe=mine → hotcb.recipe.acceptance.horizon: horizon must be next_val_epoch_end, val_epochs:N or steps:N (N >= 1) (got 'soon')"]),
    ("phase-order", {"recipe/mine.yaml": "# @package hotcb.recipe\nphases:\n  early: {start_frac: 0.5, end_frac: 0.2}\n"},
     ["recipe=mine"],
     ["recipe=mine → hotcb.recipe.phases.early: start_frac 0.5 must be < end_frac 0.2 (got {'start_frac': 0.5, 'end_frac': 0.2})"]),
    ("string-number", {"recipe/mine.yaml": "# @package hotcb.recipe\nsearch: {algorithm: tpe, startup_trials: '8'}\n"},
     ["recipe=mine"],
     ["recipe=mine → hotcb.recipe.search.startup_trials: Input should be a valid integer (got '8')"]),
    ("recipe-version", {"recipe/mine.yaml": "# @package hotcb.recipe\nversion: 2\n"},
     ["recipe=mine"],
     ["recipe=mine → hotcb.recipe.version: must be one of 1 (got 2)"]),
    ("search-algorithm", {"search/bayes.yaml": "# @package hotcb.recipe.search\nalgorithm: bayes\n"},
     ["search=bayes"],
     ["search=bayes → hotcb.recipe.search.algorithm: must be one of 'tpe', 'random', 'cmaes', 'gp' or 'qmc' (got 'bayes')"]),
    ("search-target-refused", {"search/evil.yaml": "# @package hotcb.recipe.search\nsampler: {_target_: os.system, command: ls}\n"},
     ["search=evil"],
     [f"search=evil → hotcb.recipe.search.sampler._target_: target 'os.system' is not allowed; {ACCEPTED_TARGETS}"]),
    ("adapter-target-refused", {"adapter/evil.yaml": "# @package hotcb.adapter\n_target_: subprocess.Popen\n"},
     ["adapter=evil"],
     [f"adapter=evil → hotcb.adapter._target_: target 'subprocess.Popen' is not allowed; {ACCEPTED_TARGETS}"]),
    ("actuator-target-refused", {}, ["+hotcb.actuators.knob._target_=mypkg.Knob"],
     ["override +hotcb.actuators.knob._target_=mypkg.Knob → hotcb.actuators.knob._target_: target 'mypkg.Knob' is not allowed; "
      "accepted: hotcb.*, optuna.samplers.*, torch.optim.* (add a prefix to hotcb.allow_targets)"]),
    ("tune-mode", {"tune/fast.yaml": "# @package hotcb.tune\nmode: activ\n"},
     ["tune=fast"],
     ["tune=fast → hotcb.tune.mode: must be one of 'off', 'observe', 'suggest', 'active' or 'replay' (got 'activ')"]),
    ("replay-without-source", {}, ["tune=replay"],
     ["tune=replay → hotcb.tune.replay_from: required value is missing (???); set it"]),
    # Valid by the schema, but the run would trip over them: found now, not at the first proposal.
    ("sampler-argument-typo", {}, ["tune=active", "search=tpe", "+hotcb.recipe.search.sampler.n_startup_trialz=3"],
     ["override +hotcb.recipe.search.sampler.n_startup_trialz=3 → hotcb.recipe.search.sampler.n_startup_trialz: TPESampler "
      "takes no argument 'n_startup_trialz'; accepted: consider_prior, prior_weight, consider_magic_clip, consider_endpoints, "
      "n_startup_trials, n_ei_candidates, gamma, weights, seed, multivariate, group, warn_independent_sampling, "
      "constant_liar, constraints_func"]),
    ("sampler-refuses-value", {}, ["tune=active", "search=qmc", "hotcb.recipe.search.sampler.qmc_type=bogus"],
     ["override hotcb.recipe.search.sampler.qmc_type=bogus → hotcb.recipe.search.sampler: QMCSampler cannot be built from these arguments: "
      "ValueError: The `qmc_type='bogus'` is invalid. Choose either `halton` or `sobol`."]),
    ("warm-start-missing", {}, ["tune=active", "hotcb.recipe.search.warm_start=[/no/such/run]"],
     ["override hotcb.recipe.search.warm_start=[/no/such/run] → hotcb.recipe.search.warm_start: "
      "no run directory or study file at /no/such/run"]),
    ("replay-source-missing", {}, ["tune=replay", "hotcb.tune.replay_from=/no/such/run"],
     ["override hotcb.tune.replay_from=/no/such/run → hotcb.tune.replay_from: replay source /no/such/run has no "
      "hotcb.tune.mutations.jsonl or hotcb.tune.recipe.yaml (is it a tuned run directory?)"]),
    ("override-epsilon", {}, ["recipe=lr_wd", "hotcb.recipe.acceptance.epsilon=-1"],
     ["override hotcb.recipe.acceptance.epsilon=-1 → hotcb.recipe.acceptance.epsilon: Input should be greater than or equal to 0 (got -1)"]),
    # Checked on the family or group node, caused by an override below it.
    ("override-below-the-node", {}, [f"{LR}.bounds=[0,1]"],
     [f"override {LR}.bounds=[0,1] → hotcb.recipe.actuators.opt: mutations.lr_mult: a multiplicative mutation needs "
      "bounds > 0, got lower bound 0.0 (got {'enabled': True, 'mutations': {'lr_mult': {'bounds': [0, 1], 'cooldown': 0, ...)"]),
    ("negative-seed", {}, ["hotcb.recipe.search.seed=-1"],
     ["override hotcb.recipe.search.seed=-1 → hotcb.recipe.search.seed: Input should be greater than or equal to 0 (got -1)"]),
    ("infinite-epsilon", {}, ["hotcb.recipe.acceptance.epsilon=inf"],
     ["override hotcb.recipe.acceptance.epsilon=inf → hotcb.recipe.acceptance.epsilon: Input should be a finite number (got inf)"]),
    ("override-debounce", {}, ["hotcb.debounce_steps=0"],
     ["override hotcb.debounce_steps=0 → hotcb.debounce_steps: Input should be greater than or equal to 1 (got 0)"]),
    ("override-freeze", {}, ["hotcb.freeze=frozen"],
     ["override hotcb.freeze=frozen → hotcb.freeze: must be one of 'off', 'prod' or 'replay' (got 'frozen')"]),
    ("unknown-root-key", {}, ["+hotcb.tuning=active"],
     ["override +hotcb.tuning=active → hotcb.tuning: unknown field; accepted: run_dir, tune, recipe, adapter, actuators, "
      "freeze, auto_disable_on_error, debounce_steps, validate_only, allow_targets (got 'active')"]),
    ("primary-config-value", {"app.yaml": APP + "hotcb:\n  recipe:\n    search:\n      seed: ${seed}\n"},
     ["seed=zero"],
     ["app.yaml (${seed} from override seed=zero) → hotcb.recipe.search.seed: Input should be a valid integer (got 'zero')"]),
    # Hydra reads `# @package` only from the comment lines at the top: below another line it
    # is ignored and the recipe lands at the root key `recipe`, where no run would read it.
    ("package-line-not-first", {"recipe/mine.yaml": "# yaml-language-server: $schema=recipe.schema.json\n"
                                                    "# @package hotcb.recipe\nacceptance: {epsilon: 0.002}\n"},
     ["recipe=mine"],
     ["recipe=mine → recipe: Hydra put this option at the top-level key 'recipe', outside hotcb, so the run would not "
      "use it; make '# @package hotcb.recipe' the first line of recipe/mine.yaml"]),
    ("search-without-package", {"search/fast.yaml": "algorithm: random\n"},
     ["search=fast"],
     ["search=fast → search: Hydra put this option at the top-level key 'search', outside hotcb, so the run would not "
      "use it; make '# @package hotcb.recipe.search' the first line of search/fast.yaml"]),
    ("unresolved-interpolation", {}, ["hotcb.run_dir=${oops}"],
     ["override hotcb.run_dir=${oops} → hotcb.run_dir: cannot resolve: Interpolation key 'oops' not found"]),
    ("several-at-once", {"recipe/mine.yaml": "# @package hotcb.recipe\nactuators:\n  opt:\n    mutations:\n      wd_mult: {bounds: [0.0, 2.0]}\n"},
     ["recipe=mine", "hotcb.debounce_steps=0"],
     ["recipe=mine → hotcb.recipe.actuators.opt: mutations.wd_mult: a multiplicative mutation needs bounds > 0, got lower bound 0.0 "
      "(got {'mutations': {'wd_mult': {'bounds': [0.0, 2.0]}}})",
      "override hotcb.debounce_steps=0 → hotcb.debounce_steps: Input should be greater than or equal to 1 (got 0)"]),
    ("every-kind-at-once", {}, ["tune=replay", "hotcb.recipe.search.seed=zero", "hotcb.adapter._target_=os.system"],
     ["tune=replay → hotcb.tune.replay_from: required value is missing (???); set it",
      "override hotcb.recipe.search.seed=zero → hotcb.recipe.search.seed: Input should be a valid integer (got 'zero')",
      f"override hotcb.adapter._target_=os.system → hotcb.adapter._target_: target 'os.system' is not allowed; {ACCEPTED_TARGETS}"]),
]


def make_app(root: Path, files: dict[str, str]) -> Path:
    conf = root / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "app.yaml").write_text(APP)
    for rel, text in files.items():
        (conf / rel).parent.mkdir(parents=True, exist_ok=True)
        (conf / rel).write_text(text)
    return conf


def problems(conf: Path, overrides: list[str]) -> list[str]:
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("app", overrides=overrides, return_hydra_config=True)
        with pytest.raises(ConfigError) as info:
            validate_hotcb(cfg, ConfigOrigin.from_hydra(cfg.hydra))
    return info.value.problems


def test_there_are_at_least_fifteen_broken_configs():
    assert len(CASES) >= 15


@pytest.mark.parametrize(("files", "overrides", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_config_message(files, overrides, expected, tmp_path):
    assert problems(make_app(tmp_path, files), overrides) == expected


def test_the_issue_example_word_for_word(tmp_path):
    """A project's recipe/lr_only.yaml shadows the library's and carries the reversed bounds."""
    conf = make_app(tmp_path, {"recipe/lr_only.yaml": "# @package hotcb.recipe\nactuators:\n  opt:\n    mutations:\n"
                                                      "      lr_mult: {bounds: [1.5, 1.2]}\n"})
    line = problems(conf, ["recipe=lr_only"])[0]
    assert line.startswith(f"recipe=lr_only → {LR}.bounds: lower bound 1.5 > upper bound 1.2")


def test_user_allowlist_admits_a_custom_target(tmp_path):
    conf = make_app(tmp_path, {})
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("app", overrides=["+hotcb.actuators.knob._target_=mypkg.Knob", "hotcb.allow_targets=[mypkg]"])
        config = validate_hotcb(cfg)
    assert config.actuators["knob"]["_target_"] == "mypkg.Knob"


def test_cli_validate_exits_nonzero_with_the_messages(tmp_path):
    conf = make_app(tmp_path, dict(CASES[0][1]))
    bad = hotcb_cli("config", "validate", "--config-dir", str(conf), "--config-name", "app", "recipe=mine", "tune=active")
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[-2:] == ["hotcb: error: invalid configuration (cfg.hotcb):", f"  {CASES[0][3][0]}"]
    good = hotcb_cli("config", "validate", "--config-dir", str(conf), "--config-name", "app", "tune=active", "search=gp")
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == "hotcb: configuration is valid (adapter=lightning hotcb=default recipe=lr_only search=gp tune=active)"


def test_train_validate_only_checks_before_building_anything(tmp_path):
    """examples/train.py with validate_only: no model, no data, no run directory; bad configs exit 2."""
    args = ["examples/train.py", f"hydra.run.dir={tmp_path / 'run'}", "hotcb.validate_only=true"]
    good = run_python(*args, "tune=active", "recipe=adam", "search=qmc")
    assert good.returncode == 0, good.stderr
    assert "hotcb: configuration is valid" in good.stdout
    assert not list((tmp_path / "run").glob("hotcb.*"))
    bad = run_python(*args, "tune=active", f"{LR[:-len('.lr_mult')]}.lr_mult.bounds=[1.5,1.2]", "hotcb.recipe.objective.mode=maximize")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "hotcb: invalid configuration (cfg.hotcb):",
        "  override hotcb.recipe.objective.mode=maximize → hotcb.recipe.objective.mode: must be one of 'min' or 'max' (got 'maximize')",
        f"  override {LR}.bounds=[1.5,1.2] → {LR}.bounds: lower bound 1.5 > upper bound 1.2 (got [1.5, 1.2])",
    ]
    assert (ROOT / "examples" / "train.py").exists()


def test_config_error_survives_pickling():
    """joblib and submitit hand a failed job's exception back pickled: the lines must survive."""
    import pickle

    error = ConfigError([CASES[0][3][0]], "cfg.hotcb")
    copy = pickle.loads(pickle.dumps(error))
    assert copy.problems == error.problems and str(copy) == str(error)


def test_an_option_found_through_hydra_searchpath_is_checked_too(tmp_path):
    """The defaults list is computed with the job's hydra.* overrides: hydra.searchpath decides
    where `recipe=nohdr` is found."""
    (tmp_path / "extra" / "recipe").mkdir(parents=True)
    (tmp_path / "extra" / "recipe" / "nohdr.yaml").write_text("acceptance: {epsilon: 0.5}\n")
    bad = run_python("examples/train.py", f"hydra.searchpath=[file://{tmp_path / 'extra'}]", "recipe=nohdr",
                     "hotcb.validate_only=true", f"hydra.run.dir={tmp_path / 'run'}")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "  recipe=nohdr → recipe: Hydra put this option at the top-level key 'recipe', outside hotcb, so the run "
        "would not use it; make '# @package hotcb.recipe' the first line of recipe/nohdr.yaml")


def test_a_global_package_option_beside_an_app_key_of_the_same_name_is_valid(tmp_path):
    """Only a file whose header was not read lands at the group's key: `_global_` is a choice."""
    conf = make_app(tmp_path, {"recipe/glob.yaml": "# @package _global_\nhotcb:\n  recipe:\n    acceptance: {epsilon: 0.01}\n"})
    (conf / "app.yaml").write_text(APP + "adapter: {rank: 8}\nsearch: {beam: 4}\n")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("app", overrides=["recipe=glob"], return_hydra_config=True)
        config = validate_hotcb(cfg, ConfigOrigin.from_hydra(cfg.hydra))
    assert config.recipe.acceptance.epsilon == 0.01
