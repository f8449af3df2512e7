"""Exponential decay."""

from __future__ import annotations

from dataclasses import replace

from fastmlp.schedules.schedule import GAMMA, Schedule


class Exponential(Schedule):
    """``torch.optim.lr_scheduler.ExponentialLR(gamma=lr_gamma)``, per epoch:
    lr = base * gamma ^ epoch."""

    name = "exponential"
    aliases = ("exponential_lr", "exp")
    summary = "times lr_gamma every epoch"
    hyperparameters = (replace(GAMMA, default=0.9),)

    def rate(self, t: int, span: int) -> float:
        return self.base_lr * self.gamma**t
