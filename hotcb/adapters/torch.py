"""Bare PyTorch loops: the seed's ``kernel.apply`` calls need nothing else; this module adds
the metric accessor over a plain dict that the loop keeps up to date.

Resume with ``kernel.state_dict()`` saved beside the model and optimizer, and
``kernel.load_state_dict(...)`` before the loop restarts. Under ``torch.distributed`` the
kernel joins the initialised world by itself at its first ``apply``; call ``apply`` from
every rank at the same points.
"""

from __future__ import annotations

from hotcb.adapters.metrics import MetricAccessor, metric_accessor

__all__ = ["MetricAccessor", "TorchLoop", "metric_accessor"]


class TorchLoop:
    """What ``adapter=torch`` gives a bare loop: a metrics dict to keep current, and
    ``apply`` that hands the kernel an env with the contract keys (metric, kernel, max_steps).

    ``loop.metrics["val_loss"] = 0.4; loop.apply(step=s, epoch=e, optimizer=opt, events=["val_epoch_end"])``
    """

    def __init__(self, kernel, max_steps: int | None = None):
        self.kernel = kernel
        self.max_steps = max_steps
        self.metrics: dict = {}

    @property
    def final_metrics(self) -> dict:
        return metric_accessor(self.metrics).snapshot()

    def env(self, **values) -> dict:
        return {"kernel": self.kernel, "max_steps": self.max_steps, "metric": metric_accessor(self.metrics), **values}

    def apply(self, events=("train_batch_end",), **values) -> None:
        self.kernel.apply(self.env(**values), events=list(events))
