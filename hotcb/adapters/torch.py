"""Bare PyTorch loops: the seed's ``kernel.apply`` calls need nothing else; this module adds
the metric accessor over a plain dict that the loop keeps up to date."""

from __future__ import annotations

from hotcb.adapters.metrics import MetricAccessor, metric_accessor

__all__ = ["MetricAccessor", "metric_accessor"]
