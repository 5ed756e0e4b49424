"""What hotcb costs: per-step ``kernel.apply``, one decision, snapshot memory, CLI and import time.

Every figure is a median over repeats of the real call in a real loop (the T1 digits MLP), so
it includes dictionary building and file checks, not just the controller's own code.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from examples.benchmarks.run import DEFAULT_RECIPE, recipe_for
from examples.benchmarks.tasks import tasks


def _us(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e6


def apply_costs(steps: int, run_dir: Path) -> dict:
    """Median µs of a train step and of ``kernel.apply`` (tune off; tune active), and of a decision."""
    from hotcb import HotKernel
    from hotcb.actuators import MutableState
    from hotcb.adapters.torch import metric_accessor

    torch.set_num_threads(1)
    task = tasks()[0]
    out: dict = {}
    for mode in ("off", "active"):
        problem = task.build(0, task.start)
        metrics: dict = {}
        accessor = metric_accessor(metrics)
        kernel = HotKernel(run_dir / mode, mutable_state=MutableState(problem.actuators()), tune_mode=mode,
                           recipe=recipe_for(task, 0, DEFAULT_RECIPE, storage="sqlite"))
        mutations = run_dir / mode / "hotcb.tune.mutations.jsonl"
        step_s, apply_s, decide_s = [], [], []
        for step in range(1, steps + 1):
            t0 = time.perf_counter()
            loss = problem.train_step(step)
            t1 = time.perf_counter()
            env = {"step": step, "epoch": step // task.eval_every, "max_steps": steps, "metric": accessor,
                   "model": problem.model, "optimizer": problem.optimizer, "loss": loss}
            kernel.apply(env=env, events=["train_batch_end"])
            t2 = time.perf_counter()
            step_s.append(t1 - t0)
            apply_s.append(t2 - t1)
            if step % task.eval_every == 0:
                metrics.update(problem.evaluate(step), **{"train/loss": loss})
                before = _lines(mutations)
                t3 = time.perf_counter()
                kernel.apply(env=env, events=["val_epoch_end"])
                if _lines(mutations) > before:  # this decision proposed, snapshotted and applied
                    decide_s.append(time.perf_counter() - t3)
        kernel.close(env={"step": steps})
        out["train_step_us"] = _us(step_s)
        out[f"apply_{mode}_us"] = _us(apply_s)
        if mode == "active":
            out["decision_ms"] = statistics.median(decide_s) * 1e3 if decide_s else None
            out["decision_first_ms"] = decide_s[0] * 1e3 if decide_s else None
            out["decisions_timed"] = len(decide_s)
    return out


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def snapshot_costs() -> list[dict]:
    """Bytes and time of one exact training-state snapshot (``rollback: state``), by model size."""
    from hotcb.actuators import state

    torch.set_num_threads(1)
    out = []
    for width in (64, 1024, 2048):
        model = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                                    torch.nn.ReLU(), torch.nn.Linear(width, 10))
        optimizer = torch.optim.Adam(model.parameters())
        model(torch.randn(8, 64)).sum().backward()
        optimizer.step()  # Adam holds two moments per parameter from here on
        env = {"model": model, "optimizer": optimizer}
        times, nbytes = [], 0
        for _ in range(5):
            t0 = time.perf_counter()
            snap = state.capture(env)
            times.append(time.perf_counter() - t0)
            nbytes = snap.nbytes
            snap.discard()
        params = sum(p.numel() for p in model.parameters())
        out.append({"params": params, "param_mb": params * 4 / 2**20, "snapshot_mb": nbytes / 2**20,
                    "capture_ms": statistics.median(times) * 1e3})
    return out


def _wall(cmd: list[str], repeats: int = 5, cwd: str | None = None) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=cwd)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def process_costs(run_dir: Path) -> dict:
    """Wall ms of ``python -c pass``, ``import hotcb``, ``hotcb --help`` and ``tune status``."""
    hotcb_cli = shutil.which("hotcb", path=str(Path(sys.executable).parent)) or shutil.which("hotcb")
    python = sys.executable
    out = {
        "python_ms": _wall([python, "-c", "pass"]),
        "import_hotcb_ms": _wall([python, "-c", "import hotcb"]),
        "import_kernel_ms": _wall([python, "-c", "from hotcb import HotKernel"]),
    }
    if hotcb_cli:
        out["help_ms"] = _wall([hotcb_cli, "--help"])
        out["status_ms"] = _wall([hotcb_cli, "--dir", str(run_dir), "tune", "status"])
    return out


def measure(steps: int = 600) -> dict:
    with tempfile.TemporaryDirectory(prefix="hotcb-overhead-") as tmp:
        run_dir = Path(tmp)
        result = {"apply": apply_costs(steps, run_dir), "snapshot": snapshot_costs()}
        result["process"] = process_costs(run_dir / "active")
    return result


if __name__ == "__main__":  # pragma: no cover - handy on its own
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    print(json.dumps(measure(), indent=2))
