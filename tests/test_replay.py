"""Replay: another run's accepted mutations, re-applied at the same steps, without search."""

from __future__ import annotations

import math

import pytest
from conftest import hotcb_cli
from tune_driver import BASE_LR, checkpoint, run_loop

from hotcb.modules.tune.storage import STUDY_FILE, read_mutations


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("source")
    loop = run_loop(run_dir, epochs=12)
    assert loop.kernel.tune.counts["accepted"] >= 2 and loop.kernel.tune.counts["rejected"] >= 1
    return run_dir, loop


def _accepted(run_dir):
    records = read_mutations(run_dir)
    accepted = {r["id"] for r in records if r["status"] == "accepted"}
    return [r for r in records if r["status"] == "applied" and r["id"] in accepted]


def _assert_replayed(replay_dir, source_dir, loop):
    replayed = [r for r in read_mutations(replay_dir) if r["status"] == "replayed"]
    wanted = _accepted(source_dir)
    assert [(r["replayed_from"], r["step"], r["patch"]) for r in replayed] == [(r["id"], r["step"], r["patch"]) for r in wanted]
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(BASE_LR * math.prod(r["value"] for r in wanted), rel=1e-9)
    assert not (replay_dir / STUDY_FILE).exists()  # no search
    assert loop.kernel.tune.counts["proposed"] == 0 and loop.kernel.tune.counts["replayed"] == len(wanted)


def test_replay_reapplies_accepted_mutations_at_the_same_steps(tmp_path, source_run):
    source_dir, source_loop = source_run
    loop = run_loop(tmp_path, mode="replay", epochs=12, replay_from=str(source_dir))
    _assert_replayed(tmp_path, source_dir, loop)
    # between mutations the lr is the source run's accepted lr: the rejected trials are not replayed
    source_lr = dict(source_loop.lrs)
    steps = {r["step"] for r in _accepted(source_dir)}
    last = max(steps)
    assert dict(loop.lrs)[last + 1] == pytest.approx(source_lr[last + 1], rel=1e-9)


def test_replay_enabled_from_the_cli(tmp_path, source_run):
    source_dir, _ = source_run
    tmp_path.mkdir(exist_ok=True)
    result = hotcb_cli("--dir", str(tmp_path), "tune", "enable", "--mode", "replay", "--from", str(source_dir))
    assert result.returncode == 0, result.stderr
    loop = run_loop(tmp_path, mode="off", epochs=12)
    _assert_replayed(tmp_path, source_dir, loop)


def test_cli_replay_without_a_source_is_rejected_by_the_job(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    assert hotcb_cli("--dir", str(tmp_path), "tune", "enable", "--mode", "replay").returncode == 0
    loop = run_loop(tmp_path, mode="off", epochs=1)
    assert loop.kernel.tune.mode.value == "off"
    ledger = (tmp_path / "hotcb.applied.jsonl").read_text()
    assert "replay mode needs --from RUN_DIR" in ledger


def test_replay_resumed_from_a_checkpoint_applies_nothing_twice(tmp_path, source_run):
    source_dir, _ = source_run
    wanted = _accepted(source_dir)
    saved = {}

    def stop(kernel, epoch):
        if 0 < kernel.tune.counts["replayed"] < len(wanted):
            saved["state"] = checkpoint(kernel, epoch)
            return True
        return False

    run_loop(tmp_path, mode="replay", epochs=12, replay_from=str(source_dir), stop=stop)
    loop = run_loop(tmp_path, mode="replay", epochs=12, replay_from=str(source_dir), state=saved["state"])
    _assert_replayed(tmp_path, source_dir, loop)


def test_a_replay_source_without_mutation_log_is_refused(tmp_path):
    from hotcb.config_errors import ConfigError

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="tune.replay_from: replay source .* has no hotcb.tune.mutations.jsonl"):
        run_loop(tmp_path / "run", mode="replay", epochs=1, replay_from=str(empty))
    assert hotcb_cli("--dir", str(tmp_path), "tune", "enable", "--mode", "replay", "--from", str(empty)).returncode == 0
    loop = run_loop(tmp_path, mode="off", epochs=1)
    assert loop.kernel.tune.mode.value == "off"
    assert "has no hotcb.tune.mutations.jsonl" in (tmp_path / "hotcb.applied.jsonl").read_text()


def test_replay_mismatch_is_logged_as_failed_and_training_continues(tmp_path, source_run):
    source_dir, _ = source_run
    loop = run_loop(tmp_path, mode="replay", epochs=12, replay_from=str(source_dir), register=False)
    failed = [r for r in read_mutations(tmp_path) if r["status"] == "failed"]
    assert len(failed) == len(_accepted(source_dir))
    assert all("actuator 'opt.lr' is not registered" in r["reason"] for r in failed)
    assert not loop.kernel.disabled and loop.kernel.tune.counts["failed"] == len(failed)
    assert len(loop.lrs) == 12 * 4  # every step ran


def test_a_replay_run_can_be_replayed(tmp_path, source_run):
    """A replay run kept what it replayed: replaying it gives the same lr path."""
    source_dir, _ = source_run
    first = run_loop(tmp_path / "first", mode="replay", epochs=12, replay_from=str(source_dir))
    second = run_loop(tmp_path / "second", mode="replay", epochs=12, replay_from=str(tmp_path / "first"))
    assert second.lrs == first.lrs and second.kernel.tune.counts["replayed"] == first.kernel.tune.counts["replayed"] > 0


def test_a_run_does_not_replay_itself_or_a_run_that_kept_nothing(tmp_path, source_run):
    from hotcb.channel import Command, send
    from hotcb.kernel import APPLIED_FILE
    from hotcb.ledger import read_jsonl

    source_dir, _ = source_run
    run_dir = tmp_path / "run"

    def ask_to_replay_itself(kernel, epoch: int) -> bool:
        if epoch == 6:
            send(run_dir, Command("tune", "enable", {"mode": "replay", "from": str(run_dir)}))
        return False

    run_loop(run_dir, epochs=8, stop=ask_to_replay_itself)
    (record,) = [r for r in read_jsonl(run_dir / APPLIED_FILE) if r["op"] == "enable"]
    assert record["status"] == "rejected"
    assert record["reason"] == (f"replay source {run_dir} is this run's own directory: its accepted mutations "
                                "are in effect already")
    observed = tmp_path / "observed"
    run_loop(observed, mode="observe", epochs=2)
    with pytest.raises(ValueError, match="kept no mutation"):
        run_loop(tmp_path / "again", mode="replay", epochs=1, replay_from=str(observed))
