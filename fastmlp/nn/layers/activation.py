"""An activation layer: a = f(z + b), the bias of the Dense layer before it fused in."""

from __future__ import annotations

from typing import Any

from fastmlp.backends import Backend
from fastmlp.nn.activations import ActivationFunction
from fastmlp.nn.layers.layer import BufferCache, Layer


class Activation(Layer):
    """Applies an activation function (one registered in ``fastmlp.nn.activations``).

    Forward: one kernel computes f(z + b) with the preceding layer's bias; in place when the
    function's gradient is written through its output, into this layer's own buffer when
    it needs its input (GELU, SiLU), which then stays in z. Backward: one kernel,
    delta = delta * f'(.), in place.
    """

    def __init__(
        self, function: ActivationFunction, units: int, backend: Backend, dtype: str
    ) -> None:
        super().__init__(backend, dtype)
        self.function = function
        self.units = units
        self.bias: Any = None  # the preceding Dense layer's bias (see Dense.bias_for)
        self.keeps_input = function.backward_from == "input"
        self._buffers = BufferCache(self._make_buffers)
        self._saved: Any = None

    def _make_buffers(self, n: int) -> dict[str, Any]:
        if not self.keeps_input:
            return {}
        return {"a": self.backend.empty((n, self.units), dtype=self.dtype)}

    def forward(self, z: Any, training: bool) -> Any:
        out = self._buffers(z.shape[0])["a"] if self.keeps_input else None
        # z = z + b; a = f(z), in place (out None) or into out
        self.backend.bias_activation_(z, self.bias, self.function, out)
        self._saved = z
        return z if out is None else out

    def backward(self, delta: Any) -> Any:
        # delta = delta * f'(z), written through a = f(z) (in z's buffer) or z itself
        self.backend.activation_grad_(delta, self._saved, self.function)
        return delta
