"""Acceptance: which baseline a segment is judged against, over which horizon, and what a
missing, NaN or stale metric does. All through a real HotKernel on a bare-PyTorch loop."""

from __future__ import annotations

import logging
import math

import pytest

from hotcb.modules.tune.evaluator import Point, SegmentEvaluator
from hotcb.modules.tune.schemas import AcceptanceSpec, Objective, TuneRecipe
from tune_loop import Loop, recipe

HARMFUL = {"lr_mult": {"bounds": [0.2, 0.25]}}  # slows the descent; the loss still falls
HELPFUL = {"lr_mult": {"bounds": [1.8, 2.0]}}  # lr 0.05 -> ~0.095 on a quadratic: faster


def _first_decision(tmp_path, baseline, family, **acceptance):
    loop = Loop(tmp_path / baseline, recipe(family, acceptance={"baseline": baseline, **acceptance})).run(6)
    loop.close()
    decided = loop.decided()
    assert decided, "no segment was evaluated"
    return decided[0]


def test_harmful_but_improving_mutation_pre_accepts_trend_rejects(tmp_path):
    pre = _first_decision(tmp_path, "pre", HARMFUL)
    trend = _first_decision(tmp_path, "trend", HARMFUL)
    # The metric did improve during both segments...
    assert pre["post"]["val/loss"] < pre["pre"]["val/loss"]
    assert trend["post"]["val/loss"] < trend["pre"]["val/loss"]
    # ...so the seed's rule accepts, while the forecast without the mutation was lower still.
    assert pre["decision"] == "accept"
    assert trend["decision"] == "reject"
    assert trend["expected"] < trend["post"]["val/loss"]
    assert trend["rollback"] == "state"


def test_helpful_mutation_is_accepted_by_trend(tmp_path):
    seg = _first_decision(tmp_path, "trend", HELPFUL)
    assert seg["decision"] == "accept", seg["reason"]
    assert seg["post"]["val/loss"] < seg["expected"]


def test_control_baseline_interleaves_unmutated_segments(tmp_path):
    loop = Loop(tmp_path, recipe(HARMFUL, acceptance={"baseline": "control"})).run(8)
    loop.close()
    kinds = [s["decision"] for s in loop.records("segments")]
    assert kinds[0] == "control"
    assert "control" in kinds[1:] and "reject" in kinds
    first_mutated = next(s for s in loop.records("segments") if s["decision"] != "control")
    assert first_mutated["decision"] == "reject"
    assert first_mutated["post"]["val/loss"] < first_mutated["pre"]["val/loss"]


@pytest.mark.parametrize("horizon, span", [("val_epochs:2", 10), ("steps:12", 15), ("next_val_epoch_end", 5)])
def test_horizons(tmp_path, horizon, span):
    seg = _first_decision(tmp_path, "trend", HELPFUL, horizon=horizon)
    assert seg["end_step"] - seg["start_step"] == span


@pytest.mark.parametrize("bad", [None, math.nan, "stale"])
def test_unusable_metric_never_counts_as_a_win(tmp_path, caplog, bad):
    """A helpful mutation whose horizon metric is missing, NaN or stale is not accepted, and
    the warning names the metrics that do exist."""
    loop = Loop(tmp_path, recipe(HELPFUL, acceptance={"baseline": "pre"}))
    loop.metrics["train/acc"] = 0.5
    loop.run(1)
    assert loop.kernel.tune.segment is not None
    for _ in range(5):
        loop.train_step()
    with caplog.at_level(logging.WARNING, logger="hotcb"):
        if bad is None:
            del loop.metrics["val/loss"]
            loop.kernel.apply(loop.env(), events=["val_epoch_end"])
        elif bad == "stale":
            loop.kernel.apply(loop.env(), events=["val_epoch_end"])  # val/loss not updated since the start
        else:
            loop.validate(bad)
    seg = loop.decided()[0]
    assert seg["decision"] == "reject" and seg["score"] is None
    assert "never a win" in seg["reason"]
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "val/loss" in warning and "train/acc" in warning


def test_trend_noise_scale_keeps_a_gain_inside_the_noise_from_winning():
    objective = Objective(primary="val/loss", mode="min")
    ev = SegmentEvaluator(AcceptanceSpec(baseline="trend", trend_window=4, noise_k=1.0), objective)
    for step, value in [(0, 1.0), (10, 0.9), (20, 0.85), (30, 0.7), (40, 0.66)]:  # noisy decline
        ev.observe(step, value)
    expected, noise = ev.forecast(Point(40, 0.66), 50)
    assert noise > 0
    slightly_better = ev.judge(Point(40, 0.66), Point(50, expected - 0.5 * noise))
    clearly_better = ev.judge(Point(40, 0.66), Point(50, expected - 2 * noise))
    assert not slightly_better.accepted and clearly_better.accepted


def test_max_mode_orients_the_gain():
    ev = SegmentEvaluator(AcceptanceSpec(baseline="pre"), Objective(primary="val/acc", mode="max"))
    assert ev.judge(Point(0, 0.5), Point(5, 0.6)).accepted
    assert not ev.judge(Point(0, 0.5), Point(5, 0.4)).accepted


def test_acceptance_fields_are_validated():
    from hotcb.config_errors import ConfigError

    with pytest.raises(ConfigError, match=r"acceptance\.horizon.*steps:N"):
        TuneRecipe.from_dict({"acceptance": {"horizon": "steps:0"}})
    with pytest.raises(ConfigError, match=r"acceptance\.baseline"):
        TuneRecipe.from_dict({"acceptance": {"baseline": "post"}})
    with pytest.raises(ConfigError, match=r"acceptance\.rollback"):
        TuneRecipe.from_dict({"acceptance": {"rollback": "weights"}})
