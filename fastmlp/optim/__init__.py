"""Optimizers with the arithmetic of ``torch.optim``, updating flat buffers in place.

``create(name, **hyperparameters)`` builds one by name. Every module in this package is
imported here, and every :class:`Optimizer` subclass with a ``name`` registers itself:
adding an optimizer is one new file (plus its fused kernel as a backend method).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from fastmlp.optim.optimizer import _REGISTRY, Optimizer

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from fastmlp.optim.adam import Adam  # noqa: E402
from fastmlp.optim.momentum import Momentum  # noqa: E402
from fastmlp.optim.nadam import Nadam  # noqa: E402
from fastmlp.optim.nag import NAG  # noqa: E402
from fastmlp.optim.rmsprop import RMSProp  # noqa: E402
from fastmlp.optim.sgd import SGD  # noqa: E402

__all__ = ["NAG", "SGD", "Adam", "Momentum", "Nadam", "Optimizer", "RMSProp", "create", "names"]

# Hyperparameters that callers such as the command line pass to every optimizer; each
# optimizer takes the ones it uses and ignores the rest.
SHARED_HYPERPARAMETERS = frozenset({"lr", "momentum", "beta", "beta1", "beta2", "eps"})


def names() -> list[str]:
    """The canonical names of all registered optimizers."""
    return sorted({cls.name for cls in _REGISTRY.values()})


def optimizer_class(name: str) -> type[Optimizer]:
    """The class registered under ``name`` or one of its aliases (any case)."""
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}: choose one of {', '.join(names())}")
    return _REGISTRY[key]


def create(name: str, **hyperparameters: Any) -> Optimizer:
    """An optimizer by name, e.g. ``create("adam", lr=1e-3, beta1=0.9)``.

    Hyperparameters shared across optimizers (lr, momentum, beta, beta1, beta2, eps) are
    passed to the ones that take them and ignored by the others; ``None`` values mean
    "the optimizer's default". Any other unknown keyword is an error.
    """
    cls = optimizer_class(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    kwargs = {}
    for key, value in hyperparameters.items():
        if key in accepted:
            if value is not None:
                kwargs[key] = value
        elif key not in SHARED_HYPERPARAMETERS:
            raise TypeError(f"optimizer {cls.name!r} has no hyperparameter {key!r}")
    return cls(**kwargs)
