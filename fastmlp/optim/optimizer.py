"""The optimizer base class and registry: hyperparameters, state buffers, the update formula.

A concrete optimizer is one file in this package declaring a subclass with

* ``name`` (and optional ``aliases``): subclassing registers it in :data:`OPTIMIZERS`;
* ``hyperparameters``: its :class:`~fastmlp.registry.Hyperparameter` s (default, range, and
  the run setting and command-line flags that set it), which the constructor checks;
* ``buffers``: the names of its per-parameter state buffers (zeros at the start);
* ``update``: the per-element update as a formula (see :mod:`fastmlp.backends.formulas`),
  ``update(p, g, *buffers, *, scalars...)``, returning the updated ``p`` and buffers; every
  backend compiles it into one fused in-place kernel;
* ``scalars(values)``: the formula's per-step scalars, computed in double precision on the
  host from the hyperparameter values and ``self.steps`` (the step count t, this step
  included); optionally ``advance()`` for scalar state kept across steps (NAdam's product);
* ``decays``: the factor each buffer is multiplied by per step when its gradient is zero,
  which schedules the subnormal flush below.

Nothing else is needed: the command line, ``--config`` files, sweeps and the checkpoint
format derive what they need from these declarations.

Parameter groups. ``param_groups`` (for example weights and biases, see
``MLP.param_groups``) give ranges of the flat buffer their own hyperparameter values, such
as no decoupled weight decay on biases; each group is one kernel launch.

Stacks of models. A hyperparameter may also be a sequence of K values, one per model of a
stack (``MLP(n_models=K)``), whose parameter groups say so (``ParamGroup.stack``: K models,
``width`` columns each). The update stays one kernel per group: the group's range is viewed
as (rows, K * width), where model k owns columns [k * width, (k + 1) * width), and the
formula runs with each model's scalars over its columns
(``Backend.run_formula_per_model_``: on the GPU one kernel per group with each scalar a
row vector, on the CPU one compiled loop over every group). Each model's scalars are
computed by a member optimizer of its own values (so scalar state such as NAdam's product
is kept per model); every model computes exactly what an optimizer of its values alone
would.

Subnormal flush. A state buffer whose gradient entries stay zero (a weight attached to an
always-black border pixel, or to a dead ReLU unit) decays geometrically towards zero and
spends its last steps as a subnormal float, which x86 CPUs handle about 100x slower than
normal ones. Every ``period`` steps the optimizer zeroes state entries below
``threshold = tiny * FLUSH_MARGIN`` (tiny: the smallest normal float of the dtype,
FLUSH_MARGIN = 2^26, so about 7.9e-31 for float32), with ``period`` chosen so that an entry
above the threshold after one flush is still normal at the next:
``threshold * decay^period >= tiny``. That moves a state entry by less than the threshold
and an Adam parameter by less than lr * threshold / eps (about 8e-26 at lr=1e-3,
eps=1e-8): far below float32 resolution and invisible in any metric.

The parameters themselves get the same flush every ``PARAMETER_FLUSH_PERIOD`` steps: under a
strong L2 weight decay whole layers decay geometrically (weight decay 0.5 with NAdam, the
classic sweep's largest value: a quarter of the weights subnormal after four epochs, each
epoch 14x slower). A weight below the threshold moves any pre-activation by less than
fan_in * threshold (about 1e-28), which no float32 sum of normal terms can resolve.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fastmlp.backends import Backend, backend_of
from fastmlp.backends.formulas import Formula, formula
from fastmlp.registry import (
    Hyperparameter,
    Registry,
    checked_or_per_model,
    entry_repr,
    per_model_values,
    values_of,
)

FLUSH_MARGIN = 2.0**26
# Steps between flushes of the parameters: a weight decaying by at most 25% per step stays
# normal from the threshold to the next flush (tiny * FLUSH_MARGIN * 0.75^64 >= tiny).
PARAMETER_FLUSH_PERIOD = 64

OPTIMIZERS: Registry[type[Optimizer]] = Registry("optimizer")

# Hyperparameters several optimizers share (an optimizer may give one another default
# with dataclasses.replace); each says which run setting and flags set it.
LEARNING_RATE = Hyperparameter(
    "lr", 1e-3, "learning rate", low=0.0, setting="learning_rate", flags=("-lr",)
)
MOMENTUM = Hyperparameter("momentum", 0.9, "momentum", low=0.0, high=1.0, high_open=True,
                          flags=("-m",))  # fmt: skip
BETA = Hyperparameter("beta", 0.99, "decay of the squared-gradient average", low=0.0, high=1.0,
                      high_open=True, flags=("-beta",))  # fmt: skip
BETA1 = Hyperparameter("beta1", 0.9, "decay of the gradient average", low=0.0, high=1.0,
                       high_open=True, flags=("-beta1",))  # fmt: skip
BETA2 = Hyperparameter("beta2", 0.999, "decay of the squared-gradient average", low=0.0,
                       high=1.0, high_open=True, flags=("-beta2",))  # fmt: skip
EPSILON = Hyperparameter("eps", 1e-8, "added to the denominator", low=0.0, low_open=True,
                         setting="epsilon", flags=("-eps",))  # fmt: skip


@dataclass(frozen=True)
class ParamGroup:
    """The range ``[start, stop)`` of the flat parameter buffer, with hyperparameter values
    that differ from the optimizer's (e.g. ``{"weight_decay": 0.0}`` for biases)."""

    start: int
    stop: int
    options: dict[str, float] = field(default_factory=dict)
    name: str = ""
    # (K, width): the range holds a stack of K models, viewed as (rows, K * width) with
    # model k's entries in columns [k * width, (k + 1) * width); None: one model
    stack: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        stack = None if self.stack is None else list(self.stack)
        return {"start": self.start, "stop": self.stop, "options": self.options,
                "name": self.name, "stack": stack}  # fmt: skip


@functools.lru_cache(maxsize=256)
def flush_period(decay: float) -> int | None:
    """Steps between subnormal flushes for a buffer decaying by ``decay`` (None: never)."""
    if not 0 < decay < 1:
        return None
    return max(1, int(math.log(FLUSH_MARGIN) / -math.log(decay)))


@functools.lru_cache(maxsize=16)
def flush_threshold(dtype: Any) -> float:
    """State entries below this magnitude are set to zero by the flush."""
    return float(np.finfo(dtype).tiny) * FLUSH_MARGIN


class Optimizer:
    """Base class of all optimizers; see the module docstring for what subclasses declare."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    hyperparameters: ClassVar[tuple[Hyperparameter, ...]] = (LEARNING_RATE,)
    buffers: ClassVar[tuple[str, ...]] = ()
    update: ClassVar[Callable[..., Any]]
    formula: ClassVar[Formula]
    # The weight decay of this optimizer is decoupled from the gradient (AdamW): fastmlp
    # train gives it -w_d and no L2 term, with biases in a group without decay.
    decoupled_weight_decay: ClassVar[bool] = False
    summary: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "update" in cls.__dict__:
            function = cls.__dict__["update"]
            cls.formula = formula(getattr(function, "__func__", function))
            expected = ("p", "g", *cls.buffers)
            if cls.formula.arrays != expected or set(cls.formula.updates) != {"p", *cls.buffers}:
                raise TypeError(
                    f"{cls.__name__}.update must take arrays {expected} and return them updated"
                )
        if "name" in cls.__dict__:
            OPTIMIZERS.register(cls.name, cls, cls.aliases)

    def __init__(self, param_groups: Sequence[ParamGroup] = (), **values: Any) -> None:
        # one optimizer of each model's values (None: one model), for its per-step scalars
        self._members: list[Optimizer] | None
        self.n_models, self._members, checked = checked_or_per_model(
            "optimizer", self.name, self.hyperparameters, values, type(self)
        )
        for name, value in checked.items():
            setattr(self, name, value)
        self.param_groups = [self._checked_group(group) for group in param_groups]
        self.steps = 0
        self.state: dict[str, Any] = {}
        self._ready: tuple[Any, ...] = ()  # the params and state _prepare_state last checked
        # (arrays, groups, launches) that _launches last made
        self._launch_views: tuple[tuple[Any, ...], list[ParamGroup], list[Any]] | None = None
        # a stack's (groups, layout) and (values, option sets, result) that
        # _per_model_layout and _per_model_values last made
        self._per_model_groups: tuple[list[ParamGroup], Any] | None = None
        self._per_model_cache: tuple[dict[str, Any], Any, Any] | None = None

    def _checked_group(self, group: ParamGroup) -> ParamGroup:
        declared = {parameter.name: parameter for parameter in self.hyperparameters}
        options = {}
        for key, value in group.options.items():
            if key in declared:  # options of hyperparameters this optimizer lacks do nothing
                options[key] = declared[key].check(value)
        stack = None if group.stack is None else (int(group.stack[0]), int(group.stack[1]))
        if self._members is not None and (stack is None or stack[0] != self.n_models):
            raise ValueError(
                f"per-model hyperparameters for {self.n_models} models need parameter groups "
                f"of a stack of {self.n_models} (MLP(n_models={self.n_models}).param_groups()), "
                f"got group {group.name or group.start!r} of {1 if stack is None else stack[0]}"
            )
        return ParamGroup(group.start, group.stop, options, group.name, stack)

    def hyperparameter_values(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this optimizer (JSON-serialisable): a float
        per hyperparameter, or a list of one per model where they differ across a stack."""
        return values_of(self, self.hyperparameters)

    def __repr__(self) -> str:
        return entry_repr(self)

    # ------------------------------------------------------------- subclasses

    def scalars(self, values: dict[str, float]) -> dict[str, float]:
        """The update formula's scalars for this step, from hyperparameter ``values``."""
        raise NotImplementedError

    def advance(self) -> None:
        """Update scalar state kept across steps, once per step before the kernels run."""

    def decays(self, values: dict[str, float]) -> dict[str, float]:
        """Per-step decay factor of each state buffer (for the subnormal flush)."""
        return {}

    # ---------------------------------------------------------------- the step

    def step(self, params: Any, grads: Any, backend: Backend | None = None) -> None:
        """Update the flat ``params`` in place from ``grads`` (same shape, dtype and device):
        one fused kernel launch per parameter group.

        ``backend``: the one that runs the kernels (``fastmlp.train`` passes the model's);
        by default the one that owns the arrays (for NumPy arrays: the ``"cpu"`` backend,
        which is Numba's when Numba is installed).
        """
        if params.shape != grads.shape or params.ndim != 1:
            raise ValueError(
                "params and grads must be flat arrays of one shape, "
                f"got {params.shape} and {grads.shape}"
            )
        if backend is None:
            backend = backend_of(params)
        self._prepare_state(backend, params)
        self.steps += 1
        buffers = [self.state[key] for key in self.buffers]
        if self._members is not None:
            self._step_per_model(backend, params, grads, buffers)
            return
        self.advance()
        base = self.hyperparameter_values()
        for arrays, options in self._launches(params, grads, buffers):
            values = {**base, **options} if options else base
            backend.run_formula_(self.formula, arrays, self.scalars(values))
            self._flush_subnormals(backend, params.dtype, values, arrays[2:])
        if self.steps % PARAMETER_FLUSH_PERIOD == 0:
            backend.flush_subnormals_(params, flush_threshold(params.dtype))

    def _step_per_model(
        self, backend: Backend, params: Any, grads: Any, buffers: list[Any]
    ) -> None:
        """One step of a stack with per-model hyperparameters: each group viewed as (rows,
        K * width) and updated by ``backend.run_formula_per_model_`` with each model's
        scalars (computed once per step for each distinct set of group options)."""
        assert self._members is not None
        groups, option_sets, which = self._per_model_layout(params.shape[0])
        members_values, fastest = self._per_model_values(option_sets)
        for member in self._members:
            member.steps = self.steps
            member.advance()
        computed = [
            [member.scalars(values) for member, values in zip(self._members, per_options)]
            for per_options in members_values
        ]
        scalars = [computed[index] for index in which]
        backend.run_formula_per_model_(self.formula, [params, grads, *buffers], groups, scalars)
        # each buffer flushed whole, on the schedule of its fastest-decaying model and group
        self._flush_subnormals(backend, params.dtype, {}, buffers, fastest)
        if self.steps % PARAMETER_FLUSH_PERIOD == 0:
            backend.flush_subnormals_(params, flush_threshold(params.dtype))

    def _per_model_layout(
        self, size: int
    ) -> tuple[list[tuple[int, int, int]], list[dict[str, float]], list[int]]:
        """(groups, option sets, which) of a stack's step: each group as (start, stop,
        width), the distinct group options, and the index of each group's options among
        them. Made once per set of groups."""
        cached = self._per_model_groups
        if cached is not None and cached[0] == self.param_groups:
            return cached[1]
        if not self.param_groups:  # given groups are checked to be a stack's (_checked_group)
            raise ValueError(
                f"per-model hyperparameters for {self.n_models} models need the parameter "
                f"groups of a stack of {self.n_models}: pass MLP(n_models={self.n_models})"
                ".param_groups() to the optimizer"
            )
        groups, option_sets, which = [], [], []
        for group in self._groups(size):
            if group.options not in option_sets:
                option_sets.append(group.options)
            which.append(option_sets.index(group.options))
            # every group has a stack (_checked_group)
            groups.append((group.start, group.stop, group.stack[1]))
        layout = (groups, option_sets, which)
        self._per_model_groups = (list(self.param_groups), layout)
        return layout

    def _per_model_values(
        self, option_sets: list[dict[str, float]]
    ) -> tuple[list[list[dict[str, float]]], dict[str, float]]:
        """(for each option set the K models' hyperparameter values under it, each buffer's
        fastest decay over models and option sets), with the members' hyperparameters set to
        their models' current values. Made again only when the values change (a schedule
        setting a new rate)."""
        assert self._members is not None
        current = self.hyperparameter_values()
        cached = self._per_model_cache
        if cached is not None and cached[0] == current and cached[1] is option_sets:
            return cached[2]
        models = per_model_values(current)[1] or [current] * self.n_models
        for member, values in zip(self._members, models):
            for key, value in values.items():
                setattr(member, key, value)
        members_values = [[{**values, **options} for values in models] for options in option_sets]
        decays = [
            member.decays(values)
            for per_options in members_values
            for member, values in zip(self._members, per_options)
        ]
        fastest = {name: min(decay[name] for decay in decays) for name in decays[0]}
        result = (members_values, fastest)
        self._per_model_cache = (current, option_sets, result)
        return result

    def _launches(
        self, params: Any, grads: Any, buffers: list[Any]
    ) -> list[tuple[list[Any], dict[str, float]]]:
        """One entry per kernel launch of a step: the views of params, grads and the state
        buffers it updates, and its group's options. Adjacent groups whose options are the
        same for this optimizer (Adam's weights and biases: the biases' weight_decay 0 is no
        option of Adam's) are one launch, since the update is per element. Made once per
        set of arrays and groups."""
        arrays = (params, grads, *buffers)
        cached = self._launch_views
        if (
            cached is not None
            and cached[1] == self.param_groups
            and all(mine is given for mine, given in zip(cached[0], arrays))
        ):
            return cached[2]
        merged: list[tuple[int, int, dict[str, float]]] = []
        for group in self._groups(params.shape[0]):
            if merged and merged[-1][2] == group.options:
                merged[-1] = (merged[-1][0], group.stop, group.options)
            else:
                merged.append((group.start, group.stop, group.options))
        whole = len(merged) == 1
        launches = [
            (list(arrays) if whole else [array[start:stop] for array in arrays], options)
            for start, stop, options in merged
        ]
        self._launch_views = (arrays, list(self.param_groups), launches)
        return launches

    def _groups(self, size: int) -> list[ParamGroup]:
        """The parameter groups by start (one of the whole buffer when there are none),
        checked to tile the ``size`` parameters."""
        if not self.param_groups:
            return [ParamGroup(0, size)]
        groups = sorted(self.param_groups, key=lambda group: group.start)
        if (
            groups[0].start != 0
            or groups[-1].stop != size
            or any(a.stop != b.start for a, b in zip(groups, groups[1:]))
        ):
            raise ValueError(
                f"parameter groups must tile the {size} parameters without gaps or overlaps"
            )
        return groups

    def _prepare_state(self, backend: Backend, params: Any) -> None:
        """Make every state buffer: zeros at the first step, or the loaded host copies moved
        to the params' backend and dtype. Checked once per params array and state."""
        ready = self._ready
        if ready and ready[0] is params:
            for key, buffer in zip(self.buffers, ready[1:]):
                if self.state.get(key) is not buffer:
                    break
            else:
                return
        for key in self.buffers:
            buffer = self.state.get(key)
            if buffer is None:
                self.state[key] = backend.zeros(params.shape, dtype=params.dtype)
            elif buffer.shape != params.shape:
                raise ValueError(
                    f"optimizer state {key!r} has shape {buffer.shape}, params {params.shape}: "
                    "this optimizer was used with another model"
                )
            elif backend_of(buffer).device != backend.device or buffer.dtype != params.dtype:
                self.state[key] = backend.asarray(backend.to_numpy(buffer), dtype=params.dtype)
        self._ready = (params, *(self.state[key] for key in self.buffers))

    def _flush_subnormals(
        self,
        backend: Backend,
        dtype: Any,
        values: dict[str, float],
        buffers: list[Any],
        decays: dict[str, float] | None = None,
    ) -> None:
        """Every ``flush_period(decay)`` steps, zero a state buffer's near-subnormal entries
        (``buffers``: the state buffers, or one group's views of them; ``decays``: given, or
        those of ``values``)."""
        decays = self.decays(values) if decays is None else decays
        for key, buffer in zip(self.buffers, buffers):
            period = flush_period(decays[key]) if key in decays else None
            if period is not None and self.steps % period == 0:
                backend.flush_subnormals_(buffer, flush_threshold(dtype))

    def select(
        self,
        k: int,
        model_entries: Callable[[Any], Any],
        param_groups: Sequence[ParamGroup] = (),
    ) -> Optimizer:
        """The optimizer of model ``k`` of a stack alone, where this one's step has left it:
        model k's hyperparameters (as they are now: a schedule's rate included), steps,
        scalar state, and state buffers. ``model_entries(buffer)`` gives model k's entries
        of a stack-laid-out buffer as a single model's flat array (see
        ``MLP.copy_model_entries``); ``param_groups``: the single model's groups."""
        current = self.hyperparameter_values()
        models = per_model_values(current)[1]
        values = current if models is None else models[k]
        single = type(self)(param_groups=param_groups, **values)
        single.steps = self.steps
        member = self if self._members is None else self._members[k]
        single._load_scalar_state(member._scalar_state())
        single.state = {key: model_entries(buffer) for key, buffer in self.state.items()}
        return single

    # ------------------------------------------------------------ persistence

    def _scalar_state(self) -> dict[str, float]:
        """Scalars beyond ``steps`` that the optimizer carries between steps."""
        return {}

    def _load_scalar_state(self, scalars: dict[str, float]) -> None:
        """Restore what :meth:`_scalar_state` returned."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: name, hyperparameters, groups, steps, buffers (host
        copies)."""
        buffers = {}
        for key, buffer in self.state.items():
            buffers[key] = backend_of(buffer).to_numpy(buffer).copy()
        return {
            "name": self.name,
            "hyperparameters": self.hyperparameter_values(),
            "param_groups": [group.to_dict() for group in self.param_groups],
            "steps": self.steps,
            "scalars": (
                self._scalar_state()
                if self._members is None
                else {"models": [member._scalar_state() for member in self._members]}
            ),
            "buffers": buffers,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; buffers move to the params' device at the next step."""
        if state["name"] != self.name:
            raise ValueError(f"state of optimizer {state['name']!r} cannot load into {self.name!r}")
        known = self.hyperparameter_values()
        unknown = sorted(set(state["hyperparameters"]) - set(known))
        if unknown:
            raise ValueError(f"optimizer {self.name!r} has no hyperparameter {unknown[0]!r}")
        # rebuilding from the stored values checks them as the constructor does
        rebuilt = type(self)(**{**known, **state["hyperparameters"]})
        for key in known:
            setattr(self, key, getattr(rebuilt, key))
        self.n_models, self._members = rebuilt.n_models, rebuilt._members
        self._per_model_cache = None  # the members' values are the new members' own
        self.param_groups = [
            self._checked_group(ParamGroup(**group)) for group in state.get("param_groups", [])
        ]
        steps = state["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"optimizer steps must be a whole number >= 0, got {steps!r}")
        self.steps = steps
        scalars = state.get("scalars", {})
        if self._members is None:
            self._load_scalar_state(scalars)
        else:
            for member, member_scalars in zip(self._members, scalars.get("models", [])):
                member._load_scalar_state(member_scalars)
        self.state = {key: np.array(value) for key, value in state["buffers"].items()}
