"""HotCBHFCallback: the kernel as a HuggingFace ``transformers.TrainerCallback``.

Decisions are taken at ``on_evaluate`` (``eval_loss`` reads as ``val/loss``), so they follow
``eval_strategy`` (``"steps"`` with ``eval_steps``, or ``"epoch"``). ``on_step_end`` is the
per-step safe point. An lr change goes through the scheduler-aware optimizer actuator, which
rescales the Trainer's LR scheduler (``get_linear_schedule_with_warmup`` and the like) so the
next ``scheduler.step()`` keeps it; the Trainer's checkpoints then hold the changed optimizer
and scheduler, so the change is still in effect after ``resume_from_checkpoint``.

The kernel's state rides in the checkpoint's ``trainer_state.json`` (the callback is an
``ExportableState``) and is restored by the callback itself at ``on_train_begin``; leave
``restore_callback_states_from_checkpoint`` at its default (False), since the Trainer would
otherwise try to rebuild the callback without its kernel. Under DDP (torchrun) the kernel
joins the initialised process group by itself: rank 0 decides, the others replay.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from hotcb.actuators.optimizer import optimizer_actuators
from hotcb.adapters.metrics import MetricAccessor, actuator_metrics


def _unwrap(obj: Any, attr: str) -> Any:
    """The plain torch object inside accelerate's AcceleratedOptimizer / AcceleratedScheduler."""
    inner = getattr(obj, attr, None)
    return inner if inner is not None and inner is not obj else obj


class HotCBHFCallback(TrainerCallback, ExportableState):
    """Drive ``kernel`` from a ``transformers.Trainer``.

    Args:
        kernel: the HotKernel to drive.
        auto_actuators: register ``optimizer_actuators`` for the Trainer's optimizer (and its LR
            scheduler) unless the kernel already has ``opt.*`` actuators.
        log_values: add every actuator's value and the tuner's counts to the Trainer's logs
            (so they reach its reporters: TensorBoard, W&B, ...).
    """

    def __init__(self, kernel: Any = None, auto_actuators: bool = True, log_values: bool = True):
        if kernel is None:
            raise ValueError("HotCBHFCallback needs a kernel; it restores its own state on resume, so keep "
                             "TrainingArguments.restore_callback_states_from_checkpoint=False (the default)")
        self.kernel = kernel
        self.auto_actuators = auto_actuators
        self.log_values = log_values
        self._logged: dict[str, Any] = {}
        self._max_steps: int | None = None
        self.final_metrics: dict[str, Any] = {}

    # -- env --------------------------------------------------------------------------------
    def _env(self, state: Any, kwargs: dict, metrics: Any = None) -> dict:
        optimizer = _unwrap(kwargs.get("optimizer"), "optimizer")
        scheduler = _unwrap(kwargs.get("lr_scheduler"), "scheduler")
        accessor = MetricAccessor(metrics if metrics is not None else self._logged)
        env = {
            "step": state.global_step,
            "epoch": state.epoch,
            "max_steps": self._max_steps,
            "metric": accessor,
            "metric_names": accessor.names,
            "kernel": self.kernel,
            "model": kwargs.get("model"),
        }
        if optimizer is not None:
            env["optimizer"] = optimizer
        if scheduler is not None:
            env["scheduler"] = scheduler
        return env

    # -- hooks ------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self._max_steps = state.max_steps or None
        mutable = self.kernel.mutable_state
        optimizer = _unwrap(kwargs.get("optimizer"), "optimizer")
        if self.auto_actuators and optimizer is not None and not mutable.has_prefix("opt"):
            scheduler = _unwrap(kwargs.get("lr_scheduler"), "scheduler")
            for actuator in optimizer_actuators(optimizer, schedulers=[scheduler] if scheduler is not None else []):
                mutable.register(actuator)
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if state.global_step > 0 and isinstance(saved, dict) and "kernel" in saved.get("attributes", {}):
            self.kernel.load_state_dict(saved["attributes"]["kernel"])
        self.kernel.apply(self._env(state, kwargs), events=["train_start"])

    def on_step_end(self, args, state, control, **kwargs):
        self.kernel.apply(self._env(state, kwargs), events=["train_batch_end"])

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        env = self._env(state, kwargs, metrics=dict(metrics or {}))
        self.final_metrics = env["metric"].snapshot()
        self.kernel.apply(env, events=["eval_end"])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        self._logged.update({k: v for k, v in logs.items() if not k.startswith("eval_")})
        if self.log_values and state.is_world_process_zero:
            logs.update(actuator_metrics(self.kernel))

    def on_train_end(self, args, state, control, **kwargs):
        self.kernel.close(self._env(state, kwargs))

    # -- checkpointing (ExportableState: saved in trainer_state.json, by rank 0) ------------
    def state(self) -> dict:
        return {"args": {}, "attributes": {"kernel": self.kernel.state_dict()}}
