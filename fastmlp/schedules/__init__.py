"""Learning-rate schedules: a registry like the optimizers' (one file per schedule).

``create("cosine", lr_min=1e-5, warmup_epochs=1)`` makes one; ``fastmlp.train(...,
schedule=...)`` and ``fastmlp train --lr_schedule NAME`` use it. See
:mod:`fastmlp.schedules.schedule` for what a schedule declares.
"""

from __future__ import annotations

from typing import Any

from fastmlp.registry import import_entry_modules, own_values
from fastmlp.schedules.schedule import SCHEDULES, Schedule

# The order of the command line's choices, then every other file.
_FIRST = ("constant", "step", "exponential", "cosine", "one_cycle", "plateau")
import_entry_modules(__name__, __path__, _FIRST)

from fastmlp.schedules.constant import Constant  # noqa: E402
from fastmlp.schedules.cosine import Cosine  # noqa: E402
from fastmlp.schedules.exponential import Exponential  # noqa: E402
from fastmlp.schedules.one_cycle import OneCycle  # noqa: E402
from fastmlp.schedules.plateau import ReduceOnPlateau  # noqa: E402
from fastmlp.schedules.step import Step  # noqa: E402

__all__ = [
    "SCHEDULES",
    "Constant",
    "Cosine",
    "Exponential",
    "OneCycle",
    "ReduceOnPlateau",
    "Schedule",
    "Step",
    "create",
    "names",
]


def names() -> list[str]:
    """The canonical names of the registered schedules."""
    return SCHEDULES.names()


def all_hyperparameter_names() -> set[str]:
    """Hyperparameter names of every registered schedule."""
    return {p.name for cls in SCHEDULES.entries.values() for p in cls.all_hyperparameters()}


def create(name: str | Schedule, **values: Any) -> Schedule:
    """A schedule by name (any case or alias), e.g. ``create("step", step_epochs=3)``, or
    ``name`` itself when it is a Schedule already.

    ``None`` means "the schedule's default"; a hyperparameter that another registered
    schedule has but this one lacks is ignored (the command line passes the same set to
    every schedule). Any other unknown keyword is an error.
    """
    if isinstance(name, Schedule):
        return name
    cls = SCHEDULES.get(name)
    own = {parameter.name for parameter in cls.all_hyperparameters()}
    return cls(**own_values("schedule", cls.name, own, all_hyperparameter_names(), values))
