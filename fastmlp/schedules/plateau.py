"""Reduce the learning rate when the monitored validation metric stops improving."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from fastmlp.registry import Hyperparameter
from fastmlp.schedules.schedule import GAMMA, LR_MIN, Schedule

# torch's defaults: a relative improvement of 1e-4 counts; changes below 1e-8 are skipped.
THRESHOLD = 1e-4
MIN_CHANGE = 1e-8


class ReduceOnPlateau(Schedule):
    """``torch.optim.lr_scheduler.ReduceLROnPlateau(mode, factor=lr_gamma,
    patience=lr_patience, threshold=1e-4, threshold_mode="rel", cooldown=0,
    min_lr=lr_min)``, after each epoch, on the monitored metric (``monitor``: mode "min"
    for val_loss, "max" for val_accuracy; ``mode`` is set by the training loop)."""

    name = "reduce_on_plateau"
    aliases = ("plateau", "reduce_lr_on_plateau", "reducelronplateau")
    summary = "times lr_gamma after lr_patience epochs without improvement"
    monitors = True
    hyperparameters = (
        Hyperparameter("patience", 10, "epochs without improvement before reducing the rate",
                       low=0, integer=True, setting="lr_patience"),
        GAMMA,
        replace(LR_MIN, help="smallest learning rate"),
    )  # fmt: skip

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self.mode = "max"
        self.current: float | None = None
        self.best = -math.inf
        self.bad_epochs = 0

    def set_mode(self, mode: str) -> None:
        """ "min" (a loss) or "max" (an accuracy): which way is better."""
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be min or max, got {mode!r}")
        if self.current is None:
            self.best = math.inf if mode == "min" else -math.inf
        self.mode = mode

    def _began(self) -> None:
        if self.current is None:
            self.current = self.base_lr

    def rate(self, t: int, span: int) -> float:
        return self.current

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best * (1.0 - THRESHOLD)
        return value > self.best * (1.0 + THRESHOLD)

    def observe(self, value: float) -> None:
        if self._improved(value):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            reduced = max(self.current * self.gamma, self.lr_min)
            if self.current - reduced > MIN_CHANGE:
                self.current = reduced
            self.bad_epochs = 0

    def _state(self) -> dict[str, Any]:
        best = self.best if math.isfinite(self.best) else None  # JSON has no infinity
        return {"mode": self.mode, "current": self.current, "best": best,
                "bad_epochs": self.bad_epochs}  # fmt: skip

    def _load_state(self, state: dict[str, Any]) -> None:
        self.mode = state.get("mode", self.mode)
        current = state.get("current")
        self.current = None if current is None else float(current)
        best = state.get("best")
        self.best = (math.inf if self.mode == "min" else -math.inf) if best is None else float(best)
        self.bad_epochs = int(state.get("bad_epochs", 0))
