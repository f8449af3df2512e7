"""The monitored validation metric: the best epoch so far, and early stopping.

Keras' ``EarlyStopping`` semantics: an epoch improves on the best when its metric is better
by more than ``min_delta`` (lower for ``val_loss``, higher for ``val_accuracy``); training
stops once ``patience`` epochs in a row have not improved (patience 0: never). The state
is a function of the metric sequence alone, so a resumed run rebuilds it from its history.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from fastmlp.registry import Registry

# The metrics a run can monitor, and which way is better ("min" or "max").
MONITOR_METRICS: Registry[str] = Registry("monitored metric")
MONITOR_METRICS.register("val_accuracy", "max", ("val_acc", "validation_accuracy"))
MONITOR_METRICS.register("val_loss", "min", ("validation_loss",))


def check_monitor(monitor: str) -> str:
    """``monitor`` if it names a monitored metric, else a ValueError listing them."""
    if monitor not in MONITOR_METRICS.entries:
        choices = ", ".join(MONITOR_METRICS.names())
        raise ValueError(f"monitor must be one of {choices}, got {monitor!r}")
    return monitor


class Monitor:
    """Tracks the best epoch of ``monitor`` and counts the epochs since it improved."""

    def __init__(self, monitor: str = "val_accuracy", patience: int = 0, min_delta: float = 0.0):
        self.monitor = check_monitor(monitor)
        if int(patience) != patience or patience < 0:
            raise ValueError(f"patience must be a whole number >= 0, got {patience}")
        if not (min_delta >= 0 and math.isfinite(min_delta)):
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta}")
        self.mode = MONITOR_METRICS.entries[monitor]
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.epochs_without_improvement = 0

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best by more than ``min_delta``."""
        if self.best is None:
            return math.isfinite(value)
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, epoch: int, metrics: Mapping[str, Any]) -> bool:
        """Record an epoch's metrics; True when it is the new best epoch."""
        value = metrics.get(self.monitor)
        if value is None:
            return False
        if self.improves(float(value)):
            self.best, self.best_epoch = float(value), int(epoch)
            self.epochs_without_improvement = 0
            return True
        self.epochs_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        """Whether ``patience`` epochs in a row have not improved (never with patience 0)."""
        return 0 < self.patience <= self.epochs_without_improvement

    def stop_reason(self) -> str:
        """What early stopping says when it ends a run."""
        return (
            f"early stopping: {self.monitor} did not improve by more than {self.min_delta:g} "
            f"for {self.patience} epochs (best: epoch {self.best_epoch}, {self.best:.4f})"
        )

    def replay(self, rows: Iterable[Mapping[str, Any]]) -> Monitor:
        """Feed the per-epoch rows of a history (dicts with ``epoch`` and the metric)."""
        for row in rows:
            self.update(int(row["epoch"]), row)
        return self
