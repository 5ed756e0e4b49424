"""The generic launcher: ``@hotcb.main(...)`` wires kernel, tuner and adapter into a user's job.

``main`` wraps ``hydra.main``. For each job it validates ``cfg.hotcb`` (nothing is built
before that passes), makes the Hydra output directory the run directory (printed, with a
``latest`` pointer beside it), builds the kernel and the adapter, and calls the user's
function with the config and a :class:`HotRun` handle. The function's return value is
returned as a float so that a Hydra sweeper can optimise it. On failure hotcb's files are
flushed and closed, the run directory is logged, and the error is re-raised.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from hotcb.config_errors import ConfigError
from hotcb.run_claim import RunDirInUse
from hotcb.schema import HotcbConfig, validate_hotcb

log = logging.getLogger("hotcb")


@dataclass
class HotRun:
    """What a user's training function gets besides its config."""

    kernel: Any
    adapter: Any
    run_dir: Path
    config: HotcbConfig
    extras: dict = field(default_factory=dict)

    @property
    def callback(self) -> Any:
        """The adapter, under the name a Lightning user expects: ``Trainer(callbacks=[hot.callback])``."""
        return self.adapter

    @property
    def callbacks(self) -> list:
        return [self.adapter]

    @property
    def final_metrics(self) -> dict:
        return dict(getattr(self.adapter, "final_metrics", {}) or {})


def build_kernel(config: HotcbConfig, run_dir: str | os.PathLike, *, is_writer: Optional[bool] = None):
    from hotcb._instantiate import instantiate
    from hotcb.kernel import HotKernel
    from hotcb.modules.tune.search import default_sampler_factory

    try:
        sampler_factory = default_sampler_factory(config.recipe.search, tuple(config.allow_targets))
    except ImportError:  # no optuna: the kernel falls back to random proposals and says so
        sampler_factory = None
    kernel = HotKernel(
        run_dir,
        recipe=config.recipe,
        tune_mode=config.tune.mode,
        sampler_factory=sampler_factory,
        replay_from=config.tune.replay_from,
        debounce_steps=config.debounce_steps,
        auto_disable_on_error=config.auto_disable_on_error,
        freeze=config.freeze,
        is_writer=is_writer,
    )
    for name, spec in config.actuators.items():
        actuator = instantiate(spec, allowed=config.allow_targets, where=f"hotcb.actuators.{name}")
        kernel.register_actuator(name, actuator)
    return kernel


def _hydra_output_dir() -> Optional[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.output_dir
    except Exception:  # noqa: BLE001 - not inside a Hydra job
        return None


def _print_logs_once() -> None:
    """Lightning puts console handlers of its own on the ``lightning`` loggers, which repeat
    every line that Hydra's root handler already prints, in a second format. Inside a Hydra
    job whose logging is configured, leave printing to Hydra: one line each, and all of them in
    the job's log file."""
    root = logging.getLogger()
    if not root.handlers:
        return  # hydra/job_logging=disabled or none: Lightning's handlers are the only output
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        own = [h for h in logger.handlers if type(h) is logging.StreamHandler]
        for handler in own:
            logger.removeHandler(handler)
        if own:
            logger.propagate = True


def _hydra_mode() -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().mode.name
    except Exception:  # noqa: BLE001 - not inside a Hydra job
        return "RUN"


def _point_latest(run_dir: Path) -> None:
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    try:
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, link)
    except OSError as exc:
        log.debug("hotcb: could not update %s: %s", link, exc)


def validate(cfg: Any) -> HotcbConfig:
    """``cfg.hotcb`` validated; errors name the option each bad value came from."""
    from hotcb.config_origin import origin_of_job

    try:
        return validate_hotcb(cfg)
    except ConfigError:
        origin = origin_of_job()  # replaying the defaults list costs a little: only on error
        if origin is None:
            raise
        return validate_hotcb(cfg, origin)


def build(config: HotcbConfig, run_dir: str | os.PathLike) -> HotRun:
    """Kernel, tuner and adapter for a validated config; the kernel is closed if the adapter fails."""
    from hotcb._instantiate import instantiate

    kernel = build_kernel(config, run_dir)
    try:
        adapter = instantiate(config.adapter, kernel=kernel, allowed=config.allow_targets, where="hotcb.adapter")
    except BaseException:
        kernel.close()
        raise
    return HotRun(kernel=kernel, adapter=adapter, run_dir=Path(run_dir), config=config)


def run(cfg: Any, task: Callable[[Any, HotRun], Any]) -> Optional[float]:
    """Validate, build, call ``task(cfg, hot)``, close; returns the task's objective as a float."""
    from hotcb.distributed import launcher_rank
    from hotcb.ledger import write_json_atomic
    from hotcb.report import JOB_FILE, format_run_summary

    hydra_dir = _hydra_output_dir()
    try:
        config = validate(cfg)
    except ConfigError as exc:
        if hydra_dir is not None and launcher_rank() == 0:  # `hotcb compare` counts it as failed
            write_json_atomic(Path(hydra_dir) / JOB_FILE, {"status": "failed", "error": f"ConfigError: {exc}"})
        raise
    if config.validate_only:
        print("hotcb: configuration is valid", flush=True)
        return None
    run_dir = Path(config.run_dir or hydra_dir or "runs/hotcb").resolve()
    writer = launcher_rank() == 0  # DDP ranks > 0 (started by the trainer) share rank 0's directory
    if writer:
        run_dir.mkdir(parents=True, exist_ok=True)
        print(f"hotcb: run directory {run_dir}", flush=True)
        _point_latest(run_dir)
    try:
        hot = build(config, run_dir)
        if hydra_dir is not None:
            _print_logs_once()  # after build: the Lightning adapter has imported lightning
        try:
            result = task(cfg, hot)
        finally:
            hot.kernel.close()  # flushes the summary and fails open trials, whatever happened
    except BaseException as exc:
        if writer and not isinstance(exc, RunDirInUse):  # the directory is another job's record
            write_json_atomic(run_dir / JOB_FILE, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        log.error("hotcb: job failed; its files are in %s", run_dir)
        raise
    objective = None if result is None else float(result)
    if writer:
        write_json_atomic(run_dir / JOB_FILE, {"status": "completed", "objective": objective})
        print(format_run_summary(hot.kernel, hot.final_metrics), flush=True)
    return objective


def main(config_path: Optional[str] = None, config_name: Optional[str] = None, version_base: Optional[str] = "1.3"):
    """Decorator: ``@hotcb.main(config_path="conf", config_name="train")`` over ``def train(cfg, hot)``."""
    import hydra

    def decorator(task: Callable[[Any, HotRun], Any]) -> Callable[[], Any]:
        @functools.wraps(task)
        def entry(cfg: Any) -> Optional[float]:
            try:
                return run(cfg, task)
            except ConfigError as exc:
                if _hydra_mode() != "RUN":
                    raise  # in a multirun this job fails, the others go on
                print(f"hotcb: {exc}", file=sys.stderr, flush=True)
                sys.exit(2)

        # functools.wraps leaves __wrapped__ = task: Hydra follows it to find the user's file,
        # against which a relative config_path is resolved.
        return hydra.main(config_path=config_path, config_name=config_name, version_base=version_base)(entry)

    return decorator
