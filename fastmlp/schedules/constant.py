"""The constant learning rate (the default)."""

from __future__ import annotations

from fastmlp.schedules.schedule import Schedule


class Constant(Schedule):
    """The base learning rate throughout (after the warm-up, if any)."""

    name = "constant"
    aliases = ("none", "fixed")
    summary = "the base rate throughout"

    def rate(self, t: int, span: int) -> float:
        return self.base_lr
