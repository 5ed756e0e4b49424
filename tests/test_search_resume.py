"""Resume: the study continues, the trial open at the stop is closed as FAIL, trial numbers
continue, and nothing is told twice (kernel.state_dict and a real Lightning checkpoint)."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState
from tune_driver import assert_trials_match_segments, checkpoint, run_loop, trials_by_study

from hotcb.modules.tune.storage import read_mutations


def _stop_mid_segment(saved: dict):
    """Stop (as a killed process would) at the first epoch end after the 4th proposal, while its
    segment is open, keeping a checkpoint taken at that moment."""

    def stop(kernel, epoch):
        tune = kernel.tune
        if tune.counts["proposed"] >= 4 and tune.segment is not None and tune.segment.proposal is not None:
            saved["state"] = checkpoint(kernel, epoch)
            saved["open_trial"] = tune.segment.proposal.trial
            return True
        return False

    return stop


@pytest.mark.parametrize("same_dir", [True, False], ids=["same-run-dir", "fresh-run-dir"])
def test_resume_from_state_dict_continues_the_study(tmp_path, same_dir):
    saved: dict = {}
    first = tmp_path / "run"
    run_loop(first, epochs=16, stop=_stop_mid_segment(saved))
    before = trials_by_study(first)["opt.lr_mult"]
    open_trial = saved["open_trial"]
    assert before[open_trial].state is TrialState.RUNNING

    second = first if same_dir else tmp_path / "resumed"
    resumed = run_loop(second, epochs=16, state=saved["state"])
    after = trials_by_study(second)["opt.lr_mult"]
    assert [t.number for t in after] == list(range(len(after)))  # numbers continue, no gap, no reuse
    assert len(after) > len(before)
    assert after[open_trial].state is TrialState.FAIL
    for old, new in zip(before, after):  # earlier trials unchanged: nothing told twice
        if old.state is TrialState.COMPLETE:
            assert (new.state, new.value, new.params) == (old.state, old.value, old.params)
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in after)
    cancelled = [r for r in read_mutations(second) if r["status"] == "cancelled"]
    assert any(r["trial"] == open_trial for r in cancelled)
    assert resumed.kernel.tune.counts["proposed"] == len(after)
    if same_dir:
        assert_trials_match_segments(second)


@pytest.mark.slow
def test_resume_from_a_lightning_checkpoint(tmp_path):
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from examples.digits import DigitsClassifier, DigitsDataModule
    from hotcb import HotKernel
    from hotcb.adapters.lightning import HotCBLightning

    tune_recipe = {
        "actuators": {"opt": {"mutations": {"lr_mult": {"bounds": [0.5, 2.0]}}}},
        "search": {"startup_trials": 2, "seed": 0},
        "acceptance": {"baseline": "pre", "rollback": "params"},
        "safety": {"max_global_reject_streak": 1000, "grad_spike_factor": None},
    }
    run_dir, ckpts = tmp_path / "run", tmp_path / "ckpt"

    def fit(epochs: int, ckpt_path=None):
        pl.seed_everything(0, verbose=False)
        kernel = HotKernel(run_dir, recipe=tune_recipe, tune_mode="active")
        trainer = pl.Trainer(
            max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, limit_train_batches=6, val_check_interval=3,
            callbacks=[HotCBLightning(kernel), ModelCheckpoint(dirpath=ckpts, save_last=True, every_n_epochs=1)],
        )
        trainer.fit(DigitsClassifier(), datamodule=DigitsDataModule(), ckpt_path=ckpt_path)
        return kernel

    fit(3)  # fit_end closes the trial it leaves open, as FAIL
    before = trials_by_study(run_dir)["opt.lr_mult"]
    resumed = fit(6, ckpt_path=ckpts / "last.ckpt")
    after = assert_trials_match_segments(run_dir)["opt.lr_mult"]
    assert [t.number for t in after] == list(range(len(after))) and len(after) > len(before) >= 2
    assert [(t.state, t.value) for t in after[: len(before)]] == [(t.state, t.value) for t in before]
    assert resumed.tune.decisions > 6  # the tuner's own state came back from the checkpoint


def test_a_manual_change_sent_after_the_checkpoint_survives_the_resume(tmp_path):
    """The command is re-read on resume and applied; cancelling the segment that was open at
    the checkpoint must not then put back the knob's pre-mutation value over it."""
    from hotcb.channel import Command, send

    saved: dict = {}
    run_loop(tmp_path, epochs=12, stop=_stop_mid_segment(saved))
    send(tmp_path, Command("opt", "set", {"lr": 0.0123}))  # after the checkpoint, then the crash
    start = saved["state"]["epoch"] * 4
    loop = run_loop(tmp_path, epochs=saved["state"]["epoch"] + 1, state=saved["state"])
    assert dict(loop.lrs)[start + 2] == 0.0123  # applied at the first safe point, still in force
    cancelled = [m for m in read_mutations(tmp_path) if m["status"] == "cancelled"]
    assert cancelled[-1]["trial"] == saved["open_trial"] and cancelled[-1]["rollback"] == "none"
