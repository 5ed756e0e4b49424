"""HotKernel: command routing, the applied ledger, freeze, contained faults, custom actuators."""

from __future__ import annotations


import pytest
import torch

from hotcb import HotKernel
from hotcb.actuators import ApplyResult, ValidationResult, loss_actuators, mutable_state, optimizer_actuators
from hotcb.config_errors import ConfigError
from hotcb.channel import COMMANDS_FILE, Command, send
from hotcb.kernel import APPLIED_FILE
from hotcb.ledger import read_jsonl


def _kernel(tmp_path, **kw):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.01)
    kernel = HotKernel(run_dir=tmp_path, mutable_state=mutable_state(optimizer_actuators(opt)), **kw)
    return kernel, opt


def _ledger(tmp_path):
    return read_jsonl(tmp_path / APPLIED_FILE)


def test_tune_commands_are_applied_and_recorded(tmp_path):
    kernel, _ = _kernel(tmp_path)
    send(tmp_path, Command("tune", "enable", {"mode": "observe"}))
    kernel.apply({"step": 3}, ["train_batch_end"])
    assert kernel.tune.mode.value == "observe"
    send(tmp_path, Command("tune", "set", {"acceptance.epsilon": 0.002}))
    send(tmp_path, Command("tune", "disable"))
    kernel.apply({"step": 4}, ["train_batch_end"])
    assert kernel.tune.recipe.acceptance.epsilon == 0.002
    assert kernel.tune.mode.value == "off"
    records = _ledger(tmp_path)
    assert [(r["op"], r["status"], r["step"]) for r in records] == [
        ("enable", "applied", 3), ("set", "applied", 4), ("disable", "applied", 4)]


@pytest.mark.parametrize(
    "command, reason",
    [
        (Command("tune", "set", {"acceptance.epsilon": "abc"}),
         "recipe.acceptance.epsilon: Input should be a valid number (got 'abc')"),
        (Command("tune", "set", {"objective.nope": 1}),
         "recipe.objective.nope: unknown field; accepted: primary, mode, backup_metrics (got 1)"),
        (Command("tune", "set", {"search.sampler": {"_target_": "os.system"}}),
         "search.sampler: live commands cannot set a _target_"),
        (Command("tune", "enable", {"mode": "turbo"}),
         "tune mode 'turbo' is not one of: off, observe, suggest, active, replay"),
        (Command("tune", "explode"), "unknown tune command 'explode'; accepted: enable, disable, set"),
        (Command("tune", "enable", {"mode": "observe", "extra": 1}),
         "tune enable: unknown argument(s) 'extra'; accepted: from, mode"),
        (Command("tune", "set", {"objective.primary": ""}),
         "recipe.objective.primary: String should have at least 1 character (got '')"),
        (Command("warp", "set"), "unknown module 'warp'; accepted: tune, opt, loss, freeze"),
        (Command("opt", "set", {"lr": -1.0}), "opt.lr: -1.0 is below the hard limit > 0.0"),
        (Command("opt", "set", {"momentum": 0.9}),
         "opt.momentum: no such actuator; registered: opt.lr, opt.weight_decay"),
    ],
)
def test_bad_live_commands_are_rejected_with_reason(tmp_path, command, reason):
    kernel, opt = _kernel(tmp_path)
    send(tmp_path, command)
    kernel.apply({"step": 7}, ["train_batch_end"])
    (record,) = _ledger(tmp_path)
    assert record["status"] == "rejected" and record["step"] == 7
    assert record["reason"] == reason
    assert opt.param_groups[0]["lr"] == 0.1


def test_malformed_command_line_is_recorded(tmp_path):
    kernel, _ = _kernel(tmp_path)
    (tmp_path / COMMANDS_FILE).write_text("{broken\n")
    kernel.apply({"step": 1})
    (record,) = _ledger(tmp_path)
    assert record["status"] == "rejected" and record["reason"].startswith("not valid JSON")


def test_manual_opt_set_is_plain_float(tmp_path):
    kernel, opt = _kernel(tmp_path)
    send(tmp_path, Command("opt", "set", {"lr": 1e-3}))
    send(tmp_path, Command("opt", "scale", {"weight_decay": 0.5}))
    kernel.apply({"step": 1})
    assert type(opt.param_groups[0]["lr"]) is float and opt.param_groups[0]["lr"] == 1e-3
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(0.005)


def test_freeze_prod_ignores_everything_but_freeze(tmp_path):
    kernel, opt = _kernel(tmp_path)
    send(tmp_path, Command("freeze", "set", {"mode": "prod"}))
    send(tmp_path, Command("tune", "enable"))
    send(tmp_path, Command("opt", "set", {"lr": 0.5}))
    send(tmp_path, Command("freeze", "set", {"mode": "off"}))
    send(tmp_path, Command("opt", "set", {"lr": 0.25}))
    kernel.apply({"step": 2})
    statuses = [(r["module"], r["status"]) for r in _ledger(tmp_path)]
    assert statuses == [("freeze", "applied"), ("tune", "ignored"), ("opt", "ignored"), ("freeze", "applied"), ("opt", "applied")]
    assert opt.param_groups[0]["lr"] == 0.25


class _Knob:
    """The seed's custom actuator protocol, implemented from scratch."""

    name = "my_knob"

    def __init__(self):
        self.value = 1.0

    def snapshot(self, env):
        return {"value": self.value}

    def validate(self, patch, env):
        ok = isinstance(patch.get("value"), (int, float)) and 0 < patch["value"] < 10
        return ValidationResult(ok, "" if ok else "value must be in (0, 10)")

    def apply(self, patch, env):
        before, self.value = self.value, float(patch["value"])
        return ApplyResult(True, before=before, after=self.value)

    def restore(self, snapshot, env):
        self.value = snapshot["value"]
        return ApplyResult(True)

    def describe_space(self):
        return {"value": [0, 10]}


class _Broken(_Knob):
    def apply(self, patch, env):
        raise RuntimeError("knob jammed")


def _synthetic_run(kernel, epochs=12, steps_per_epoch=5):
    """Decision points with a metric that falls steadily."""
    step = 0
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            step += 1
            kernel.apply({"step": step, "loss": 1.0}, ["train_batch_end"])
        value = 1.0 / (1 + epoch)
        kernel.apply({"step": step, "epoch": epoch, "max_steps": epochs * steps_per_epoch,
                      "metric": lambda name, default=None, v=value: v if name == "val/loss" else default},
                     ["val_epoch_end"])
    kernel.close({"step": step})


CUSTOM_RECIPE = {
    "actuators": {"my_knob": {"mutations": {"value": {"mode": "set", "bounds": [0.5, 5.0], "actuator": "my_knob"}}}},
    "acceptance": {"baseline": "pre", "rollback": "params"},
    "search": {"algorithm": "random", "seed": 0, "storage": "memory"},
}


def test_custom_actuator_is_tuned(tmp_path):
    kernel = HotKernel(run_dir=tmp_path, recipe=CUSTOM_RECIPE, tune_mode="active")
    knob = _Knob()
    kernel.register_actuator("my_knob", knob)
    _synthetic_run(kernel)
    summary = kernel.status()["tune"]
    assert summary["applied"] >= 5 and summary["accepted"] >= 1
    assert 0.5 <= knob.value <= 5.0


def test_faulty_actuator_is_contained(tmp_path, caplog):
    kernel = HotKernel(run_dir=tmp_path, recipe=CUSTOM_RECIPE, tune_mode="active")
    kernel.register_actuator("my_knob", _Broken())
    _synthetic_run(kernel)  # must not raise
    assert "tune" in kernel.disabled and "knob jammed" in kernel.disabled["tune"]
    errors = [r for r in _ledger(tmp_path) if r["status"] == "error"]
    assert errors and errors[0]["module"] == "tune"
    assert kernel.status()["tune"]["errors"]


def test_no_metric_accessor_means_no_mutation(tmp_path, caplog):
    kernel = HotKernel(run_dir=tmp_path, recipe=CUSTOM_RECIPE, tune_mode="active")
    kernel.register_actuator("my_knob", _Knob())
    for step in range(1, 6):
        kernel.apply({"step": step}, ["val_epoch_end"])
    assert kernel.status()["tune"]["applied"] == 0
    assert "objective metric 'val/loss' is missing" in caplog.text


def test_without_optuna_falls_back_to_random_with_hint(tmp_path, monkeypatch, caplog):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    recipe = dict(CUSTOM_RECIPE, search={"algorithm": "tpe", "seed": 0})
    kernel = HotKernel(run_dir=tmp_path, recipe=recipe, tune_mode="active")
    kernel.register_actuator("my_knob", _Knob())
    _synthetic_run(kernel, epochs=6)
    assert kernel.status()["tune"]["search"] == "random"
    assert kernel.status()["tune"]["applied"] >= 2
    assert 'pip install "hotcb[tune]"' in caplog.text


def test_apply_is_a_noop_after_close(tmp_path):
    kernel, _ = _kernel(tmp_path)
    kernel.close({"step": 1})
    send(tmp_path, Command("tune", "enable"))
    kernel.apply({"step": 2})
    assert _ledger(tmp_path) == []


def test_absurd_lr_is_rejected_not_crashing(tmp_path):
    kernel, opt = _kernel(tmp_path)
    send(tmp_path, Command("opt", "set", {"lr": 1e300}))
    kernel.apply({"step": 1})
    (record,) = _ledger(tmp_path)
    assert record["status"] == "rejected" and record["reason"] == "opt.lr: 1e+300 is above the hard limit <= 10000.0"
    assert opt.param_groups[0]["lr"] == 0.1


def test_live_search_change_is_rejected(tmp_path):
    kernel, _ = _kernel(tmp_path, tune_mode="observe")
    send(tmp_path, Command("tune", "set", {"search.storage": "memory"}))
    kernel.apply({"step": 1})
    (record,) = _ledger(tmp_path)
    assert record["status"] == "rejected" and record["reason"].startswith(
        "search.storage: the search cannot change while the run trains")


def test_manual_change_cancels_the_segment_on_that_knob(tmp_path):
    recipe = {"actuators": {"opt": {"mutations": {"lr_mult": {"bounds": [1.5, 2.0]}}}},
              "acceptance": {"baseline": "pre", "rollback": "params"},
              "search": {"algorithm": "random", "seed": 0, "storage": "memory"}}
    kernel, opt = _kernel(tmp_path, recipe=recipe, tune_mode="active")
    metric = lambda name, default=None: 1.0 if name == "val/loss" else default  # noqa: E731
    kernel.apply({"step": 1, "metric": metric}, ["val_epoch_end"])
    assert kernel.tune.segment is not None
    send(tmp_path, Command("opt", "set", {"lr": 0.01}))
    kernel.apply({"step": 2}, ["train_batch_end"])
    (record,) = _ledger(tmp_path)
    assert record["status"] == "applied" and record["detail"].endswith("cancelled")
    assert kernel.tune.segment is None and opt.param_groups[0]["lr"] == 0.01
    statuses = [m["status"] for m in read_jsonl(tmp_path / "hotcb.tune.mutations.jsonl")]
    assert statuses == ["applied", "cancelled"]


def test_a_family_without_its_actuator_is_reported_not_skipped_in_silence(tmp_path, caplog):
    recipe = {"actuators": {"opt": {"mutations": {"lr_mul": {"bounds": [0.5, 2.0]}}}},
              "search": {"algorithm": "random", "seed": 0, "storage": "memory"}, "acceptance": {"baseline": "pre"}}
    kernel, _ = _kernel(tmp_path, recipe=recipe, tune_mode="active")
    for step in (1, 2, 3):
        kernel.apply({"step": step, "metric": lambda n, d=None: 1.0 if n == "val/loss" else d}, ["val_epoch_end"])
    problem = ("family opt.lr_mul: this run has no actuator 'opt.lr_mul' (it has: opt.lr, opt.weight_decay); "
               "it is never proposed")
    assert kernel.tune.summary()["errors"] == [problem]  # once, though every decision looked
    assert caplog.text.count(problem) == 1


def test_an_infinite_value_written_by_hand_is_rejected(tmp_path):
    """JSON's ``Infinity`` parses to a float; an infinite epsilon would reject everything."""
    kernel, _ = _kernel(tmp_path)
    with open(tmp_path / COMMANDS_FILE, "a") as fh:
        fh.write('{"id": "inf", "module": "tune", "op": "set", "args": {"acceptance.epsilon": Infinity}}\n')
    kernel.apply({"step": 3}, ["train_batch_end"])
    (record,) = _ledger(tmp_path)
    assert (record["id"], record["status"]) == ("inf", "rejected")
    assert record["reason"] == "recipe.acceptance.epsilon: Input should be a finite number (got inf)"


def test_tune_enable_revives_the_tuner_after_an_error(tmp_path):
    """auto_disable_on_error switched tune off; once the cause is fixed, `tune enable` is the
    way back (other tune commands stay ignored meanwhile)."""
    class Jammed(_Knob):
        jammed = True

        def apply(self, patch, env):
            if self.jammed:
                raise RuntimeError("knob jammed")
            return super().apply(patch, env)

    kernel = HotKernel(run_dir=tmp_path, recipe=CUSTOM_RECIPE, tune_mode="active")
    knob = Jammed()
    kernel.register_actuator("my_knob", knob)
    for step in range(1, 5):
        kernel.apply({"step": step, "metric": lambda n, d=None, s=step: 1.0 / s if n == "val/loss" else d}, ["val_epoch_end"])
    assert "tune" in kernel.disabled
    send(tmp_path, Command("tune", "set", {"acceptance.epsilon": 0.01}))
    knob.jammed = False  # the cause, fixed
    send(tmp_path, Command("tune", "enable", {"mode": "active"}))
    kernel.apply({"step": 5}, ["train_batch_end"])
    ignored, revived = _ledger(tmp_path)[-2:]
    assert ignored["status"] == "ignored" and ignored["reason"].startswith("module disabled after error: RuntimeError: knob jammed")
    assert revived["status"] == "applied" and revived["detail"] == "mode=active (re-enabled after error)"
    assert "tune" not in kernel.disabled
    for step in range(6, 12):
        kernel.apply({"step": step, "metric": lambda n, d=None, s=step: 1.0 / s if n == "val/loss" else d}, ["val_epoch_end"])
    assert kernel.status()["tune"]["applied"] >= 2


def test_snapshot_dir_problems_fail_a_proposal_or_a_command_not_the_tuner(tmp_path):
    snapshots = tmp_path / "snaps"
    recipe = {"actuators": {"opt": {"mutations": {"lr_mult": {"bounds": [0.5, 2.0]}}}},
              "search": {"algorithm": "random", "seed": 0, "storage": "memory"},
              "acceptance": {"baseline": "pre", "rollback": "state", "snapshot_dir": str(snapshots)}}
    with pytest.raises(ConfigError, match=r"acceptance.snapshot_dir: cannot create snapshot directory /proc/nope"):
        _kernel(tmp_path / "a", recipe={**recipe, "acceptance": {**recipe["acceptance"], "snapshot_dir": "/proc/nope"}},
                tune_mode="active")
    kernel, opt = _kernel(tmp_path / "b", recipe=recipe, tune_mode="active")
    snapshots.write_text("a file where the directory would go")
    model = torch.nn.Linear(2, 1)
    for step in (1, 2, 3):
        kernel.apply({"step": step, "model": model, "optimizer": opt,
                      "metric": lambda n, d=None, s=step: 1.0 / s if n == "val/loss" else d}, ["val_epoch_end"])
    summary = kernel.status()["tune"]
    assert "tune" not in kernel.disabled and summary["failed"] >= 1 and summary["applied"] == 0
    send(tmp_path / "b", Command("tune", "set", {"acceptance.snapshot_dir": "/proc/nope"}))
    kernel.apply({"step": 4}, ["train_batch_end"])
    record = _ledger(tmp_path / "b")[-1]
    assert record["status"] == "rejected" and record["reason"].startswith("acceptance.snapshot_dir: cannot create snapshot directory /proc/nope")


def test_one_job_per_run_directory(tmp_path):
    """A second live job on the directory is refused before it trains; a dead job's claim
    (a crash) and this process's own earlier kernel are not in the way."""
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from hotcb import HotKernel; "
                               f"HotKernel({str(tmp_path)!r}); print('ready', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(ConfigError, match=rf"run_dir: {tmp_path} is in use by another job \(pid {holder.pid}, since "):
            HotKernel(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    first = HotKernel(tmp_path)  # the holder died without closing: its claim is void
    HotKernel(tmp_path).close()  # a second kernel of this process (a resume in a notebook)
    first.close()
    assert not (tmp_path / "hotcb.owner.json").exists()


@pytest.mark.parametrize("args, reason", [
    ({"actuators.opt.mutations.lr_mult.mode": "set"},
     "family opt.lr_mult: mode mult -> set would change the scale its study searches on; set it in the recipe of the next run"),
    ({"actuators.opt.mutations.lr_mult.enabled": False, "actuators.opt.mutations.lr_mult.mode": "set"},
     "family opt.lr_mult: mode mult -> set would change the scale its study searches on; set it in the recipe of the next run"),
    ({"actuators.opt.mutations.lr_mult.range": [1e-6, 1e-3]},
     "family opt.lr_mult: range [1e-06, 0.001] excludes opt.lr's current value 0.1, so every proposal would fail; "
     "move the knob first (hotcb opt set / loss set), then set the range"),
], ids=["mode", "mode-of-a-disabled-family", "range"])
def test_live_set_that_would_break_every_later_proposal_is_rejected(tmp_path, args, reason):
    recipe = {"actuators": {"opt": {"mutations": {"lr_mult": {"bounds": [0.5, 2.0]}}}},
              "search": {"algorithm": "random", "seed": 0, "storage": "memory"}}
    kernel, opt = _kernel(tmp_path, recipe=recipe, tune_mode="active")
    send(tmp_path, Command("tune", "set", args))
    kernel.apply({"step": 1}, ["train_batch_end"])
    (record,) = _ledger(tmp_path)
    assert (record["status"], record["reason"]) == ("rejected", reason)


def test_a_loss_weight_cannot_be_scaled_to_overflow(tmp_path):
    weights = {"aux": 0.5}
    kernel = HotKernel(run_dir=tmp_path, mutable_state=mutable_state(loss_actuators(weights)))
    send(tmp_path, Command("loss", "scale", {"aux": 1e308}))
    kernel.apply({"step": 1}, ["train_batch_end"])
    (record,) = _ledger(tmp_path)
    assert (record["status"], record["reason"]) == ("rejected", "loss.aux: 5e+307 is above the hard limit <= 1000000.0")
    assert weights == {"aux": 0.5}


def test_a_claim_whose_pid_now_belongs_to_a_later_process_is_void(tmp_path):
    """After a reboot or a container restart the crashed job's pid may run something else."""
    import json
    import socket
    import subprocess
    import time

    later = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "hotcb.owner.json").write_text(json.dumps(
            {"pid": later.pid, "host": socket.gethostname(), "since": time.time() - 3600}))
        HotKernel(tmp_path).close()  # taken over, not refused
    finally:
        later.kill()
        later.wait()


def test_a_refused_job_leaves_the_directory_as_it_was(tmp_path):
    """Refused for replaying its own directory: no claim is left behind."""
    from hotcb.modules.tune.storage import MUTATIONS_FILE

    (tmp_path / MUTATIONS_FILE).write_text('{"id": "m0001", "status": "applied", "step": 1, "actuator": "opt.lr", '
                                           '"patch": {"mult": 2.0}}\n{"id": "m0001", "status": "accepted", "step": 2}\n')
    with pytest.raises(ConfigError, match="is this run's own directory"):
        HotKernel(tmp_path, tune_mode="replay", replay_from=str(tmp_path))
    assert not (tmp_path / "hotcb.owner.json").exists()


def _spawned_worker(run_dir: str, barrier, results) -> None:
    try:
        kernel = HotKernel(run_dir)  # before any rank is known, as an mp.spawn worker would
        barrier.wait(timeout=60)
        results.put("ok")
        barrier.wait(timeout=60)
        kernel.close()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")
        barrier.abort()


def test_workers_spawned_by_one_parent_are_one_job(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_spawned_worker, args=(str(tmp_path), barrier, results)) for _ in range(2)]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    assert outcomes == ["ok", "ok"]


def test_a_multiplier_family_on_a_zero_knob_is_skipped_and_said(tmp_path, caplog):
    """Adam's weight decay defaults to 0: lr_wd's wd_mult cannot move it, so only lr is tuned."""
    recipe = {"actuators": {"opt": {"mutations": {"lr_mult": {"bounds": [0.5, 2.0]}, "wd_mult": {"bounds": [0.5, 2.0]}}}},
              "search": {"algorithm": "random", "seed": 0, "storage": "memory"}, "acceptance": {"baseline": "pre"}}
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    kernel = HotKernel(run_dir=tmp_path, mutable_state=mutable_state(optimizer_actuators(opt)), recipe=recipe,
                       tune_mode="active")
    for step in range(1, 12):
        kernel.apply({"step": step, "metric": lambda n, d=None, s=step: 1.0 / s if n == "val/loss" else d}, ["val_epoch_end"])
    tried = {f for f, s in kernel.tune.family_stats.items() if s.tried}
    assert tried == {"opt.lr_mult"}
    problem = ("family opt.wd_mult: opt.weight_decay is 0, which a multiplier cannot move; it is skipped "
               "(to tune it from 0, give the family mode: set and absolute bounds)")
    assert kernel.tune.summary()["errors"] == [problem] and caplog.text.count(problem) == 1
