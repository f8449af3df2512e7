"""Cosine annealing."""

from __future__ import annotations

import math

from fastmlp.schedules.schedule import LR_MIN, Schedule


class Cosine(Schedule):
    """``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=epochs, eta_min=lr_min)``, per
    epoch, over the run's epochs (after the warm-up):
    lr = lr_min + (base - lr_min) * (1 + cos(pi * epoch / epochs)) / 2."""

    name = "cosine"
    aliases = ("cosine_annealing", "cosine_annealing_lr")
    summary = "half a cosine from the base rate towards lr_min"
    hyperparameters = (LR_MIN,)

    def rate(self, t: int, span: int) -> float:
        return self.lr_min + (self.base_lr - self.lr_min) * (1.0 + math.cos(math.pi * t / span)) / 2
