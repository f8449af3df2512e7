"""A fully connected layer: z = x W (+ b, which the next layer may fuse with its work)."""

from __future__ import annotations

from typing import Any

from fastmlp.backends import Backend
from fastmlp.backends.base import forward_kernel
from fastmlp.nn.activations import ActivationFunction, create
from fastmlp.nn.layers.layer import BufferCache, Layer

_IDENTITY = create("identity")


class Dense(Layer):
    """x (N, fan_in) -> z = x W + b (N, fan_out), W of shape (fan_in, fan_out).

    When an :class:`~fastmlp.nn.layers.activation.Activation` follows, it adds the bias in
    the same kernel as its activation (``fuse_bias``); otherwise this layer adds it.
    Backward: dW = x^T delta, db = sum_n delta, dx = delta W^T (not computed for the first
    layer, ``needs_input_gradient`` False: nothing before it needs one).
    """

    def __init__(
        self,
        fan_in: int,
        fan_out: int,
        backend: Backend,
        dtype: str,
        needs_input_gradient: bool = True,
    ) -> None:
        super().__init__(backend, dtype)
        self.fan_in, self.fan_out = fan_in, fan_out
        self.needs_input_gradient = needs_input_gradient
        self.bias_fused = False  # set when the next layer adds the bias
        self._buffers = BufferCache(self._make_buffers)
        self._input: Any = None
        # z = z + b, bound once
        self._add_bias = backend.bind_formula(
            forward_kernel(_IDENTITY.declaration, False), {}, dtype, 2, ("b",)
        )

    def _make_buffers(self, n: int) -> dict[str, Any]:
        buffers = {"z": self.backend.empty((n, self.fan_out), dtype=self.dtype)}
        if self.needs_input_gradient:
            buffers["dx"] = self.backend.empty((n, self.fan_in), dtype=self.dtype)
        return buffers

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.fan_in, self.fan_out), "bias": (self.fan_out,)}

    def bind(self, params: dict[str, Any], grads: dict[str, Any]) -> None:
        self.weight, self.bias = params["weight"], params["bias"]
        self.grad_weight, self.grad_bias = grads["weight"], grads["bias"]

    def forward(self, x: Any, training: bool) -> Any:
        self._input = x
        z = self._buffers(x.shape[0])["z"]
        # z = x W
        self.backend.xp.matmul(x, self.weight, out=z)
        if not self.bias_fused:
            # z = z + b
            self._add_bias(z, self.bias)
        return z

    def backward(self, delta: Any) -> Any:
        xp = self.backend.xp
        # dW = x^T delta
        xp.matmul(self._input.T, delta, out=self.grad_weight)
        # db = sum_n delta
        self.backend.column_sums_(self.grad_bias, delta)
        if not self.needs_input_gradient:
            return None
        dx = self._buffers(delta.shape[0])["dx"]
        # dx = delta W^T
        xp.matmul(delta, self.weight.T, out=dx)
        return dx

    def bias_for(self, activation: ActivationFunction) -> Any:
        """Hand the bias add to the activation that follows (fused into its kernel)."""
        self.bias_fused = True
        return self.bias
