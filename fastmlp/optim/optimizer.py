"""The optimizer base class: hyperparameters, state buffers, the step counter.

A concrete optimizer (one file in this package) declares

* ``name`` (and optional ``aliases``) -- subclassing registers it with ``fastmlp.optim.create``;
* its hyperparameters as ``__init__`` keyword arguments stored under the same names;
* ``buffers``: the names of its per-parameter state buffers (allocated as zeros);
* ``_update(backend, params, grads)``: one call of its fused backend kernel;
* ``_decay_rates()``: the factor each buffer is multiplied by per step when its gradient
  is zero, which schedules the subnormal flush below.

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
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from fastmlp.backends import Backend, backend_of

FLUSH_MARGIN = 2.0**26

_REGISTRY: dict[str, type[Optimizer]] = {}


def check_positive(name: str, value: float) -> float:
    """``value`` as a float, or a ValueError saying it must be > 0."""
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive number, got {value}")
    return float(value)


def check_non_negative(name: str, value: float) -> float:
    """``value`` as a float, or a ValueError saying it must be >= 0."""
    if not value >= 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be >= 0, got {value}")
    return float(value)


def check_decay(name: str, value: float) -> float:
    """``value`` as a float, or a ValueError saying it must lie in [0, 1)."""
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def flush_period(decay: float) -> int | None:
    """Steps between subnormal flushes for a buffer decaying by ``decay`` (None: never)."""
    if not 0 < decay < 1:
        return None
    return max(1, int(math.log(FLUSH_MARGIN) / -math.log(decay)))


def flush_threshold(dtype: Any) -> float:
    """State entries below this magnitude are set to zero by the flush."""
    return float(np.finfo(dtype).tiny) * FLUSH_MARGIN


class Optimizer:
    """Base class of all optimizers; see the module docstring for what subclasses declare."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    buffers: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            for key in (cls.name, *cls.aliases):
                _REGISTRY[key] = cls

    def __init__(self, lr: float) -> None:
        self.lr = check_non_negative("learning rate", lr)
        self.steps = 0
        self.state: dict[str, Any] = {}

    def hyperparameters(self) -> dict[str, float]:
        """The keyword arguments that rebuild this optimizer (JSON-serialisable)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value:g}" for key, value in self.hyperparameters().items())
        return f"{type(self).__name__}({settings})"

    def _update(self, backend: Backend, params: Any, grads: Any) -> None:
        raise NotImplementedError

    def _decay_rates(self) -> dict[str, float]:
        return {}

    def step(self, params: Any, grads: Any) -> None:
        """Update the flat ``params`` in place from ``grads`` (same shape, dtype and device)."""
        if params.shape != grads.shape or params.ndim != 1:
            raise ValueError(
                "params and grads must be flat arrays of one shape, "
                f"got {params.shape} and {grads.shape}"
            )
        backend = backend_of(params)
        for key in self.buffers:
            buffer = self.state.get(key)
            if buffer is None:
                self.state[key] = backend.zeros(params.shape, dtype=params.dtype)
            elif buffer.shape != params.shape:
                raise ValueError(
                    f"optimizer state {key!r} has shape {buffer.shape}, params {params.shape}: "
                    "this optimizer was used with another model"
                )
            elif backend_of(buffer) is not backend or buffer.dtype != params.dtype:
                self.state[key] = backend.asarray(backend.to_numpy(buffer), dtype=params.dtype)
        self.steps += 1
        self._update(backend, params, grads)
        self._flush_subnormals(backend, params.dtype)

    def _flush_subnormals(self, backend: Backend, dtype: Any) -> None:
        for key, decay in self._decay_rates().items():
            period = flush_period(decay)
            if period is not None and self.steps % period == 0:
                backend.flush_subnormals_(self.state[key], flush_threshold(dtype))

    def _scalar_state(self) -> dict[str, float]:
        """Scalars beyond ``steps`` that the optimizer carries between steps."""
        return {}

    def _load_scalar_state(self, scalars: dict[str, float]) -> None:
        """Restore what :meth:`_scalar_state` returned."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: name, hyperparameters, steps, host copies of buffers."""
        buffers = {}
        for key, buffer in self.state.items():
            buffers[key] = backend_of(buffer).to_numpy(buffer).copy()
        return {
            "name": self.name,
            "hyperparameters": self.hyperparameters(),
            "steps": self.steps,
            "scalars": self._scalar_state(),
            "buffers": buffers,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; buffers move to the params' device at the next step."""
        if state["name"] != self.name:
            raise ValueError(f"state of optimizer {state['name']!r} cannot load into {self.name!r}")
        known = self.hyperparameters()
        unknown = sorted(set(state["hyperparameters"]) - set(known))
        if unknown:
            raise ValueError(f"optimizer {self.name!r} has no hyperparameter {unknown[0]!r}")
        # rebuilding from the stored values checks them as the constructor does
        checked = type(self)(**{**known, **state["hyperparameters"]}).hyperparameters()
        for key, value in checked.items():
            setattr(self, key, value)
        steps = state["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"optimizer steps must be a whole number >= 0, got {steps!r}")
        self.steps = steps
        self._load_scalar_state(state.get("scalars", {}))
        self.state = {key: np.array(value) for key, value in state["buffers"].items()}
