"""Human-readable output: the end-of-run summary, and the comparison of a multirun's jobs
(a table of final metrics per recipe over seeds, and a PNG of the metric over epochs)."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

JOB_FILE = "hotcb.job.json"  # written by the launcher: completed (with objective) or failed


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def format_counts(tune: dict) -> str:
    """``proposed=13 applied=12 accepted=6 rejected=6 failed=1``, then whichever of refused,
    cancelled, suggested and replayed happened: the tuner's counts as summary and status show them."""
    always = ("proposed", "applied", "accepted", "rejected", "failed")
    sometimes = [k for k in ("refused", "cancelled", "suggested", "replayed") if tune.get(k)]
    return " ".join(f"{k}={tune.get(k, 0)}" for k in (*always, *sometimes))


def format_run_summary(kernel: Any, final_metrics: dict) -> str:
    """Mutations proposed/accepted/rejected, final val loss/score, the knobs' final values."""
    status = kernel.status()
    tune = status["tune"]
    lines = [f"hotcb: run directory {status['run_dir']}"]
    if tune.get("mode") == "off" and "proposed" not in tune:
        lines.append("  tune: off")
    else:
        lines.append(f"  tune: mode={tune['mode']} {format_counts(tune)}"
                     + (f" paused ({tune['pause_reason']})" if tune.get("paused") else ""))
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


# -- comparing the jobs of a Hydra multirun -----------------------------------------------------
@dataclass
class Job:
    """One job of a sweep: its overrides, metric trajectory and tune summary."""

    path: Path
    overrides: list[str]
    status: str  # completed | failed | unknown
    trajectory: list[dict]
    summary: dict

    def final(self, name: str) -> Optional[float]:
        for record in reversed(self.trajectory):
            value = record["metrics"].get(name)
            if value is not None:
                return float(value)
        return None


@dataclass
class GroupRow:
    label: str
    jobs: list[Job]
    metric: tuple[Optional[float], Optional[float]]
    score: tuple[Optional[float], Optional[float]]
    mutations: Optional[float]
    accept_rate: Optional[float]


def load_jobs(sweep_dir: str | os.PathLike) -> list[Job]:
    """Every job directory under a multirun directory (a child holding ``.hydra/overrides.yaml``)."""
    import yaml

    from hotcb.kernel import METRICS_FILE
    from hotcb.ledger import read_json, read_jsonl
    from hotcb.modules.tune.storage import read_summary

    jobs = []
    children = [p for p in Path(sweep_dir).iterdir() if p.is_dir() and not p.is_symlink()]
    for path in sorted(children, key=lambda p: (len(p.name), p.name)):
        overrides_file = path / ".hydra" / "overrides.yaml"
        if not overrides_file.exists():
            continue
        overrides = [str(o) for o in (yaml.safe_load(overrides_file.read_text()) or [])]
        outcome = read_json(path / JOB_FILE) or {}
        jobs.append(Job(path, overrides, outcome.get("status", "unknown"),
                        read_jsonl(path / METRICS_FILE), read_summary(path) or {}))
    return jobs


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _mean_sd(values: list[float]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample sd; sd is None for a single value, which has no spread to measure."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def compare_jobs(jobs: list[Job], metric: str = "val/loss", score: str = "val/score",
                 seed_keys: tuple[str, ...] = ("seed",)) -> list[GroupRow]:
    """Jobs grouped by the overrides that vary between them, seeds aside: one row per recipe
    (or whatever else the sweep varied)."""
    shared = set.intersection(*(set(j.overrides) for j in jobs)) if jobs else set()
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        label = " ".join(o for o in job.overrides if o not in shared and _key(o) not in seed_keys) or "(all jobs)"
        groups.setdefault(label, []).append(job)
    rows = []
    for label, members in groups.items():
        done = [j for j in members if j.status != "failed"]
        finals = [v for v in (j.final(metric) for j in done) if v is not None]
        scores = [v for v in (j.final(score) for j in done) if v is not None]
        applied = [j.summary.get("applied", 0) for j in done]
        accepted = sum(j.summary.get("accepted", 0) for j in done)
        evaluated = accepted + sum(j.summary.get("rejected", 0) for j in done)
        rows.append(GroupRow(label, members, _mean_sd(finals), _mean_sd(scores),
                             statistics.fmean(applied) if applied else None,
                             accepted / evaluated if evaluated else None))
    return rows


def format_comparison(rows: list[GroupRow], metric: str = "val/loss", score: str = "val/score") -> str:
    """A Markdown table: final metric and score as mean ± sd over seeds, mutations, accept rate."""

    def pm(pair: tuple[Optional[float], Optional[float]]) -> str:
        mean, sd = pair
        if mean is None:
            return "-"
        return f"{mean:.4f}" if sd is None else f"{mean:.4f} ± {sd:.4f}"

    header = ["group", "runs", f"final {metric}", f"final {score}", "mutations/run", "accept rate"]
    body = []
    for row in rows:
        failed = sum(j.status == "failed" for j in row.jobs)
        runs = f"{len(row.jobs) - failed}" + (f" (+{failed} failed)" if failed else "")
        body.append([row.label, runs, pm(row.metric), pm(row.score),
                     "-" if row.mutations is None else f"{row.mutations:.1f}",
                     "-" if row.accept_rate is None else f"{row.accept_rate:.0%}"])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def plot_comparison(rows: list[GroupRow], out: str | os.PathLike, metric: str = "val/loss") -> Path:
    """A PNG of ``metric`` over epochs: each group's mean over seeds, its seeds as thin lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, row in enumerate(rows):
        color = f"C{i % 10}"
        by_epoch: dict[int, list[float]] = {}
        for job in row.jobs:
            points = [(r.get("epoch", n), r["metrics"][metric]) for n, r in enumerate(job.trajectory) if metric in r["metrics"]]
            if points:
                ax.plot(*zip(*points), color=color, alpha=0.25, linewidth=0.8)
            for epoch, value in points:
                by_epoch.setdefault(epoch, []).append(value)
        if by_epoch:
            epochs = sorted(by_epoch)
            ax.plot(epochs, [statistics.fmean(by_epoch[e]) for e in epochs], color=color, linewidth=2, label=row.label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per group (mean over seeds; thin lines: single runs)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.grid(alpha=0.3)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
