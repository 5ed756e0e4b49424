"""The generic launcher: validate first, build, call the user's function, close on any outcome."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from hotcb.config_errors import ConfigError
from hotcb.launch import HotRun, run

APP = "defaults:\n  - hotcb: default\n  - override /adapter: torch\n  - _self_\nseed: 0\n"


def config(tmp_path: Path, *overrides: str):
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "app.yaml").write_text(APP)
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose("app", overrides=[f"hotcb.run_dir={tmp_path / 'runs' / 'job'}", *overrides])


def test_returns_the_objective_as_float_and_points_latest(tmp_path, capsys):
    import numpy as np

    seen = {}

    def task(cfg, hot: HotRun):
        seen["hot"] = hot
        hot.adapter.metrics["val_loss"] = 0.5
        hot.adapter.apply(events=["val_epoch_end"], step=1, epoch=0)
        return np.float32(0.25)

    result = run(config(tmp_path, "tune=observe"), task)
    assert result == 0.25 and type(result) is float
    run_dir = tmp_path / "runs" / "job"
    assert f"hotcb: run directory {run_dir}" in capsys.readouterr().out
    assert (tmp_path / "runs" / "latest").resolve() == run_dir
    assert seen["hot"].run_dir == run_dir and seen["hot"].kernel._closed
    assert json.loads((run_dir / "hotcb.job.json").read_text()) == {"status": "completed", "objective": 0.25}
    assert json.loads((run_dir / "hotcb.metrics.jsonl").read_text())["metrics"]["val/loss"] == 0.5


def test_failure_closes_hotcb_files_logs_run_dir_and_reraises(tmp_path, caplog):
    def task(cfg, hot: HotRun):
        hot.adapter.metrics["val_loss"] = 0.5
        hot.adapter.apply(events=["val_epoch_end"], step=1, epoch=0)
        raise RuntimeError("boom in the user's loop")

    with caplog.at_level(logging.ERROR, logger="hotcb"), pytest.raises(RuntimeError, match="boom"):
        run(config(tmp_path, "tune=active", "recipe=lr_only"), task)
    run_dir = tmp_path / "runs" / "job"
    assert f"hotcb: job failed; its files are in {run_dir}" in caplog.text
    assert json.loads((run_dir / "hotcb.job.json").read_text()) == {
        "status": "failed", "error": "RuntimeError: boom in the user's loop"}
    summary = json.loads((run_dir / "hotcb.tune.summary.json").read_text())  # written by close
    assert summary["mode"] == "active" and summary["decisions"] == 1


def test_invalid_config_builds_nothing(tmp_path):
    called = []
    with pytest.raises(ConfigError, match="hotcb.recipe.acceptance.epsilon"):
        run(config(tmp_path, "tune=active", "hotcb.recipe.acceptance.epsilon=-1"), lambda cfg, hot: called.append(1))
    assert not called and not (tmp_path / "runs").exists()


def test_validate_only_returns_before_building(tmp_path, capsys):
    assert run(config(tmp_path, "tune=active", "hotcb.validate_only=true"), lambda cfg, hot: 1.0) is None
    assert "hotcb: configuration is valid" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()


def test_custom_actuator_is_a_target_component(tmp_path):
    """The app config names an actuator class and its arguments; the recipe points a family at it."""
    knob = "{_target_: hotcb.actuators.LossWeightActuator, name: knob, weights: {aux: 0.5}, key: aux}"
    family = "{actuator: knob, mode: mult, bounds: [0.5, 2.0]}"
    seen = {}

    def task(cfg, hot: HotRun):
        seen["value"] = hot.kernel.mutable_state["knob"].current()
        seen["families"] = {f.name: f.actuator for f in hot.kernel.recipe.families()}

    run(config(tmp_path, "tune=active", f"+hotcb.actuators.knob={knob}",
               f"+hotcb.recipe.actuators.custom.mutations.aux_mult={family}"), task)
    assert seen == {"value": 0.5, "families": {"opt.lr_mult": "opt.lr", "custom.aux_mult": "knob"}}


def test_live_commands_cannot_set_a_target(tmp_path):
    from hotcb.channel import Command, send
    from hotcb.ledger import read_jsonl

    def task(cfg, hot: HotRun):
        send(hot.run_dir, Command(module="tune", op="set", args={"search.sampler": {"_target_": "os.system"}}))
        hot.adapter.apply(events=["val_epoch_end"], step=1, epoch=0)

    run(config(tmp_path, "tune=active"), task)
    ledger = read_jsonl(tmp_path / "runs" / "job" / "hotcb.applied.jsonl")
    assert [(r["status"], r["reason"]) for r in ledger] == [("rejected", "search.sampler: live commands cannot set a _target_")]
