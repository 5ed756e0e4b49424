"""search.warm_start: a new run's studies start from earlier runs' completed trials, same space only."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState
from tune_driver import recipe, run_loop, trials_by_study

from hotcb.config_errors import ConfigError
from hotcb.modules.tune.search import journal_storage
from hotcb.modules.tune.storage import JOURNAL_FILE, STUDY_FILE


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("earlier")
    run_loop(run_dir, epochs=12)
    return run_dir


def _completed(trials):
    return [(t.params["value"], t.value) for t in trials if t.state is TrialState.COMPLETE]


@pytest.mark.parametrize("as_file", [False, True], ids=["run-dir", "study-file"])
def test_warm_start_seeds_the_new_study_with_earlier_trials(tmp_path, earlier_run, as_file):
    source = earlier_run / STUDY_FILE if as_file else earlier_run
    earlier = _completed(trials_by_study(earlier_run)["opt.lr_mult"])
    loop = run_loop(tmp_path, recipe(warm_start=[str(source)]), epochs=6)
    trials = trials_by_study(tmp_path)["opt.lr_mult"]
    seeded = [t for t in trials if "warm_start" in t.user_attrs]
    assert _completed(seeded) == earlier  # every completed earlier trial, value for value
    assert [t.number for t in trials[: len(seeded)]] == list(range(len(seeded)))
    own = trials[len(seeded):]
    assert own and loop.kernel.tune.counts["proposed"] == len(own)
    assert all(str(source) in t.user_attrs["warm_start"] for t in seeded)


def test_warm_start_from_a_journal_file(tmp_path):
    source = tmp_path / "journal-run"
    run_loop(source, recipe(storage="journal"), epochs=8)
    earlier = _completed(trials_by_study(source, journal_storage(source / JOURNAL_FILE))["opt.lr_mult"])
    run_loop(tmp_path / "new", recipe(warm_start=[str(source / JOURNAL_FILE)]), epochs=2)
    seeded = [t for t in trials_by_study(tmp_path / "new")["opt.lr_mult"] if "warm_start" in t.user_attrs]
    assert earlier and _completed(seeded) == earlier


def test_a_changed_space_is_refused_before_training(tmp_path, earlier_run):
    changed = recipe(warm_start=[str(earlier_run)])
    changed["actuators"]["opt"]["mutations"]["lr_mult"]["bounds"] = [0.5, 3.0]
    with pytest.raises(ConfigError) as err:
        run_loop(tmp_path, changed, epochs=2)
    message = str(err.value)
    assert "search.warm_start" in message and "opt.lr_mult" in message
    assert "high=2.0" in message and "high=3.0" in message and "refused" in message


def test_a_source_sharing_no_study_is_refused(tmp_path, earlier_run):
    with pytest.raises(ConfigError, match="shares no study"):
        run_loop(tmp_path, recipe(warm_start=[str(earlier_run)], phase_conditioned=True), epochs=2)


def test_a_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="search.warm_start: no run directory or study file at"):
        run_loop(tmp_path, recipe(warm_start=[str(tmp_path / "nowhere")]), epochs=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no study"):
        run_loop(tmp_path, recipe(warm_start=[str(tmp_path / "empty")]), epochs=2)


def test_warm_start_lets_tpe_skip_its_startup(tmp_path, earlier_run):
    """With the earlier trials counted, TPE's first own proposal already follows the scores."""
    loop = run_loop(tmp_path, recipe(warm_start=[str(earlier_run)], startup_trials=8), epochs=14)
    own = [t for t in trials_by_study(tmp_path)["opt.lr_mult"] if "warm_start" not in t.user_attrs]
    assert loop.kernel.tune.counts["proposed"] >= 4
    above = sum(t.params["value"] > 1.0 for t in own) / len(own)
    assert above >= 0.75, [t.params["value"] for t in own]


def test_a_source_with_a_live_bounds_change_gives_its_same_space_trials(tmp_path):
    """A live `tune set` of bounds part-way through the source: the new run takes the trials
    over its own space and notes the ones it leaves out; it is not refused."""
    from hotcb.channel import Command, send

    source = tmp_path / "source"
    changed = {"actuators.opt.mutations.lr_mult.bounds": [0.5, 3.0]}

    def widen_at_epoch_5(kernel, epoch: int) -> bool:
        if epoch == 5:
            send(source, Command("tune", "set", changed))
        return False  # train on

    run_loop(source, epochs=12, stop=widen_at_epoch_5)
    spaces = {t.distributions["value"].high for t in trials_by_study(source)["opt.lr_mult"] if t.state is TrialState.COMPLETE}
    assert spaces == {2.0, 3.0}
    loop = run_loop(tmp_path / "new", recipe(warm_start=[str(source)]), epochs=2)
    seeded = [t for t in trials_by_study(tmp_path / "new")["opt.lr_mult"] if "warm_start" in t.user_attrs]
    assert seeded and {t.distributions["value"].high for t in seeded} == {2.0}
    notes = loop.kernel.tune.summary()["search_info"]["notes"]
    assert any("trials are refused (a changed space is not mixed in)" in n for n in notes)
