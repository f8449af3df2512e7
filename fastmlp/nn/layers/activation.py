"""An activation layer: a = f(z + b), the bias of the Dense layer before it fused in."""

from __future__ import annotations

from typing import Any

from fastmlp.backends import Backend
from fastmlp.backends.base import backward_kernel, forward_kernel
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
        declaration, scalars = function.declaration, function.scalars
        # the kernels, bound once: a = f(z + b) (into out when the input is kept), and
        # delta = delta * f'(.)
        self._forward = backend.bind_formula(
            forward_kernel(declaration, self.keeps_input), scalars, dtype, 2, ("b",)
        )
        self._backward = backend.bind_formula(backward_kernel(declaration), scalars, dtype, 2)

    def _make_buffers(self, n: int) -> dict[str, Any]:
        if not self.keeps_input:
            return {}
        return {"a": self.backend.empty((n, self.units), dtype=self.dtype)}

    def forward(self, z: Any, training: bool) -> Any:
        self._saved = z
        if not self.keeps_input:
            # z = f(z + b), in place
            self._forward(z, self.bias)
            return z
        out = self._buffers(z.shape[0])["a"]
        # z = z + b; out = f(z)
        self._forward(z, self.bias, out)
        return out

    def backward(self, delta: Any) -> Any:
        # delta = delta * f'(z), written through a = f(z) (in z's buffer) or z itself
        self._backward(delta, self._saved)
        return delta
