"""Human-readable output: the end-of-run summary (plots and comparison tables live here too)."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def format_run_summary(kernel: Any, final_metrics: dict) -> str:
    """Mutations proposed/accepted/rejected, final val loss/score, the knobs' final values."""
    status = kernel.status()
    tune = status["tune"]
    lines = [f"hotcb: run directory {status['run_dir']}"]
    if tune.get("mode") == "off" and "proposed" not in tune:
        lines.append("  tune: off")
    else:
        lines.append(
            f"  tune: mode={tune['mode']} proposed={tune['proposed']} applied={tune['applied']} "
            f"accepted={tune['accepted']} rejected={tune['rejected']} failed={tune['failed']}"
            + (f" paused ({tune['pause_reason']})" if tune.get("paused") else "")
        )
    shown = {k: final_metrics[k] for k in ("val/loss", "val/score", "val/acc") if k in final_metrics}
    if shown:
        lines.append("  final: " + " ".join(f"{k}={_fmt(v)}" for k, v in shown.items()))
    knobs = []
    for name, actuator in kernel.mutable_state.items():
        current = getattr(actuator, "current", None)
        if callable(current):
            try:
                knobs.append(f"{name}={_fmt(current({}))}")
            except Exception:  # noqa: BLE001
                continue
    if knobs:
        lines.append("  values: " + " ".join(knobs))
    if status["disabled"]:
        lines.append(f"  disabled after errors: {status['disabled']}")
    return "\n".join(lines)
