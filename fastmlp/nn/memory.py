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


def describe_sizes(layer_sizes: Sequence[int], limit: int = 60) -> str:
    """Layer sizes for people: ``784-128x3-10`` (runs of a size counted), at most ``limit``
    characters (``784-100-101-...-10, 62 layers`` beyond)."""
    runs: list[list[int]] = []
    for size in layer_sizes:
        if runs and runs[-1][0] == size:
            runs[-1][1] += 1
        else:
            runs.append([size, 1])
    text = "-".join(f"{size}x{count}" if count > 1 else str(size) for size, count in runs)
    if len(text) <= limit:
        return text
    return (
        f"{text[: limit - 20].rsplit('-', 1)[0]}-...-{layer_sizes[-1]}, {len(layer_sizes)} layers"
    )


def parameter_count(layer_sizes: Sequence[int]) -> int:
    """P, the number of weights and biases of a network with these layer sizes."""
    return sum(
        fan_in * fan_out + fan_out for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:])
    )


# Host memory of one layer's Python objects (views, buffers of a few batch sizes), bytes;
# measured at ~1.1 kB, counted generously: it is what makes 10 million tiny layers too many.
LAYER_OVERHEAD_BYTES = 4096


def model_bytes(parameters: int, itemsize: int, layers: int) -> int:
    """Bytes a model needs: parameters and gradients, and each layer's bookkeeping."""
    return 2 * itemsize * parameters + LAYER_OVERHEAD_BYTES * layers


def training_bytes(
    parameters: int, itemsize: int, state_buffers: int, data_values: int, layers: int
) -> int:
    """Bytes training needs: parameters, gradients, ``state_buffers`` optimizer buffers, the
    divergence snapshot and an update scratch buffer (all P values), ``data_values`` input
    values, each ``itemsize`` bytes, and each of the ``layers`` layers' bookkeeping."""
    return itemsize * (parameters * (4 + state_buffers) + data_values) + (
        LAYER_OVERHEAD_BYTES * layers
    )


def check_memory(backend: Backend, needed: int, what: str, hint: str) -> None:
    """Raise :class:`InsufficientMemoryError` if ``needed`` bytes exceed what ``backend``
    has available; ``what`` names the use, ``hint`` says how to need less."""
    available = backend.available_memory()
    if available is not None and needed > available:
        raise InsufficientMemoryError(
            f"{what} needs {format_bytes(needed)} but only {format_bytes(available)} of "
            f"memory is available on {backend.device}: {hint}"
        )
