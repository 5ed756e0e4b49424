"""HotCBLightning: the kernel as a Lightning callback.

Decisions are taken in ``on_validation_end``: in Lightning 2.x a callback's
``on_validation_epoch_end`` runs *before* the module's, so a metric the module logs there is
not yet visible; by ``on_validation_end`` every epoch-level value is in
``trainer.callback_metrics``. That hook runs after every validation run, so decisions follow
``val_check_interval`` and ``check_val_every_n_epoch``. Sanity-check validation is skipped.

Under DDP the callback joins the kernel to the trainer's ranks at ``setup``: rank 0 decides,
the others replay its changes (:mod:`hotcb.distributed`). Metrics read at a decision are
averaged over the ranks first (a module that logged without ``sync_dist`` still gives the
whole validation set's value). Every rank calls the same hooks, so every collective is
reached by all of them. The callback's state (the kernel's: command-log offset, tuner state)
is saved in checkpoints under ``state_key``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning.pytorch as pl

from hotcb.actuators.optimizer import optimizer_actuators
from hotcb.adapters.metrics import MetricAccessor, actuator_metrics, normalized
from hotcb.distributed import ProcessGroup


class HotCBLightning(pl.Callback):
    """Drive ``kernel`` from a Lightning Trainer.

    Args:
        kernel: the HotKernel to drive.
        auto_actuators: register ``optimizer_actuators`` for the first optimizer (and its LR
            schedulers) unless the kernel already has ``opt.*`` actuators.
        log_values: log every actuator's value and the tuner's counts through
            ``trainer.loggers`` (``hotcb/opt.lr``, ``hotcb/opt.lr/pg1``, ``hotcb/tune/accepted``),
            every ``log_every_n_steps`` and at each decision.
    """

    def __init__(self, kernel: Any, auto_actuators: bool = True, log_values: bool = True):
        super().__init__()
        self.kernel = kernel
        self.auto_actuators = auto_actuators
        self.log_values = log_values
        self._last_step_time: float | None = None
        self._step_sec: float | None = None
        self._grad_norm: float | None = None
        self._max_steps: int | None = None
        self.final_metrics: dict[str, Any] = {}

    @property
    def state_key(self) -> str:
        return "HotCBLightning"

    # -- env --------------------------------------------------------------------------------
    def _extra_metrics(self, trainer: "pl.Trainer") -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if trainer.optimizers:
            extra["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        if self._grad_norm is not None:
            extra["grad/norm"] = self._grad_norm
        if self._step_sec is not None:
            extra["time/step_sec"] = self._step_sec
        return extra

    def _env(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", metrics: Any = None, **more: Any) -> dict:
        source = metrics if metrics is not None else (lambda: trainer.callback_metrics)
        accessor = MetricAccessor(source, lambda: self._extra_metrics(trainer))
        schedulers = [cfg.scheduler for cfg in trainer.lr_scheduler_configs]
        env = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "max_steps": self._max_steps,
            "metric": accessor,
            "metric_names": accessor.names,
            "kernel": self.kernel,
            "trainer": trainer,
            "model": pl_module,
            "optimizers": list(trainer.optimizers),
            "schedulers": schedulers,
            "grad_scaler": getattr(trainer.precision_plugin, "scaler", None),
        }
        if len(trainer.optimizers) == 1:
            env["optimizer"] = trainer.optimizers[0]
        env.update(more)
        return env

    def _rank_mean_metrics(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> dict[str, Any]:
        """``callback_metrics`` as plain numbers, averaged over the ranks under DDP (collective)."""
        local = {k: v for k, v in normalized(trainer.callback_metrics).items() if isinstance(v, (int, float))}
        if trainer.world_size < 2:
            return local
        import torch

        names = trainer.strategy.broadcast(sorted(local), src=0)
        values = torch.tensor([float(local.get(n, math.nan)) for n in names], dtype=torch.float64,
                              device=pl_module.device)
        reduced = trainer.strategy.reduce(values, reduce_op="mean")
        return dict(zip(names, reduced.tolist()))

    # -- hooks ------------------------------------------------------------------------------
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if trainer.world_size > 1:
            self.kernel.join(ProcessGroup(trainer.global_rank, trainer.world_size,
                                          lambda obj: trainer.strategy.broadcast(obj, src=0)))

    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        max_steps = trainer.estimated_stepping_batches
        self._max_steps = int(max_steps) if isinstance(max_steps, (int, float)) and math.isfinite(max_steps) else None
        state = self.kernel.mutable_state
        if self.auto_actuators and trainer.optimizers and not state.has_prefix("opt"):
            optimizer = trainer.optimizers[0]
            schedulers = [c.scheduler for c in trainer.lr_scheduler_configs if c.scheduler.optimizer is optimizer]
            for actuator in optimizer_actuators(optimizer, schedulers=schedulers):
                state.register(actuator)

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        # After a checkpoint is restored and before the first step: commands sent while the
        # job was down, and the cancellation of a segment a resume cut short, apply here.
        self.kernel.apply(self._env(trainer, pl_module), events=["train_start"])

    def on_before_optimizer_step(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", optimizer: Any) -> None:
        if self.kernel.tune_active:
            import torch

            norms = [p.grad.detach().norm(2) for p in pl_module.parameters() if p.grad is not None]
            self._grad_norm = float(torch.linalg.vector_norm(torch.stack(norms))) if norms else None

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_step_time is not None:
            self._step_sec = now - self._last_step_time
        self._last_step_time = now
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        loss = loss.detach() if hasattr(loss, "detach") else loss
        self.kernel.apply(self._env(trainer, pl_module, loss=loss, grad_norm=self._grad_norm), events=["train_batch_end"])
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self._log(trainer)

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.sanity_checking:
            return
        metrics = self._rank_mean_metrics(trainer, pl_module)
        env = self._env(trainer, pl_module, metrics=metrics)
        self.final_metrics = env["metric"].snapshot()
        self.kernel.apply(env, events=["val_epoch_end"])
        self._log(trainer)

    def on_fit_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self.kernel.close(self._env(trainer, pl_module))

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        self.kernel.close(self._env(trainer, pl_module))

    # -- logging ----------------------------------------------------------------------------
    def _log(self, trainer: "pl.Trainer") -> None:
        """Actuator values and tuner counts to every logger, from rank 0 only (no collectives)."""
        if not (self.log_values and trainer.loggers and trainer.is_global_zero):
            return
        metrics = actuator_metrics(self.kernel)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    # -- checkpointing ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"kernel": self.kernel.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.kernel.load_state_dict(state_dict["kernel"])

