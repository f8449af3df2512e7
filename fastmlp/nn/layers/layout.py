"""Where each layer's parameters live in the model's one flat buffer.

Parameters are laid out role by role, in ``ROLE_ORDER`` (every layer's weights, layer by
layer and row-major, then every layer's biases), then any other role a layer declares, in
the order first declared. So all weights form one contiguous slice (what weight decay and
the optimizer's parameter groups address) and the layout of earlier checkpoints is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod
from typing import Any

from fastmlp.nn.layers.layer import Layer

ROLE_ORDER = ("weight", "bias")


@dataclass(frozen=True)
class Slot:
    """One parameter: the layer (its index), its role, its shape, where it starts."""

    layer: int
    role: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return prod(self.shape)


class ParameterLayout:
    """The slots of every parameter of a sequence of layers (see the module docstring)."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        declared = [
            (index, role, tuple(int(n) for n in shape))
            for index, layer in enumerate(layers)
            for role, shape in layer.parameter_shapes().items()
        ]
        # every declared role once: those of ROLE_ORDER first, then in order of appearance
        present = dict.fromkeys(role for _, role, _ in declared)
        self.roles = tuple(
            [role for role in ROLE_ORDER if role in present]
            + [role for role in present if role not in ROLE_ORDER]
        )
        self.slots: list[Slot] = []
        offset = 0
        for role in self.roles:
            for index, declared_role, shape in declared:
                if declared_role == role:
                    self.slots.append(Slot(index, role, shape, offset))
                    offset += prod(shape)
        self.size = offset
        self.num_layers = len(layers)

    def role_span(self, role: str) -> tuple[int, int]:
        """[start, stop) of the contiguous slice holding every parameter of ``role``."""
        slots = [slot for slot in self.slots if slot.role == role]
        if not slots:
            return (0, 0)
        return slots[0].offset, slots[-1].offset + slots[-1].size

    def of_role(self, role: str) -> list[Slot]:
        """The slots of ``role``, in layer order."""
        return [slot for slot in self.slots if slot.role == role]

    def views(self, flat: Any) -> list[dict[str, Any]]:
        """Per layer, its parameters by role as views into ``flat`` (shape (size,))."""
        per_layer: list[dict[str, Any]] = [{} for _ in range(self.num_layers)]
        for slot in self.slots:
            view = flat[slot.offset : slot.offset + slot.size].reshape(slot.shape)
            per_layer[slot.layer][slot.role] = view
        return per_layer
