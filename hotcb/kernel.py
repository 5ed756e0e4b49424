"""HotKernel: the one object a training loop talks to.

``kernel.apply(env, events)`` is called at safe points (after a train step, at validation
end). It takes in new external commands (every ``debounce_steps`` calls, or at once on a
decision event), routes them to their module (tune, opt, loss, freeze), records each outcome
in ``hotcb.applied.jsonl``, then dispatches the events to the tune controller. Any fault
inside hotcb is logged and contained; with ``auto_disable_on_error`` the faulty module is
switched off and status says why. Training never dies because of hotcb.

Under DDP (``join``) only rank 0 takes in commands and decides; what it changed is broadcast
and replayed on the other ranks at the same call (:mod:`hotcb.distributed`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import traceback
from pathlib import Path
from typing import Any, Iterable, Optional

from hotcb import run_claim
from hotcb.actuators.base import BaseActuator
from hotcb.actuators.mutable_state import MutableState
from hotcb.channel import APPLIED_FILE, Command, CommandReader, MalformedCommand
from hotcb.distributed import ProcessGroup, Recorder, Replayer, launcher_rank, torch_process_group
from hotcb.freeze import FreezeMode
from hotcb.ledger import append_jsonl, dumps
from hotcb.modules.tune.storage import SUMMARY_FILE

log = logging.getLogger(__name__)

METRICS_FILE = "hotcb.metrics.jsonl"
CONFIG_FILE = "hotcb.yaml"
DISCARDED_FILE = "hotcb.discarded.jsonl"
DECISION_EVENTS = frozenset({"val_epoch_end", "eval_end", "fit_end"})
EVALUATION_EVENTS = frozenset({"val_epoch_end", "eval_end"})
# Events at which commands are always taken in: decisions, and the start of training (so
# that commands sent while a job was down apply before its first step).
INTAKE_EVENTS = DECISION_EVENTS | {"train_start"}


class HotKernel:
    """Live control plane of one training run.

    Args:
        run_dir: where commands are read from and artifacts written to.
        tune_recipe_path: a recipe YAML; defaults to ``RUN_DIR/hotcb.tune.recipe.yaml`` if present.
        mutable_state: the actuators the kernel may touch (optimizer, loss weights, custom).
        tune_mode: initial tune mode; defaults to ``tune.mode`` in ``RUN_DIR/hotcb.yaml``, else off.
        recipe: a TuneRecipe or recipe dict, instead of a file.
        sampler_factory: a callable returning a fresh Optuna sampler per study.
        debounce_steps: read the command log every this many ``apply`` calls.
        auto_disable_on_error: switch a module off after it raises, instead of retrying.
        freeze: initial freeze mode (off, prod, replay).
        is_writer: False on DDP ranks > 0: they decide nothing and write no files. Defaults to
            whether the launcher says this process is rank 0; ``join`` settles it.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        tune_recipe_path: str | os.PathLike | None = None,
        mutable_state: MutableState | None = None,
        *,
        tune_mode: Optional[str] = None,
        recipe: Any = None,
        sampler_factory: Any = None,
        replay_from: Optional[str] = None,
        debounce_steps: int = 1,
        auto_disable_on_error: bool = True,
        freeze: str = "off",
        is_writer: Optional[bool] = None,
    ):
        self.run_dir = Path(run_dir)
        if is_writer is None:
            world = torch_process_group()  # a worker built after init_process_group knows its rank
            is_writer = world.rank == 0 if world is not None else launcher_rank() == 0
        self.is_writer = bool(is_writer)
        if self.is_writer:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            run_claim.claim(self.run_dir)  # a second job on this directory stops here, before training
        self.mutable_state = mutable_state if mutable_state is not None else MutableState()
        self.debounce_steps = max(1, int(debounce_steps))
        self.auto_disable_on_error = auto_disable_on_error
        self.freeze = FreezeMode.parse(freeze)
        self.reader = CommandReader(self.run_dir)
        self.disabled: dict[str, str] = {}
        self.errors: list[dict] = []
        self.step = 0
        self._calls = 0
        self._closed = False
        self.group: Optional[ProcessGroup] = None
        self._looked_for_group = False
        self._recorder: Optional[Recorder] = None
        self._replayer: Optional[Replayer] = None
        file_config = _read_run_config(self.run_dir)
        from hotcb.modules.tune.recipe import load_recipe

        self.recipe = load_recipe(recipe if recipe is not None else tune_recipe_path, run_dir=self.run_dir)
        mode = tune_mode or file_config.get("mode") or "off"
        self._tune_args = dict(mode=mode, sampler_factory=sampler_factory, replay_from=replay_from)
        self._tune: Any = None
        if mode != "off":
            try:
                self.tune  # noqa: B018 - build eagerly so config errors surface before training
            except BaseException:
                run_claim.release(self.run_dir)  # refused before training: the directory is free again
                raise

    # -- modules ----------------------------------------------------------------------------
    @property
    def tune(self):
        """The tune controller, built on first use so that tune=off costs nothing."""
        if self._tune is None:
            from hotcb.modules.tune.controller import HotTuneController

            self._tune = HotTuneController(
                self.recipe, self.mutable_state, str(self.run_dir), write_files=self.is_writer,
                kernel_status=self._kernel_status, **self._tune_args
            )
        return self._tune

    @property
    def tune_active(self) -> bool:
        """Whether this process runs the tuner now (never on DDP ranks > 0)."""
        return self.is_writer and self._tune is not None and self._tune.mode.value != "off" and "tune" not in self.disabled

    def tune_counts(self) -> dict[str, int]:
        """The tuner's cumulative counts (proposed, applied, accepted, ...); empty while it is off."""
        return dict(self._tune.counts) if self._tune is not None else {}

    def join(self, group: Optional[ProcessGroup]) -> None:
        """Take part in a multi-process run: rank 0 decides and writes, the others replay.

        Adapters call this once the ranks are known (Lightning at ``setup``); without it the
        kernel joins an initialised ``torch.distributed`` world at its first ``apply``.
        """
        self._looked_for_group = True
        if group is None or group.world_size < 2:
            self.group = None
            return
        self.group = group
        self.is_writer = group.rank == 0
        if not self.is_writer:
            run_claim.release(self.run_dir)
        if self._tune is not None:
            self._tune.storage.enabled = self.is_writer
        if self.is_writer:
            self._recorder = Recorder(self.mutable_state)
        else:
            self._replayer = Replayer(self.mutable_state)

    def register_actuator(self, name: str, actuator: BaseActuator, *, replace: bool = False) -> None:
        self.mutable_state.register(actuator, name, replace=replace)

    # -- the hot path -----------------------------------------------------------------------
    def apply(self, env: dict | None = None, events: Iterable[str] = ("train_batch_end",)) -> None:
        """Called at safe points. Cheap when there is nothing to do; never raises."""
        if self._closed:
            return
        env = {} if env is None else env
        env.setdefault("kernel", self)
        if "step" in env:
            self.step = int(env["step"] or 0)
        self._calls += 1
        due = any(e in INTAKE_EVENTS for e in events) or self._calls % self.debounce_steps == 0
        if not self._looked_for_group:
            self.join(torch_process_group())
        if self.group is None:
            self._safe_point(env, events, intake=due)
        elif due:  # every rank gets here at the same call: the broadcast is collective
            self._synchronised_safe_point(env, events)

    def _synchronised_safe_point(self, env: dict, events: Iterable[str]) -> None:
        """Rank 0 decides and broadcasts what it changed; the other ranks replay it."""
        ops = None
        if self.is_writer:
            self._recorder.begin(env)
            try:
                self._safe_point(env, events, intake=True)
            finally:
                ops = self._recorder.end()
        ops = self.group.broadcast(ops)
        if not self.is_writer:
            self._guard("replay", self._replayer.replay, ops, env)

    def _safe_point(self, env: dict, events: Iterable[str], *, intake: bool) -> None:
        if intake and self.reader.has_new():
            self._guard("intake", self._intake, env)
        if self.is_writer and "metrics" not in self.disabled and any(e in EVALUATION_EVENTS for e in events):
            self._guard("metrics", self._record_metrics, env)
        if self._tune is not None and "tune" not in self.disabled and self._tune.mode.value != "off":
            for event in events:
                self._guard("tune", self._tune.on_event, event, env)

    def _guard(self, module: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - training never dies because of hotcb
            detail = f"{type(exc).__name__}: {exc}"
            self.errors.append({"module": module, "step": self.step, "error": detail, "ts": time.time()})
            log.error("hotcb: %s failed at step %s: %s\n%s", module, self.step, detail, traceback.format_exc())
            self._write_ledger({"module": module, "op": "error", "status": "error", "reason": detail})
            if self.auto_disable_on_error and module not in ("intake", "replay"):
                self.disabled[module] = detail
                log.error("hotcb: module %r disabled (auto_disable_on_error)", module)
                if module == "tune" and self._tune is not None:
                    self._tune.errors.append(f"disabled after error: {detail}")
            if self._tune is not None:  # `tune status` shows the fault
                try:
                    self._tune.write_summary()
                except Exception:  # noqa: BLE001
                    pass

    def _record_metrics(self, env: dict) -> None:
        """One line per evaluation in hotcb.metrics.jsonl: the trajectory that reports plot."""
        metric = env.get("metric")
        if metric is None:
            return
        snapshot = getattr(metric, "snapshot", None)
        values = snapshot() if callable(snapshot) else {n: metric(n) for n in ("train/loss", "val/loss", "val/score")}
        finite = {k: float(v) for k, v in values.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        append_jsonl(self.run_dir / METRICS_FILE, {"step": self.step, "epoch": env.get("epoch"), "ts": time.time(), "metrics": finite})

    # -- commands ---------------------------------------------------------------------------
    def _intake(self, env: dict) -> None:
        for command in self.reader.poll():
            if isinstance(command, MalformedCommand):
                self._write_ledger({"module": None, "op": None, "status": "rejected", "reason": command.reason,
                                    "raw": command.raw[:500]})
                continue
            self._execute(command, env)

    def _execute(self, command: Command, env: dict) -> None:
        base = {"id": command.id, "module": command.module, "op": command.op, "args": command.args}
        if not self.freeze.admits(command.module):
            self._write_ledger({**base, "status": "ignored", "reason": f"kernel frozen (freeze={self.freeze.value})"})
            return
        # `tune enable` is the way back after auto_disable_on_error (once the cause is fixed).
        revives = command.module == "tune" and command.op == "enable"
        if command.module in self.disabled and not revives:
            self._write_ledger({**base, "status": "ignored", "reason": f"module disabled after error: {self.disabled[command.module]}"})
            return
        try:
            detail = self._route(command, env)
            if revives and self.disabled.pop("tune", None):
                detail += " (re-enabled after error)"
        except (ValueError, TypeError, LookupError) as exc:
            reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            self._write_ledger({**base, "status": "rejected", "reason": reason})
            return
        except Exception as exc:  # noqa: BLE001 - the command failed; training goes on
            self._write_ledger({**base, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
            return
        self._write_ledger({**base, "status": "applied", "detail": detail})
        if self._tune is not None:
            self._tune.write_summary()  # status shows the change even while tuning is off

    def _route(self, command: Command, env: dict) -> str:
        if command.module == "freeze":
            if command.op != "set":
                raise ValueError(f"unknown freeze command {command.op!r}; accepted: set")
            self.freeze = FreezeMode.parse(command.args.get("mode"))
            return f"freeze={self.freeze.value}"
        if command.module == "tune":
            return self.tune.handle(command.op, command.args, env)
        if command.module in ("opt", "loss"):
            from hotcb.modules.manual import handle_manual

            detail = handle_manual(self.mutable_state, command.module, command.op, command.args, env)
            if self._tune is not None:
                cancelled = self._tune.on_manual_change([f"{command.module}.{key}" for key in command.args])
                detail += f"; {cancelled}" if cancelled else ""
            return detail
        raise ValueError(f"unknown module {command.module!r}; accepted: tune, opt, loss, freeze")

    def _write_ledger(self, record: dict) -> None:
        if self.is_writer:
            append_jsonl(self.run_dir / APPLIED_FILE, {"step": self.step, "ts": time.time(), **record})

    # -- lifecycle --------------------------------------------------------------------------
    def close(self, env: dict | None = None) -> None:
        """Flush and close: cancel an unfinished segment, close open trials, write the summary."""
        if self._closed:
            return
        env = env or {}
        if "step" in env:
            self.step = int(env["step"] or 0)
        if not self.is_writer or (self._calls == 0 and (self.run_dir / SUMMARY_FILE).exists()):
            # Ranks > 0 own no files. A kernel that never reached a safe point while the run's
            # summary exists is the launching process under ddp_spawn, whose copies did the
            # work: it must not overwrite their record. (A job that failed before its first
            # safe point still gets its summary written.)
            run_claim.release(self.run_dir)
            self._closed = True
            return
        if self.reader.has_new():
            self._guard("intake", self._intake, env)
        if self._tune is not None:
            self._guard("tune", self._tune.close, env)
        run_claim.release(self.run_dir)
        self._closed = True

    def _kernel_status(self) -> dict:
        """What the tune summary carries of the kernel: the tuner's own faults it lists itself."""
        return {"freeze": self.freeze.value, "disabled": dict(self.disabled),
                "errors": [f"{e['module']} at step {e['step']}: {e['error']}" for e in self.errors[-10:] if e["module"] != "tune"]}

    def status(self) -> dict:
        return {
            "run_dir": str(self.run_dir),
            "step": self.step,
            "freeze": self.freeze.value,
            "disabled": dict(self.disabled),
            "errors": self.errors[-10:],
            "tune": self._tune.summary() if self._tune is not None else {"mode": "off"},
        }

    def state_dict(self) -> dict:
        """Everything needed to resume: command-log offset, freeze mode, tuner state, and how
        far each record file had got (what lies beyond belongs to a timeline a resume discards).
        Plain JSON data, so that any checkpoint format can hold it."""
        return {
            "version": 1,
            "run_dir": str(self.run_dir.resolve()),
            "step": self.step,
            "command_offset": self.reader.offset,
            "freeze": self.freeze.value,
            "disabled": dict(self.disabled),
            "records": {name: _size(self.run_dir / name) for name in self._record_files()},
            "tune": self._tune.state_dict() if self._tune is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume: the tuner continues, and the command log is read on from the checkpoint.

        Training restarts from the checkpoint, so whatever hotcb recorded after it describes a
        trajectory that no longer exists: those records move to ``hotcb.discarded.jsonl`` and
        the commands after the checkpoint's offset are applied again, each once in the ledger.
        Resumed into a different run directory, the new directory's command log is read from
        its start.
        """
        self.freeze = FreezeMode.parse(state.get("freeze", "off"))
        self.disabled = dict(state.get("disabled") or {})
        self.step = int(state.get("step", self.step))
        same_dir = state.get("run_dir") in (None, str(self.run_dir.resolve()))
        self.reader.offset = int(state.get("command_offset", 0)) if same_dir else 0
        if not self.is_writer:
            return
        if state.get("tune") is not None:
            self.tune.load_state_dict(state["tune"])
        if same_dir:
            moved = self._discard_records_after(state.get("records") or {})
            self._write_ledger({"module": "kernel", "op": "resume", "status": "applied",
                                "detail": f"resumed from a checkpoint at step {self.step}; "
                                          f"{moved} later record(s) moved to {DISCARDED_FILE}"})

    def _record_files(self) -> list[str]:
        from hotcb.modules.tune.storage import MUTATIONS_FILE, SEGMENTS_FILE

        return [APPLIED_FILE, METRICS_FILE, MUTATIONS_FILE, SEGMENTS_FILE]

    def _discard_records_after(self, sizes: dict) -> int:
        """Move each record file's tail past its checkpointed size to DISCARDED_FILE."""
        moved = 0
        for name in self._record_files():
            path = self.run_dir / name
            keep = sizes.get(name)
            if keep is None or _size(path) <= int(keep):
                continue
            with open(path, "rb") as fh:
                fh.seek(int(keep))
                tail = fh.read()
            lines = [dumps({"file": name, "discarded_at_resume": time.time(), "record": r}) for r in _parse_lines(tail)]
            if lines:  # write the copy first: a crash in between duplicates, never loses
                with open(self.run_dir / DISCARDED_FILE, "a", encoding="utf-8") as fh:
                    fh.write("\n".join(lines) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
            os.truncate(path, int(keep))
            moved += len(lines)
        return moved


def _parse_lines(data: bytes) -> list:
    out = []
    for raw in data.splitlines():
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:  # an unterminated last line from a kill: keep it as text
            out.append(raw.decode("utf-8", errors="replace"))
    return [r for r in out if r != ""]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_run_config(run_dir: Path) -> dict:
    """The ``tune`` section of ``RUN_DIR/hotcb.yaml`` (seed: ``tune: {enabled, mode}``)."""
    path = run_dir / CONFIG_FILE
    if not path.exists():
        return {}
    from hotcb.modules.tune.recipe import parse_yaml

    data = parse_yaml(path.read_text()) or {}
    tune = data.get("tune") or {}
    if not isinstance(tune, dict):
        raise ValueError(f"{path}: 'tune' must be a mapping, got {tune!r}")
    if tune.get("enabled") is False:
        return {"mode": "off"}
    if tune.get("enabled") and not tune.get("mode"):
        return {"mode": "active"}
    return {"mode": tune.get("mode")} if tune.get("mode") else {}
