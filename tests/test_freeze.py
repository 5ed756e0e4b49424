"""Kernel freeze modes through the real CLI: prod ignores every external command (tune's
included) and records each as ignored; off unlocks."""

from __future__ import annotations

import json

import pytest

from conftest import hotcb_cli
from hotcb.freeze import FreezeMode
from tune_loop import Loop, recipe


def _ledger(run_dir):
    return [json.loads(x) for x in (run_dir / "hotcb.applied.jsonl").read_text().splitlines()]


def test_prod_freeze_ignores_every_external_command_until_off(tmp_path):
    loop = Loop(tmp_path, recipe({"lr_mult": {"bounds": [0.5, 2.0]}}), tune_mode="observe")
    run = str(tmp_path)
    for args in (["freeze", "--mode", "prod"], ["tune", "enable"], ["tune", "set", "acceptance.epsilon=0.5"],
                 ["opt", "set", "lr=0.5"], ["tune", "disable"]):
        assert hotcb_cli("--dir", run, *args).returncode == 0
    loop.train_step()
    records = _ledger(tmp_path)
    assert [(r["module"], r["status"]) for r in records] == [
        ("freeze", "applied"), ("tune", "ignored"), ("tune", "ignored"), ("opt", "ignored"), ("tune", "ignored")]
    assert all("freeze=prod" in r["reason"] for r in records[1:])
    assert loop.optimizer.param_groups[0]["lr"] == 0.05
    assert loop.kernel.tune.mode.value == "observe" and loop.kernel.recipe.acceptance.epsilon == 0.0
    assert loop.kernel.status()["freeze"] == "prod"

    assert hotcb_cli("--dir", run, "freeze", "--mode", "off").returncode == 0
    assert hotcb_cli("--dir", run, "opt", "set", "lr=0.5").returncode == 0
    loop.train_step()
    assert [r["status"] for r in _ledger(tmp_path)[-2:]] == ["applied", "applied"]
    assert loop.optimizer.param_groups[0]["lr"] == 0.5


def test_freeze_state_survives_the_kernel_state_dict(tmp_path):
    loop = Loop(tmp_path, recipe({"lr_mult": {"bounds": [0.5, 2.0]}}), tune_mode="observe")
    loop.kernel.freeze = FreezeMode.PROD
    state = loop.kernel.state_dict()
    other = Loop(tmp_path / "b", recipe({"lr_mult": {"bounds": [0.5, 2.0]}}), tune_mode="observe")
    other.kernel.load_state_dict(state)
    assert other.kernel.freeze is FreezeMode.PROD


def test_freeze_mode_errors_name_the_accepted_values():
    with pytest.raises(ValueError, match="off, prod, replay"):
        FreezeMode.parse("frozen")
    assert not FreezeMode.PROD.admits("tune") and FreezeMode.PROD.admits("freeze")
