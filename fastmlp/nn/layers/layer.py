"""The layer interface: forward and backward over views of the model's flat buffers.

A model is a sequence of layers. Each layer

* declares the parameters it owns (``parameter_shapes``); the model lays them out in its
  one flat ``params`` buffer and gives the layer views (``bind``), and the same views of
  ``grads``, so one fused optimizer kernel updates every layer at once;
* keeps its work arrays per batch size (:class:`BufferCache`): a steady-state step
  allocates nothing;
* ``forward(x, training)`` returns its output (an array it owns, or ``x`` itself when it
  works in place); ``backward(delta)`` takes dLoss/d(output), fills its gradient views and
  returns dLoss/d(input), or None when nothing before it needs one (the first layer).

Shapes carry the batch on the first axis: (N, features). A stack of K models of the same
shape keeps that interface with its models' features side by side, (N, K * features),
model k's in its block of columns (see ``dense.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastmlp.backends import Backend

# Batch sizes whose work arrays a layer keeps (training batch, last partial batch,
# evaluation chunks); older ones are dropped.
CACHED_BATCH_SIZES = 4


class BufferCache:
    """Work arrays of one layer for the last few batch sizes, made on first use."""

    def __init__(self, make: Callable[[int], dict[str, Any]]) -> None:
        self._make = make
        self._buffers: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._last: tuple[int, dict[str, Any]] = (-1, {})

    def __call__(self, n: int) -> dict[str, Any]:
        if n == self._last[0]:  # the common case: the same batch size as the last call
            return self._last[1]
        buffers = self._buffers.get(n)
        if buffers is None:
            buffers = self._buffers[n] = self._make(n)
            if len(self._buffers) > CACHED_BATCH_SIZES:
                self._buffers.popitem(last=False)
        else:
            self._buffers.move_to_end(n)
        self._last = (n, buffers)
        return buffers


class Layer:
    """Base class: a layer with no parameters that passes its input through."""

    def __init__(self, backend: Backend, dtype: str) -> None:
        self.backend = backend
        self.dtype = dtype

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """The parameters this layer owns, by role ("weight", "bias"): their shapes."""
        return {}

    def bind(self, params: dict[str, Any], grads: dict[str, Any]) -> None:
        """Receive views into the model's flat parameter and gradient buffers, by role."""

    def forward(self, x: Any, training: bool) -> Any:
        return x

    def backward(self, delta: Any) -> Any:
        return delta
