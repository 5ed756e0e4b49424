"""Safety: blockers (grad-norm spike, anomaly flag, NaN loss outside a segment), cooldowns,
max_step_mult, the walk limits, risk classes and the reject-streak pause."""

from __future__ import annotations

import json

import pytest

from conftest import hotcb_cli
from tune_loop import Loop, recipe

HARMFUL = {"lr_mult": {"bounds": [0.2, 0.25]}}


def _open_segment(tmp_path, family=HARMFUL, **sections):
    loop = Loop(tmp_path, recipe(family, acceptance={"baseline": "pre"}, **sections)).run(1)
    assert loop.kernel.tune.segment is not None
    return loop


def test_grad_norm_spike_rejects_the_segment_at_once(tmp_path):
    loop = _open_segment(tmp_path, safety={"grad_spike_factor": 4.0})
    for _ in range(3):
        loop.kernel.apply(loop.env(grad_norm=1.0), events=["train_batch_end"])
    assert loop.kernel.tune.segment is not None  # the history holds six norms now, none spiking
    loop.kernel.apply(loop.env(grad_norm=100.0), events=["train_batch_end"])
    seg = loop.decided()[0]
    assert seg["decision"] == "reject" and "grad-norm spike" in seg["reason"]
    assert loop.optimizer.param_groups[0]["lr"] == 0.05


def test_anomaly_flag_rejects_the_segment_and_holds_off_the_next_proposal(tmp_path):
    loop = _open_segment(tmp_path)
    loop.kernel.apply(loop.env(anomaly="loss scale collapsed"), events=["train_batch_end"])
    assert loop.decided()[0]["reason"] == "blocked: anomaly flag: 'loss scale collapsed'"
    loop.run(1)
    assert loop.kernel.tune.segment is None
    assert "anomaly" in loop.kernel.status()["tune"]["waiting_for"]
    loop.run(1)  # a clean interval: proposing resumes
    assert loop.kernel.tune.segment is not None


def test_nan_loss_outside_a_segment_blocks_the_next_proposal(tmp_path):
    loop = Loop(tmp_path, recipe(HARMFUL, acceptance={"baseline": "pre"}))
    loop.kernel.apply(loop.env(loss=float("nan")), events=["train_batch_end"])
    loop.validate(1.0)
    assert loop.kernel.tune.segment is None
    assert "non-finite loss" in loop.kernel.status()["tune"]["waiting_for"]


def test_global_and_family_cooldowns(tmp_path):
    family = {"lr_mult": {"bounds": [0.2, 0.25], "cooldown": 2}}
    loop = Loop(tmp_path, recipe(family, acceptance={"baseline": "trend"}, safety={"global_cooldown": 3})).run(12)
    starts = [m["step"] for m in loop.records("mutations") if m["status"] == "applied"]
    # trend proposes at decision 3 (step 15), rejects at 4; then 1 + 3 decisions of global
    # cooldown (family cooldown 2 + 1 is shorter) before the next proposal at decision 8.
    assert starts[:2] == [15, 40]


def test_max_step_mult_and_walk_limits(tmp_path):
    loop = Loop(tmp_path, recipe({"lr_mult": {"bounds": [1.5, 2.0]}}, safety={"max_step_mult": 1.4},
                                 acceptance={"baseline": "pre"})).run(1)
    refused = [m for m in loop.records("mutations") if m["status"] == "refused"]
    assert refused and "max_step_mult" in refused[0]["reason"]
    assert loop.kernel.tune.counts["refused"] == len(refused) and loop.kernel.tune.counts["failed"] == 0

    ranged = {"lr_mult": {"bounds": [1.8, 2.0], "range": [0.01, 0.15]}}
    loop = Loop(tmp_path / "ranged", recipe(ranged, acceptance={"baseline": "pre"})).run(6)
    lrs = [m["after"][0] for m in loop.records("mutations") if m["status"] == "applied"]
    reasons = [m["reason"] for m in loop.records("mutations") if m["status"] == "refused"]
    assert lrs and max(lrs) <= 0.15
    assert any("range [0.01, 0.15]" in r for r in reasons)

    walk = {"lr_mult": {"bounds": [1.8, 2.0]}}
    loop = Loop(tmp_path / "walk", recipe(walk, acceptance={"baseline": "pre"}, safety={"max_total_mult": 5.0}),
                lr=0.01).run(8)
    assert loop.optimizer.param_groups[0]["lr"] <= 0.05 + 1e-12
    assert any("max_total_mult" in m.get("reason", "") for m in loop.records("mutations"))


def test_medium_risk_families_wait_for_a_clean_decision(tmp_path):
    families = {"lr_mult": {"bounds": [0.2, 0.25]}, "wd": {"bounds": [0.0, 0.01], "risk": "medium"}}
    loop = Loop(tmp_path, recipe(families, acceptance={"baseline": "pre"})).run(3)
    tried = [m["family"] for m in loop.records("mutations") if m["status"] == "applied"]
    assert tried[0] == "opt.lr_mult"  # the medium family is proposed only after it

    tune = loop.kernel.tune
    tune.reject_streak = 1
    assert all(f.name != "opt.wd" for f in tune._eligible({}))
    tune.reject_streak = 0
    assert any(f.name == "opt.wd" for f in tune._eligible({}))


def test_reject_streak_pauses_and_tune_enable_resumes(tmp_path):
    rec = recipe(HARMFUL, acceptance={"baseline": "trend"},
                 safety={"max_global_reject_streak": 2, "pause_decisions": None})
    loop = Loop(tmp_path, rec).run(9)
    summary = loop.kernel.status()["tune"]
    assert summary["paused"] and "2 consecutive rejects" in summary["pause_reason"]
    applied = loop.kernel.status()["tune"]["applied"]
    loop.run(3)
    assert loop.kernel.status()["tune"]["applied"] == applied  # nothing proposed while paused
    out = hotcb_cli("--dir", str(tmp_path), "tune", "status")
    assert out.returncode == 0 and "PAUSED: 2 consecutive rejects" in out.stdout
    assert hotcb_cli("--dir", str(tmp_path), "tune", "enable").returncode == 0
    loop.run(1)
    ledger = [json.loads(x) for x in (tmp_path / "hotcb.applied.jsonl").read_text().splitlines()]
    assert ledger[-1]["status"] == "applied" and "resumed from pause" in ledger[-1]["detail"]
    assert not loop.kernel.status()["tune"]["paused"]
    assert loop.kernel.tune.segment is not None


@pytest.mark.parametrize("field, value", [("safety.grad_spike_factor", 1.0), ("safety.max_total_mult", 0.5),
                                          ("actuators.opt.mutations.lr_mult.range", [2.0, 1.0])])
def test_safety_fields_are_validated(field, value):
    from hotcb.config_errors import ConfigError
    from hotcb.modules.tune.schemas import TuneRecipe, set_dotted

    data = set_dotted({"actuators": {"opt": {"mutations": {"lr_mult": {"bounds": [0.5, 2.0]}}}}}, field, value)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        TuneRecipe.from_dict(data)


def test_timed_pause_lifts_itself(tmp_path):
    rec = recipe(HARMFUL, acceptance={"baseline": "trend"},
                 safety={"max_global_reject_streak": 2, "pause_decisions": 3})
    loop = Loop(tmp_path, rec)
    while not loop.kernel.status()["tune"]["paused"]:
        loop.run(1)
        assert loop.epoch < 30, "never paused"
    summary = loop.kernel.status()["tune"]
    assert summary["pause_reason"] == ("2 consecutive rejects (safety.max_global_reject_streak); "
                                       "lifts after 3 decision points or `tune enable`")
    applied = summary["applied"]
    loop.run(2)
    assert loop.kernel.status()["tune"]["paused"] and loop.kernel.status()["tune"]["applied"] == applied
    loop.run(1)
    summary = loop.kernel.status()["tune"]
    assert not summary["paused"] and summary["reject_streak"] == 0
    assert summary["applied"] == applied + 1  # proposing again at the decision the pause lifted


def test_a_knob_at_its_walk_limit_tries_values_inside_it(tmp_path):
    """The sampler keeps asking for more than the walk allows: each refusal is followed by a
    trial of a value drawn inside the limit, so tuning never stalls on failures."""
    walk = {"lr_mult": {"bounds": [0.5, 4.0]}}
    loop = Loop(tmp_path, recipe(walk, acceptance={"baseline": "pre"}, safety={"max_total_mult": 3.0,
                                                                             "max_global_reject_streak": 100}),
                lr=0.01).run(12)
    mutations = loop.records("mutations")
    refused = [m for m in mutations if m["status"] == "refused" and "max_total_mult" in m["reason"]]
    assert refused, "the walk limit was never reached"
    inside = [m for m in mutations if m.get("note", "").startswith("drawn inside the safety limits")]
    assert len(inside) == len(refused)
    for m in inside:
        assert m["status"] == "applied" and 0.01 / 3.0 - 1e-12 <= m["after"][0] <= 0.03 + 1e-12
    trials = {(m["study"], m["trial"]) for m in mutations if m["status"] in ("applied", "refused")}
    assert len(trials) == len([m for m in mutations if m["status"] in ("applied", "refused")])  # one trial each
