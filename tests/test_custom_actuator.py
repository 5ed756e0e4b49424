"""examples/custom_actuator.py: a user's actuator (dropout rate) tuned like a built-in knob."""

from __future__ import annotations

from hydra import compose, initialize_config_dir

from examples import custom_actuator
from hotcb.launch import HotRun, run
from hotcb.ledger import read_jsonl


def test_tuned_dropout_ends_at_the_last_accepted_value(tmp_path):
    """A rejected value is rolled back even though dropout is not part of the captured
    training state (weights, optimizer, RNG): the actuator puts its knob back itself."""
    result = custom_actuator.main(["--run-dir", str(tmp_path), "--epochs", "10"])
    mutations = read_jsonl(tmp_path / "hotcb.tune.mutations.jsonl")
    values = {m["id"]: m["value"] for m in mutations if m["status"] == "applied"}
    decided = [m for m in mutations if m["status"] in ("accepted", "rejected")]
    assert any(m["status"] == "rejected" and m["rollback"] == "state" for m in decided)
    accepted = [values[m["id"]] for m in decided if m["status"] == "accepted"]
    assert result["dropout"] == (accepted[-1] if accepted else 0.6)


def test_named_as_a_target_component_in_the_app_config(tmp_path):
    (tmp_path / "app.yaml").write_text("defaults:\n  - hotcb: default\n  - _self_\n")
    overrides = ["tune=active", f"hotcb.run_dir={tmp_path / 'run'}", "hotcb.allow_targets=[examples.custom_actuator]",
                 "+hotcb.actuators.dropout={_target_: examples.custom_actuator.DropoutActuator, name: dropout}",
                 "+hotcb.recipe.actuators.model.mutations.dropout={actuator: dropout, mode: set, bounds: [0.0, 0.5]}"]
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        cfg = compose("app", overrides=overrides)
    seen = {}

    def task(cfg, hot: HotRun):
        seen["actuator"] = type(hot.kernel.mutable_state["dropout"]).__name__
        seen["family"] = {f.name: f.actuator for f in hot.kernel.recipe.families()}["model.dropout"]

    run(cfg, task)
    assert seen == {"actuator": "DropoutActuator", "family": "dropout"}


def test_a_live_range_is_checked_against_the_knob_read_at_the_safe_point(tmp_path):
    """The dropout knob is read from the safe point's model: a range holding it is applied,
    one excluding it is rejected."""
    import torch

    from hotcb import HotKernel
    from hotcb.channel import Command, send

    kernel = HotKernel(tmp_path, recipe=custom_actuator.RECIPE, tune_mode="active")
    kernel.register_actuator("dropout", custom_actuator.DropoutActuator(name="dropout"))
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.6))
    family = "actuators.model.mutations.dropout.range"
    send(tmp_path, Command("tune", "set", {family: [0.0, 0.9]}))
    send(tmp_path, Command("tune", "set", {family: [0.0, 0.5]}))
    kernel.apply({"step": 1, "model": model}, ["train_batch_end"])
    applied, rejected = read_jsonl(tmp_path / "hotcb.applied.jsonl")
    assert applied["status"] == "applied"
    assert rejected["status"] == "rejected" and "excludes dropout's current value 0.6" in rejected["reason"]
