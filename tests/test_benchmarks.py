"""Smoke test of the benchmark harness: every task, every method, a few steps, one seed.

Figures are not asserted (benchmarks report them); this only keeps the harness from rotting:
runs finish, hottune really decides, the other branch is trained, the report renders.
"""

from __future__ import annotations

import argparse
import math

import pytest

pytest.importorskip("optuna")
pytest.importorskip("sklearn")

from examples.benchmarks import report
from examples.benchmarks.__main__ import render
from examples.benchmarks.counterfactual import summarize
from examples.benchmarks.run import METHODS, run
from examples.benchmarks.suite import rows, run_task
from examples.benchmarks.tasks import nqm_expected_loss, tasks


@pytest.fixture(scope="module")
def short_tasks():
    return {t.name: t for t in tasks(scale=0.1)}  # 50-60 steps, a decision every 2-3 steps


def test_hottune_run_decides_and_measures_the_other_branch(short_tasks):
    task = short_tasks["T1-high"]
    result = run(task, 0, METHODS["hottune-seed"])
    assert result.steps == task.max_steps  # params rollback: no rewound steps
    assert result.accepted + result.rejected > 0
    quality = summarize(result.decisions)
    assert quality["decisions"] == len(result.decisions) > 0
    assert all(math.isfinite(d.without) for d in result.decisions)


def test_state_rollback_run_charges_rewound_steps(short_tasks):
    task = short_tasks["T4"]
    result = run(task, 0, METHODS["hottune"])
    assert result.curve[-1][0] == result.steps  # the curve is indexed by steps taken
    assert 0 <= result.steps - task.max_steps <= task.eval_every * result.rejected


def test_every_task_and_method_renders(short_tasks, tmp_path):
    results = [run_task(t, [0], trials=2, progress=lambda _: None) for t in short_tasks.values()]
    for res in results:
        table = {r.method: r for r in rows(res)}
        assert len(table) == (6 if res.task.oracle else 5)
        assert all(math.isfinite(r.loss[0]) for r in table.values())
    costs = {"apply": {"train_step_us": 1.0, "apply_off_us": 1.0, "apply_active_us": 2.0, "decision_ms": 3.0,
                       "decision_first_ms": 4.0, "decisions_timed": 1},
             "process": {"python_ms": 1.0, "import_hotcb_ms": 2.0, "import_kernel_ms": 3.0},
             "snapshot": [{"params": 10, "param_mb": 0.1, "snapshot_mb": 0.3, "capture_ms": 0.1}]}
    names = report.plots(results, tmp_path / "benchmarks")
    baselines = {"decisions": 3, "oracle_helpful": 1,
                 "pre": {"agreement": 0.5, "accept_rate": 1.0, "accepts_harmful": 1.0, "accepts_helpful": 1.0}}
    text = render(results, costs, names, "python -m examples.benchmarks --quick",
                  argparse.Namespace(quick=True, trials=2), [0], 1.0, baselines)
    assert "### T4" in text and "## Where hottune stands" in text and "| pre | 0.50 |" in text
    assert all((tmp_path / "benchmarks" / n).stat().st_size > 0 for n in names)


def test_nqm_expected_loss_matches_a_closed_form():
    import torch

    # one step of lr 1 on h_1 = 1 zeroes that coordinate's mean and adds variance h_1 * 1
    lrs = torch.tensor([1.0], dtype=torch.float64)
    h = 1.0 / torch.arange(1, 101, dtype=torch.float64)
    expected = 0.5 * (h * ((1 - h) ** 2 + h)).sum()
    assert float(nqm_expected_loss(lrs)) == pytest.approx(float(expected))
