"""The `hotcb` console script on run directories (no job running)."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import hotcb_cli
from hotcb.channel import COMMANDS_FILE
from hotcb.cli import parse_assignments
from hotcb.kernel import APPLIED_FILE
from hotcb.ledger import read_jsonl
from hotcb.modules.tune.schemas import TuneRecipe


def test_values_parse_as_numbers_not_strings():
    assert parse_assignments(["lr=1e-4", "b=[0.9, 0.99]", "on=true", "name=val/loss"]) == {
        "lr": 1e-4, "b": [0.9, 0.99], "on": True, "name": "val/loss"}


def test_send_appends_a_command(tmp_path):
    proc = hotcb_cli("--dir", str(tmp_path), "tune", "enable", "--mode", "observe")
    assert proc.returncode == 0, proc.stderr
    (record,) = read_jsonl(tmp_path / COMMANDS_FILE)
    assert (record["module"], record["op"], record["args"]) == ("tune", "enable", {"mode": "observe"})
    # Nothing else of hotcb's there: likely the wrong directory, so the user is told.
    assert proc.stderr.strip() == f"hotcb: warning: {tmp_path} holds no hotcb run yet; the command waits for a job started there"
    (tmp_path / "hotcb.metrics.jsonl").touch()
    again = hotcb_cli("--dir", str(tmp_path), "tune", "disable")
    assert again.returncode == 0 and again.stderr == ""


def test_wait_without_a_job_times_out_with_a_hint(tmp_path):
    proc = hotcb_cli("--dir", str(tmp_path), "--wait", "0.5", "tune", "disable")
    assert proc.returncode == 3
    assert "no outcome within 0.5s (is the job running?)" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dir", "/nonexistent/run", "tune", "status"], "hotcb: error: no run directory at /nonexistent/run"),
        (["tune", "status"], "hotcb: error: --dir RUN_DIR is required for this command"),
        (["--dir", ".", "tune", "set", "epsilon"], "hotcb: error: expected KEY=VALUE, got 'epsilon'"),
        (["--dir", ".", "opt", "set", "lr=nan"], "hotcb: error: lr=nan: not a finite number; values must be finite"),
        (["--dir", ".", "opt", "set", "betas=[0.9,Infinity]"],
         "hotcb: error: betas=[0.9,Infinity]: not a finite number; values must be finite"),
        (["--dir", "/proc/self", "tune", "status"], "hotcb: error: /proc/self has no tune summary yet (tuning never "
                                                    "enabled, or the job has not reached a safe point)"),
        (["--dir", "/sys/kernel", "tune", "disable"], "hotcb: error: Permission denied: /sys/kernel/hotcb.commands.jsonl.lock"),
        (["--dir", "/proc/self", "opt", "set", "lr=0.01"],  # at once, not after the lock's 30 s timeout
         "hotcb: error: No such file or directory: /proc/self/hotcb.commands.jsonl.lock"),
        (["--dir", ".", "opt", "set", "lr=1" + "0" * 5000], "hotcb: error: cannot read 1" + "0" * 39 + "...: Exceeds the "
         "limit (4300 digits) for integer string conversion: value has 5001 digits; use sys.set_int_max_str_digits() to increase the limit"),
    ],
)
def test_user_errors_are_one_line(args, message):
    proc = hotcb_cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.strip() == message


def test_status_and_export_from_a_finished_run(tmp_path, seed_recipe_text):
    from hotcb import HotKernel

    kernel = HotKernel(run_dir=tmp_path, recipe=yaml.safe_load(seed_recipe_text), tune_mode="observe")
    for step in (10, 20, 30):
        kernel.apply({"step": step, "metric": lambda n, d=None, s=step: 1.0 / s if n == "val/loss" else d}, ["val_epoch_end"])
    kernel.close()
    status = hotcb_cli("--dir", str(tmp_path), "tune", "status")
    assert status.returncode == 0
    assert "mode: observe" in status.stdout and "decisions=3 " in status.stdout
    assert "ended: the job has finished; this is its final summary" in status.stdout
    raw = json.loads(hotcb_cli("--dir", str(tmp_path), "tune", "status", "--json").stdout)
    assert raw["decisions"] == 3

    out = tmp_path / "exported.json"
    assert hotcb_cli("--dir", str(tmp_path), "tune", "export-recipe", "--out", str(out)).returncode == 0
    assert TuneRecipe.from_dict(json.loads(out.read_text())) == kernel.recipe
    assert not (tmp_path / APPLIED_FILE).exists()


def test_wait_and_dir_may_follow_the_subcommand(tmp_path):
    proc = hotcb_cli("tune", "disable", "--dir", str(tmp_path), "--wait", "0.3")
    assert proc.returncode == 3 and "no outcome within 0.3s" in proc.stderr
    assert read_jsonl(tmp_path / COMMANDS_FILE)[0]["op"] == "disable"


def test_version():
    from hotcb import __version__

    assert hotcb_cli("--version").stdout.strip() == f"hotcb {__version__}"


def test_validate_names_a_missing_option_without_a_traceback():
    proc = hotcb_cli("config", "validate", "recipe=nope")
    assert proc.returncode == 2
    assert proc.stderr.startswith("hotcb: error: In 'hotcb/default': Could not find 'recipe/nope'")
    assert "Traceback" not in proc.stderr


def test_recipe_file_numbers_read_as_hydra_reads_them(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("acceptance:\n  epsilon: 1e-3\n")
    proc = hotcb_cli("config", "validate", "--recipe", str(path))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("text, problem", [
    ("search:\n  sampler: {_target_: subprocess.Popen, args: ls}\n",
     "recipe.search.sampler._target_: target 'subprocess.Popen' is not allowed; accepted: hotcb.*, optuna.samplers.*, "
     "torch.optim.* (add a prefix to hotcb.allow_targets)"),
    ("acceptance:\n  snapshot_dir: /proc/nope\n",
     "recipe.acceptance.snapshot_dir: cannot create snapshot directory /proc/nope: No such file or directory"),
    ("acceptance:\n  epsilon: 0.1\n  epsilon: 5\n", "not valid YAML: duplicate key 'epsilon'"),
], ids=["refused-target", "snapshot-dir", "duplicate-key"])
def test_recipe_file_is_checked_as_a_tuned_run_would_take_it(tmp_path, text, problem):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    proc = hotcb_cli("config", "validate", "--recipe", str(path))
    assert proc.returncode == 2 and problem in proc.stderr


def test_status_says_how_old_the_summary_is(tmp_path):
    from hotcb.ledger import write_json_atomic

    summary = {"mode": "active", "decisions": 1, "proposed": 0, "applied": 0, "accepted": 0, "rejected": 0,
               "failed": 0, "accept_rate": None, "updated": 0.0}
    write_json_atomic(tmp_path / "hotcb.tune.summary.json", summary)
    out = hotcb_cli("--dir", str(tmp_path), "tune", "status")
    assert out.returncode == 0, out.stderr
    assert "(no safe point since: is the job still running?)" in out.stdout


@pytest.mark.parametrize("wait", ["-1", "nan", "soon"])
def test_wait_must_be_seconds(wait):
    proc = hotcb_cli("--dir", ".", "--wait", wait, "tune", "disable")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == f"hotcb: error: argument --wait: expected seconds >= 0, got {wait!r}"


@pytest.mark.parametrize("text", ["{trunc", "[]", '{"decisions": 1}'])
def test_status_of_a_damaged_summary_is_one_line(tmp_path, text):
    (tmp_path / "hotcb.tune.summary.json").write_text(text)
    proc = hotcb_cli("--dir", str(tmp_path), "tune", "status")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("hotcb: error: ")
    assert f"{tmp_path}" in proc.stderr and ("not valid JSON" in proc.stderr or "not one hotcb wrote" in proc.stderr)


def test_status_shows_freeze_counts_and_kernel_faults(tmp_path):
    """What the kernel knows reaches `tune status`: the freeze, an intake notice does not
    count as a fault, a failing metric accessor does, and counts beyond the usual five."""
    from hotcb import HotKernel
    from hotcb.channel import Command, send

    kernel = HotKernel(run_dir=tmp_path, recipe={"objective": {"primary": "val/loss", "mode": "min"}}, tune_mode="observe")
    kernel.apply({"step": 1, "metric": lambda n, d=None: 1.0 if n == "val/loss" else d}, ["val_epoch_end"])
    send(tmp_path, Command("freeze", "set", {"mode": "prod"}))

    def broken(name, default=None):
        raise RuntimeError("metric store went away")

    kernel.apply({"step": 2, "metric": broken}, ["val_epoch_end"])
    kernel.tune.counts["cancelled"] = 2
    kernel.close()
    out = hotcb_cli("--dir", str(tmp_path), "tune", "status").stdout.splitlines()
    assert "freeze: prod (`hotcb freeze --mode off` lifts it)" in out
    assert "decisions=2 proposed=0 applied=0 accepted=0 rejected=0 failed=0 cancelled=2 accept_rate=-" in out
    assert "disabled: metrics (RuntimeError: metric store went away)" in out
    assert "error: metrics at step 2: RuntimeError: metric store went away" in out


def test_damaged_record_files_are_named_in_one_line(tmp_path):
    """compare and evolve read files that a crash or a hand edit may have broken."""
    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- seed=0\n")
    (job / "hotcb.job.json").write_text("")
    run = tmp_path / "run"
    run.mkdir()
    (run / "hotcb.tune.summary.json").write_text('{"mode": "act')
    for args, damaged in [(("compare", str(tmp_path / "sweep")), job / "hotcb.job.json"),
                          (("tune", "evolve", str(run), "--out", str(tmp_path / "e.yaml")), run / "hotcb.tune.summary.json")]:
        proc = hotcb_cli(*args)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith(f"hotcb: error: {damaged} is not valid JSON (")


def test_recipe_file_may_use_yaml_merge_keys(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("actuators:\n  opt:\n    mutations:\n      lr_mult: &lr {bounds: [0.5, 2.0], cooldown: 1}\n"
                    "      wd_mult: {<<: *lr, cooldown: 2}\n")
    proc = hotcb_cli("config", "validate", "--recipe", str(path))
    assert proc.returncode == 0, proc.stderr
