"""Metric names every adapter normalises toward, and the accessor a bare loop builds from a dict."""

from __future__ import annotations

import pytest
import torch

from hotcb.adapters.metrics import normalize_name, normalized
from hotcb.adapters.torch import metric_accessor


@pytest.mark.parametrize(("name", "expected"), [
    ("val_loss", "val/loss"), ("eval_loss", "val/loss"), ("validation/loss", "val/loss"),
    ("eval_accuracy", "val/accuracy"), ("train_loss", "train/loss"), ("loss", "train/loss"),
    ("grad_norm", "grad/norm"), ("learning_rate", "lr"), ("lr-Adam", "lr"), ("val/loss", "val/loss"),
    ("epoch", "epoch"),
])
def test_normalize_name(name: str, expected: str) -> None:
    assert normalize_name(name) == expected


def test_normalized_keeps_originals_and_adds_score() -> None:
    out = normalized({"eval_loss": torch.tensor(0.5), "eval_accuracy": 0.75})
    assert out == {"eval_loss": 0.5, "val/loss": 0.5, "eval_accuracy": 0.75, "val/accuracy": 0.75, "val/score": 0.75}


def test_metric_accessor_reads_the_live_dict() -> None:
    metrics: dict = {}
    metric = metric_accessor(metrics)
    assert metric("val/loss") is None and metric("val/loss", 1.0) == 1.0
    metrics["val_loss"] = 0.25
    assert metric("val/loss") == 0.25 and metric("val_loss") == 0.25
    assert "val/loss" in metric.names()
