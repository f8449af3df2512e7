"""A sweep trial's per-epoch reporter that stops the sweep as Ctrl-C does, for tests."""

from __future__ import annotations

from typing import Any


def interrupting_at(epoch: int, reporter: Any) -> Any:
    """A stand-in for ``metric_reporter`` (``reporter``) that raises KeyboardInterrupt at
    ``epoch``, as Ctrl-C there would, and reports every epoch before it."""

    def make(trial: Any, metric: str) -> Any:
        def report(metrics: Any) -> None:
            if metrics.epoch == epoch:
                raise KeyboardInterrupt
            reporter(trial, metric)(metrics)

        return report

    return make
