"""What an activation declares, and the registry of activations.

An activation is one :class:`Activation` in its own file of this package: a name, aliases,
hyperparameters, and two per-element formulas (see :mod:`fastmlp.backends.formulas`):

* ``forward(z, *, hyperparameters)`` -- the value a = f(z);
* ``backward(delta, a, *, ...)`` or ``backward(delta, z, *, ...)`` -- the gradient with
  respect to the input, delta * f'(.), written through the output ``a`` when the maths
  allows (the forward pass can then overwrite z with a) or through the input ``z`` (the
  layer then keeps z).

Every backend builds its kernels from these two functions (fused with the bias add on the
forward side), so declaring an activation is all it takes to use it on every device, from
Python (``MLP(activation=...)``), ``fastmlp train -a NAME``, sweeps and ``--config`` files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from fastmlp.backends.formulas import Formula, FormulaError, formula
from fastmlp.registry import Hyperparameter, Registry


@dataclass(frozen=True, eq=False)
class Activation:
    """The declaration of one activation function.

    ``maths`` is f(z) as people write it (for help texts and the README), ``reference`` the
    equivalent PyTorch module (the tests compare with it when torch is installed). Compared
    and hashed by identity (there is one per name): kernels are cached per declaration.
    """

    name: str
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    maths: str
    aliases: tuple[str, ...] = ()
    hyperparameters: tuple[Hyperparameter, ...] = ()
    reference: str = ""

    def __post_init__(self) -> None:
        names = tuple(parameter.name for parameter in self.hyperparameters)
        forward, backward = self.forward_formula, self.backward_formula
        if forward.arrays != ("z",) or forward.result is None:
            raise FormulaError(f"activation {self.name}: forward must be f(z, *, ...) -> value")
        if backward.arrays not in (("delta", "a"), ("delta", "z")) or backward.result is None:
            raise FormulaError(
                f"activation {self.name}: backward must be g(delta, a, ...) or g(delta, z, ...)"
            )
        for function in (forward, backward):
            if set(function.scalars) - set(names):
                raise FormulaError(
                    f"activation {self.name}: {function.name} takes scalars "
                    f"{', '.join(function.scalars)}, declared hyperparameters: {names}"
                )

    @cached_property
    def forward_formula(self) -> Formula:
        return formula(self.forward)

    @cached_property
    def backward_formula(self) -> Formula:
        return formula(self.backward)

    @property
    def backward_from(self) -> str:
        """``"output"`` when the gradient is written through a = f(z), else ``"input"``."""
        return "output" if self.backward_formula.arrays[1] == "a" else "input"

    def defaults(self) -> dict[str, float]:
        return {parameter.name: parameter.default for parameter in self.hyperparameters}


@dataclass(frozen=True)
class ActivationFunction:
    """An activation with its hyperparameters' values: what a layer and the kernels use."""

    declaration: Activation
    options: tuple[tuple[str, float], ...] = field(default=())

    @property
    def name(self) -> str:
        return self.declaration.name

    @cached_property
    def scalars(self) -> dict[str, float]:
        """Every hyperparameter's value (defaults filled in); read, never modify."""
        return {**self.declaration.defaults(), **dict(self.options)}

    @property
    def backward_from(self) -> str:
        return self.declaration.backward_from

    def __str__(self) -> str:
        return self.name


ACTIVATIONS: Registry[Activation] = Registry("activation")


def register(declaration: Activation) -> Activation:
    """Add an activation to the registry (its module calls this when imported)."""
    return ACTIVATIONS.register(declaration.name, declaration, declaration.aliases)


def canonical_activation(name: Any) -> str:
    """The canonical name of an activation, accepting any case and its aliases."""
    return ACTIVATIONS.canonical(name)


def create(activation: str | ActivationFunction, **options: float) -> ActivationFunction:
    """An activation by name with hyperparameter values, e.g. ``create("leaky_relu",
    slope=0.1)``; unknown or out-of-range hyperparameters are a ValueError."""
    if isinstance(activation, ActivationFunction):
        if not options:
            return activation
        activation = activation.name
    declaration = ACTIVATIONS.get(activation)
    known = {parameter.name: parameter for parameter in declaration.hyperparameters}
    checked = {}
    for key, value in options.items():
        if key not in known:
            raise ValueError(
                f"activation {declaration.name} has no hyperparameter {key!r}"
                + (f" (it has {', '.join(known)})" if known else "")
            )
        checked[key] = known[key].check(value, f"{declaration.name} {key}")
    return ActivationFunction(declaration, tuple(sorted(checked.items())))
