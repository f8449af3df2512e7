"""Step decay."""

from __future__ import annotations

from fastmlp.registry import Hyperparameter
from fastmlp.schedules.schedule import GAMMA, Schedule


class Step(Schedule):
    """``torch.optim.lr_scheduler.StepLR(step_size=lr_step_epochs, gamma=lr_gamma)``, per
    epoch: lr = base * gamma ^ floor(epoch / step_epochs)."""

    name = "step"
    aliases = ("step_lr", "steplr")
    summary = "times lr_gamma every lr_step_epochs epochs"
    hyperparameters = (
        Hyperparameter("step_epochs", 5, "epochs between learning-rate decays", low=1,
                       integer=True, setting="lr_step_epochs"),
        GAMMA,
    )  # fmt: skip

    def rate(self, t: int, span: int) -> float:
        return self.base_lr * self.gamma ** (t // self.step_epochs)
