"""How much memory a model and its training need, checked before anything is allocated.

A too-large network (``-sz 100000000``) must be one clear sentence, not a NumPy
``_ArrayMemoryError`` traceback after minutes of swapping. Sizes in bytes:

* the model: ``P * itemsize`` for the parameters and again for the gradients, where
  P = sum_i fan_in_i * fan_out_i + fan_out_i;
* training adds, per parameter, the optimizer's state buffers (0 to 2), the copy that
  restores the weights when an epoch diverges, and one scratch buffer of the fused update;
  plus the training, validation and test inputs in the model dtype on the device.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastmlp.backends import Backend
from fastmlp.errors import InsufficientMemoryError, format_bytes


def parameter_count(layer_sizes: Sequence[int]) -> int:
    """P, the number of weights and biases of a network with these layer sizes."""
    return sum(
        fan_in * fan_out + fan_out for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:])
    )


def training_bytes(parameters: int, itemsize: int, state_buffers: int, data_values: int) -> int:
    """Bytes of device memory training needs: parameters, gradients, ``state_buffers``
    optimizer buffers, the divergence snapshot and an update scratch buffer (all P values),
    and ``data_values`` input values, each ``itemsize`` bytes."""
    return itemsize * (parameters * (4 + state_buffers) + data_values)


def check_memory(backend: Backend, needed: int, what: str, hint: str) -> None:
    """Raise :class:`InsufficientMemoryError` if ``needed`` bytes exceed what ``backend``
    has available; ``what`` names the use, ``hint`` says how to need less."""
    available = backend.available_memory()
    if available is not None and needed > available:
        raise InsufficientMemoryError(
            f"{what} needs {format_bytes(needed)} but only {format_bytes(available)} of "
            f"memory is available on {backend.device}: {hint}"
        )
