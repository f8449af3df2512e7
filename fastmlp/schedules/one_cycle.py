"""The one-cycle policy (Smith and Topin, 2017)."""

from __future__ import annotations

import math

from fastmlp.registry import Hyperparameter
from fastmlp.schedules.schedule import Schedule


def _cosine_anneal(start: float, end: float, fraction: float) -> float:
    # start -> end along half a cosine as fraction goes 0 -> 1
    return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1)


class OneCycle(Schedule):
    """``torch.optim.lr_scheduler.OneCycleLR(max_lr=base, total_steps=epochs x steps,
    pct_start, div_factor, final_div_factor, anneal_strategy="cos",
    cycle_momentum=False)``, per step: from base / div_factor up to the base rate over the
    first pct_start of the steps, then down to base / (div_factor x final_div_factor).
    The momentum is not cycled. It has its own warm-up, so warmup_epochs does not apply."""

    name = "one_cycle"
    aliases = ("onecycle", "one_cycle_lr", "onecyclelr")
    summary = "up to the base rate and down again, per step"
    per_step = True
    has_warmup = False
    hyperparameters = (
        Hyperparameter("pct_start", 0.3, "fraction of the one-cycle steps spent rising",
                       low=0.0, high=1.0, low_open=True, high_open=True,
                       setting="one_cycle_pct_start"),
        Hyperparameter("div_factor", 25.0, "one-cycle initial rate = base / div_factor",
                       low=0.0, low_open=True, setting="one_cycle_div_factor"),
        Hyperparameter("final_div_factor", 1e4, "one-cycle final rate = initial / this",
                       low=0.0, low_open=True, setting="one_cycle_final_div_factor"),
    )  # fmt: skip

    def rate(self, t: int, span: int) -> float:
        initial = self.base_lr / self.div_factor
        final = initial / self.final_div_factor
        rise_end = float(self.pct_start * span) - 1
        phases = ((rise_end, initial, self.base_lr), (span - 1.0, self.base_lr, final))
        start_step = 0.0
        for index, (end_step, start_rate, end_rate) in enumerate(phases):
            if t <= end_step or index == len(phases) - 1:
                fraction = (t - start_step) / (end_step - start_step)
                return _cosine_anneal(start_rate, end_rate, fraction)
            start_step = end_step
        raise AssertionError("unreachable")

    def _began(self) -> None:
        span = self.epochs * self.steps_per_epoch
        if float(self.pct_start * span) - 1 <= 0 or span - 1 <= float(self.pct_start * span) - 1:
            raise ValueError(
                f"one_cycle needs more steps than {span} with pct_start {self.pct_start:g}: "
                "train for more steps (epochs or a smaller batch size) or change pct_start"
            )
