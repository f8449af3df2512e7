"""The learning-rate schedule base class and registry.

A schedule sets the optimizer's learning rate (a host scalar that the fused update kernel
takes at every step: nothing is recompiled and nothing waits for the device) from the
base learning rate, the step or epoch, and, for reduce-on-plateau, the validation metric.
A concrete schedule is one file in this package declaring a subclass with

* ``name`` (and optional ``aliases``): subclassing registers it in :data:`SCHEDULES`;
* ``hyperparameters``: its :class:`~fastmlp.registry.Hyperparameter` s, each with the run
  setting that sets it (``lr_gamma``, ``lr_min``...), which the constructor checks;
* ``per_step``: whether its curve advances every step (one-cycle) or every epoch;
* ``rate(t, span)``: the learning rate at index ``t`` (the step or epoch since the
  schedule began, 0-based) of ``span`` such indices, from ``self.base_lr``;
* optionally ``observe(value)`` (its state changes with the monitored validation metric,
  ``monitors = True``) and ``_state`` / ``_load_state`` for that state.

Linear warm-up is part of every schedule (``warmup_epochs``, ``warmup_start_factor``):
over the first W = warmup_epochs x steps_per_epoch steps the rate rises per step as
``torch.optim.lr_scheduler.LinearLR(start_factor, total_iters=W)``; the schedule proper
then starts at index 0, spanning the remaining epochs, as ``SequentialLR`` would run it.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from fastmlp.registry import Hyperparameter, Registry, checked_or_per_model, entry_repr, values_of

SCHEDULES: Registry[type[Schedule]] = Registry("learning-rate schedule")

WARMUP_EPOCHS = Hyperparameter("warmup_epochs", 0, "epochs of linear learning-rate warm-up",
                               low=0, integer=True)  # fmt: skip
WARMUP_START_FACTOR = Hyperparameter(
    "warmup_start_factor", 0.1, "learning rate at the start of the warm-up, times the base",
    low=0.0, high=1.0, low_open=True,
)  # fmt: skip
GAMMA = Hyperparameter("gamma", 0.1, "multiplicative learning-rate decay", low=0.0, high=1.0,
                       low_open=True, setting="lr_gamma")  # fmt: skip
LR_MIN = Hyperparameter("lr_min", 0.0, "smallest learning rate", low=0.0)


class Schedule:
    """Base class of the learning-rate schedules; see the module docstring."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    hyperparameters: ClassVar[tuple[Hyperparameter, ...]] = ()
    per_step: ClassVar[bool] = False
    monitors: ClassVar[bool] = False
    has_warmup: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            SCHEDULES.register(cls.name, cls, cls.aliases)

    @classmethod
    def all_hyperparameters(cls) -> tuple[Hyperparameter, ...]:
        """This schedule's hyperparameters, the warm-up's included (when it has one)."""
        warmup = (WARMUP_EPOCHS, WARMUP_START_FACTOR) if cls.has_warmup else ()
        return (*cls.hyperparameters, *warmup)

    def __init__(self, **values: Any) -> None:
        # with per-model values: the K schedules of a stack's models (see per_model)
        self._members: list[Schedule] | None
        self.n_models, self._members, checked = checked_or_per_model(
            "schedule", self.name, self.all_hyperparameters(), values, type(self)
        )
        for name, value in checked.items():
            setattr(self, name, value)
        if not self.has_warmup:
            self.warmup_epochs = 0
        self.base_lr: float | None = None
        self.epochs = self.steps_per_epoch = 0

    def per_model(self) -> list[Schedule] | None:
        """The K schedules, one per model of a stack, of a schedule made with per-model
        values (a sequence of K for some hyperparameter: ``create("step", gamma=[0.1,
        0.5])``), fresh copies; None for a schedule of one model."""
        return None if self._members is None else copy.deepcopy(self._members)

    def hyperparameter_values(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this schedule (a list of one value per model
        where they differ across a stack)."""
        return values_of(self, self.all_hyperparameters())

    def __repr__(self) -> str:
        return entry_repr(self)

    # -------------------------------------------------------------- subclasses

    def rate(self, t: int, span: int) -> float:
        """The learning rate at index ``t`` of ``span`` (steps or epochs, see ``per_step``)."""
        raise NotImplementedError

    def observe(self, value: float) -> None:
        """The monitored validation metric after an epoch (schedules that monitor it)."""

    def set_mode(self, mode: str) -> None:
        """Which way the monitored metric is better, "min" or "max" (schedules that
        monitor it)."""

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_state` returned."""

    # -------------------------------------------------------------- the driver

    def start(self, base_lr: float, epochs: int, steps_per_epoch: int) -> None:
        """Fit the schedule to a run of ``epochs`` epochs of ``steps_per_epoch`` steps from
        ``base_lr`` (kept from an earlier start or a loaded state: a resumed run goes on)."""
        if self._members is not None:
            raise ValueError(
                f"a {self.name} schedule with per-model values (one per model of a stack of "
                f"{self.n_models}) trains a stack: fastmlp.train(MLP(n_models="
                f"{self.n_models}), ...), not one model"
            )
        if self.base_lr is None:
            self.base_lr = float(base_lr)
        self.check_epochs(epochs)
        self.epochs, self.steps_per_epoch = int(epochs), int(steps_per_epoch)
        self._began()

    def check_epochs(self, epochs: int) -> None:
        """Raise a ValueError unless the warm-up leaves epochs for the schedule proper."""
        if self.warmup_epochs and self.warmup_epochs >= epochs:
            raise ValueError(
                f"warmup_epochs {self.warmup_epochs} leaves no epoch of the {epochs} for the "
                f"{self.name} schedule: use fewer warm-up epochs or more epochs"
            )

    def _began(self) -> None:
        """Called by :meth:`start` once ``base_lr``, ``epochs`` and ``steps_per_epoch`` are set."""

    def in_warmup(self, epoch: int) -> bool:
        """Whether 0-based ``epoch`` is a warm-up epoch."""
        return epoch < self.warmup_epochs

    def changes_every_step(self, epoch: int) -> bool:
        """Whether the rate changes within 0-based ``epoch`` (else it is set once)."""
        return self.per_step or self.in_warmup(epoch)

    def learning_rate(self, step: int) -> float:
        """The learning rate of 0-based global ``step`` (steps of earlier epochs included)."""
        assert self.base_lr is not None, "start() the schedule first"
        warmup_steps = self.warmup_epochs * self.steps_per_epoch
        if step < warmup_steps:
            # LinearLR: base * (start + (1 - start) * step / W)
            start = self.warmup_start_factor
            return self.base_lr * (start + (1.0 - start) * step / warmup_steps)
        if self.per_step:
            return self.rate(step - warmup_steps, (self.epochs - self.warmup_epochs)
                             * self.steps_per_epoch)  # fmt: skip
        epoch = step // self.steps_per_epoch
        return self.rate(epoch - self.warmup_epochs, self.epochs - self.warmup_epochs)

    def epoch_ended(self, epoch: int, value: float | None) -> None:
        """After 0-based ``epoch``, with the monitored metric (None: no validation)."""
        if self.monitors and not self.in_warmup(epoch) and value is not None:
            self.observe(value)

    # ------------------------------------------------------------- persistence

    def state_dict(self) -> dict[str, Any]:
        """Name, hyperparameters, base rate and any state (JSON-serialisable)."""
        return {
            "name": self.name,
            "hyperparameters": self.hyperparameter_values(),
            "base_lr": self.base_lr,
            "state": self._state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a schedule of this type."""
        if state.get("name") != self.name:
            raise ValueError(
                f"state of schedule {state.get('name')!r} cannot load into {self.name!r}"
            )
        base_lr = state.get("base_lr")
        if base_lr is not None and (
            isinstance(base_lr, bool) or not isinstance(base_lr, (int, float))
        ):
            raise ValueError(f"base_lr must be a number, got {base_lr!r}")
        inner = state.get("state") or {}
        if not isinstance(inner, dict):
            raise ValueError(f"the schedule's state must be a mapping, got {type(inner).__name__}")
        self.base_lr = None if base_lr is None else float(base_lr)
        self._load_state(inner)
