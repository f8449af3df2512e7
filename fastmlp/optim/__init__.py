"""Optimizers with the arithmetic of ``torch.optim``, updating flat buffers in place.

Each optimizer is one file in this package: a subclass of :class:`Optimizer` declaring its
name, hyperparameters, state buffers, update formula and per-step scalars. Every module
here is imported below, so subclassing is registering: ``create("adamw")``, ``fastmlp
train -o adamw``, sweeps and ``--config`` files know it at once.
"""

from __future__ import annotations

from typing import Any

from fastmlp.optim.optimizer import OPTIMIZERS, Optimizer, ParamGroup
from fastmlp.registry import import_entry_modules, own_values

# The classic six first (the order of the command line's choices), then every other file.
_FIRST = ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam", "adamw")
import_entry_modules(__name__, __path__, _FIRST)

from fastmlp.optim.adam import Adam  # noqa: E402
from fastmlp.optim.adamw import AdamW  # noqa: E402
from fastmlp.optim.momentum import Momentum  # noqa: E402
from fastmlp.optim.nadam import Nadam  # noqa: E402
from fastmlp.optim.nag import NAG  # noqa: E402
from fastmlp.optim.rmsprop import RMSProp  # noqa: E402
from fastmlp.optim.sgd import SGD  # noqa: E402

__all__ = [
    "NAG",
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "AdamW",
    "Momentum",
    "Nadam",
    "Optimizer",
    "ParamGroup",
    "RMSProp",
    "create",
    "names",
    "optimizer_class",
]


def names() -> list[str]:
    """The canonical names of all registered optimizers."""
    return OPTIMIZERS.names()


def optimizer_class(name: str) -> type[Optimizer]:
    """The class registered under ``name`` or one of its aliases (any case)."""
    return OPTIMIZERS.get(name)


def all_hyperparameter_names() -> set[str]:
    """Hyperparameter names of every registered optimizer."""
    return {p.name for cls in OPTIMIZERS.entries.values() for p in cls.hyperparameters}


def create(name: str, param_groups: Any = (), **hyperparameters: Any) -> Optimizer:
    """An optimizer by name, e.g. ``create("adam", lr=1e-3, beta1=0.9)``.

    A hyperparameter that another registered optimizer has but this one lacks is ignored
    (callers such as the command line pass the same set to every optimizer); ``None``
    means "the optimizer's default". Any other unknown keyword is an error.
    """
    cls = optimizer_class(name)
    own = {parameter.name for parameter in cls.hyperparameters}
    kwargs = own_values("optimizer", cls.name, own, all_hyperparameter_names(), hyperparameters)
    return cls(param_groups=param_groups, **kwargs)
