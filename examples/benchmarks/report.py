"""Render the results as ``docs/benchmarks.md`` (tables) and PNG plots next to it."""

from __future__ import annotations

import math
import platform
import warnings
from pathlib import Path

import numpy as np

from examples.benchmarks.suite import SWEEP, Row, TaskResults, mean_sd, rows

PLOT_DIR = "benchmarks"  # relative to the markdown file


def _pm(pair, fmt: str = "{:.4g}") -> str:
    mean, sd = pair
    if mean is None or math.isnan(mean):
        return "—"
    return f"{fmt.format(mean)} ± {fmt.format(sd)}"


def _steps(row: Row) -> str:
    mean, got, n = row.steps_to_sweep
    return "never" if not got else f"{mean:.0f} ({got}/{n})"


def _quality(q: dict | None) -> str:
    if not q or not q["decisions"]:
        return "—"
    prec = "—" if q["precision"] is None else f"{q['precision']:.2f}"
    return (f"{q['accepted']}/{q['decisions']} accepted; precision {prec}; agreement {q['agreement']:.2f};"
            f" ended paused in {q['paused']}/{q['runs']} runs")


def task_table(res: TaskResults) -> str:
    task = res.task
    head = ["method", "compute", "final val/loss"] + (["final val/acc"] if task.has_accuracy else []) + [
        "steps to sweep-best loss", "gap closed", f"final {task.knob}"] + (
        ["regret vs oracle"] if task.oracle else []) + ["diverged"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows(res):
        cells = [row.method, f"{row.compute:.2f}x", _pm(row.loss)]
        if task.has_accuracy:
            cells.append(_pm(row.acc, "{:.3f}"))
        cells += [_steps(row), "—" if math.isnan(row.gap_closed) else f"{row.gap_closed:+.2f}", _pm(row.final_knob, "{:.3g}")]
        if task.oracle:
            cells.append(_pm(row.regret))
        cells.append(f"{row.diverged}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def quality_table(results: list[TaskResults]) -> str:
    lines = ["| task | hottune seed (pre/params) | hottune default (trend/state) |", "|---|---|---|"]
    for res in results:
        by = {r.method: r.quality for r in rows(res) if r.quality is not None}
        cells = [_quality(q) for q in by.values()]
        lines.append(f"| {res.task.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def baselines_section(summary: dict | None) -> list[str]:
    """The acceptance-baseline study of ``examples.benchmarks.decision_quality`` (random lr
    multipliers on digits, each judged by every baseline), when that module is present."""
    if summary is None:
        return []
    variants = {k: v for k, v in summary.items() if isinstance(v, dict) and "agreement" in v}
    lines = ["Acceptance baselines judged on the same random mutations (`python -m examples.benchmarks.decision_quality`,",
             f"{summary.get('decisions')} decisions, {summary.get('oracle_helpful')} helpful by the oracle):", "",
             "| baseline | agreement | accept rate | accepts harmful | accepts helpful |", "|---|---|---|---|---|"]
    fmt = lambda v: "—" if v is None else f"{v:.2f}"
    for name, v in variants.items():
        lines.append(f"| {name} | {fmt(v.get('agreement'))} | {fmt(v.get('accept_rate'))} | "
                     f"{fmt(v.get('accepts_harmful'))} | {fmt(v.get('accepts_helpful'))} |")
    return lines + [""]


def overhead_tables(o: dict) -> str:
    a, p = o["apply"], o["process"]
    decision = "—" if a.get("decision_ms") is None else f"{a['decision_ms']:.1f} ms (first: {a['decision_first_ms']:.1f} ms; {a['decisions_timed']} timed)"
    lines = [
        "| what | median |", "|---|---|",
        f"| one T1 train step (forward, backward, Adam; for scale) | {a['train_step_us']:.0f} µs |",
        f"| `kernel.apply(train_batch_end)`, tune off | {a['apply_off_us']:.1f} µs |",
        f"| `kernel.apply(train_batch_end)`, tune active, between decisions | {a['apply_active_us']:.1f} µs |",
        f"| one decision: `kernel.apply(val_epoch_end)` that judges, proposes (Optuna TPE, sqlite), snapshots and applies | {decision} |",
        f"| `python -c pass` (interpreter start, for scale) | {p['python_ms']:.0f} ms |",
        f"| `python -c 'import hotcb'` | {p['import_hotcb_ms']:.0f} ms |",
        f"| `python -c 'from hotcb import HotKernel'` | {p['import_kernel_ms']:.0f} ms |",
    ]
    if "help_ms" in p:
        lines += [f"| `hotcb --help` | {p['help_ms']:.0f} ms |",
                  f"| `hotcb --dir RUN tune status` | {p['status_ms']:.0f} ms |"]
    lines += ["", "Snapshot for `acceptance.rollback: state` (model + Adam state + RNG, held in memory):", "",
              "| parameters | parameters (MB) | snapshot (MB) | capture time |", "|---|---|---|---|"]
    for s in o["snapshot"]:
        lines.append(f"| {s['params']:,} | {s['param_mb']:.2f} | {s['snapshot_mb']:.2f} | {s['capture_ms']:.2f} ms |")
    return "\n".join(lines)


def standing(results: list[TaskResults]) -> str:
    """One plain line per task and hottune variant, against each other method, seed by seed.

    Seeds differ in difficulty far more than methods do, so methods are compared in pairs on
    the same seed: *beats* when hottune's final val/loss is lower on at least 80% of the seeds,
    *loses to* when higher on at least 80%, *mixed* otherwise. Exact ties are counted apart
    (a tuner whose every change was rolled back by state ends exactly where constant does)."""
    out = []
    for res in results:
        table = {r.method: r for r in rows(res)}
        names = {key: r.method for key, r in zip(res.methods(), rows(res))}
        for tuned in [k for k in names if k.startswith("hottune")]:
            mine = [r.final_loss for r in res.runs[tuned]]
            parts = []
            for other in [k for k in names if not k.startswith("hottune")]:
                theirs = [r.final_loss for r in res.runs[other]]
                wins = sum(a < b for a, b in zip(mine, theirs))
                losses = sum(a > b for a, b in zip(mine, theirs))
                n, ties = len(mine), len(mine) - wins - losses
                verdict = "beats" if wins >= 0.8 * n else "loses to" if losses >= 0.8 * n else "mixed against"
                delta = mean_sd([a - b for a, b in zip(mine, theirs)])
                tied = f", tied on {ties}" if ties else ""
                parts.append(f"{verdict} {names[other]} (better on {wins}/{n} seeds{tied}, Δ {_pm(delta)})")
            row = table[names[tuned]]
            gap = "—" if math.isnan(row.gap_closed) else f"{row.gap_closed:+.2f}"
            out.append(f"- **{res.task.name}, {names[tuned]}** at {row.compute:.2f}x compute: "
                       + "; ".join(parts) + f". Gap to the {res.trials}x sweep closed: {gap}.")
    return "\n".join(out)


def plots(results: list[TaskResults], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for kind, ylabel in (("loss", "val/loss (median over seeds)"), ("knob", "knob (seed 0)")):
        fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
        for ax, res in zip(axes[0], results):
            task = res.task
            grid = np.linspace(task.eval_every, task.max_steps * 1.5, 200)
            for key in res.methods():
                runs = res.runs[key]
                label = "sweep best" if key == SWEEP else key
                if kind == "loss":
                    ys = [np.interp(grid, [c[0] for c in r.curve], [c[1] for c in r.curve], right=np.nan)
                          for r in runs if r.curve]
                    with warnings.catch_warnings():  # past every run's end the median is empty
                        warnings.simplefilter("ignore", RuntimeWarning)
                        ax.plot(grid, np.nanmedian(np.array(ys), axis=0), label=label)
                else:
                    c = runs[0].curve
                    ax.step([p[0] for p in c], [p[2] for p in c], where="post", label=label)
            ax.set_yscale("log" if kind == "loss" or task.log_space else "linear")
            if kind == "loss":  # a run that blows up mid-way (and recovers) must not flatten the rest
                start = np.median([r.curve[0][1] for runs in res.runs.values() for r in runs if r.curve])
                ax.set_ylim(top=10 * start)
            ax.set_title(task.name, fontsize=10)
            ax.set_xlabel("train steps taken")
            ax.set_ylabel(ylabel if kind == "loss" else task.knob)
            ax.axvline(task.max_steps, color="grey", lw=0.5, ls=":")
        for ax in axes[0]:
            ax.legend(fontsize=6)
        fig.tight_layout()
        name = f"{kind}.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        names.append(name)
    return names


def machine() -> str:
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs (shared with other jobs while it ran), "
            f"Python {platform.python_version()}, torch {torch.__version__}, {platform.system()} {platform.release()}")


def revision() -> str:
    """The git commit the figures were produced from, marked dirty when the tree had changes."""
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"git {sha}" + (" with uncommitted changes" if dirty else "")
