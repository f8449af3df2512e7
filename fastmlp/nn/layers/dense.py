"""A fully connected layer: z = x W (+ b, which the next layer may fuse with its work)."""

from __future__ import annotations

from typing import Any

from fastmlp.backends import Backend
from fastmlp.backends.base import forward_kernel
from fastmlp.backends.formulas import formula
from fastmlp.nn.activations import ActivationFunction, create
from fastmlp.nn.layers.layer import BufferCache, Layer

_IDENTITY = create("identity")


def decayed_gradient(g, p, weight_decay):
    # g = g + weight_decay * p
    g = g + p * weight_decay
    return g


DECAYED_GRADIENT = formula(decayed_gradient)


def model_blocks(a: Any, n_models: int, units: int) -> Any:
    """The (K, rows, units) view of a (rows, K * units) array of a stack of K models: model
    k's block of columns as ``[k]`` (a weight, an activation or its gradient)."""
    return a.reshape(a.shape[0], n_models, units).transpose(1, 0, 2)


class Dense(Layer):
    """x (N, fan_in) -> z = x W + b (N, fan_out), W of shape (fan_in, fan_out).

    When an :class:`~fastmlp.nn.layers.activation.Activation` follows, it adds the bias in
    the same kernel as its activation (``fuse_bias``); otherwise this layer adds it.
    Backward: dW = x^T delta, db = sum_n delta, dx = delta W^T (not computed for the first
    layer, ``needs_input_gradient`` False: nothing before it needs one).

    A stack of ``n_models`` K: the weights of the K models side by side, W of shape
    (fan_in, K * fan_out) (model k's in columns [k * fan_out, (k + 1) * fan_out)), b of shape
    (K * fan_out,), z of shape (N, K * fan_out). The first layer (``shared_input``) takes
    one x (N, fan_in) for all models: z = x W is one matrix product. Later layers take
    x (N, K * fan_in), model k's input in its block of columns, and multiply block by
    block in one batched product: z_k = x_k W_k.
    """

    def __init__(
        self,
        fan_in: int,
        fan_out: int,
        backend: Backend,
        dtype: str,
        needs_input_gradient: bool = True,
        n_models: int = 1,
        shared_input: bool = False,
    ) -> None:
        super().__init__(backend, dtype)
        self.fan_in, self.fan_out = fan_in, fan_out
        self.needs_input_gradient = needs_input_gradient
        self.n_models = n_models
        # a stack's later layers multiply model by model (a batched product)
        self.batched = n_models > 1 and not shared_input
        self.bias_fused = False  # set when the next layer adds the bias
        self._buffers = BufferCache(self._make_buffers)
        self._input: Any = None
        # z = z + b, bound once
        self._add_bias = backend.bind_formula(
            forward_kernel(_IDENTITY.declaration, False), {}, dtype, 2, ("b",)
        )

    def _make_buffers(self, n: int) -> dict[str, Any]:
        models = self.n_models
        buffers = {"z": self.backend.empty((n, models * self.fan_out), dtype=self.dtype)}
        if self.needs_input_gradient:
            inputs = models * self.fan_in if self.batched else self.fan_in
            buffers["dx"] = self.backend.empty((n, inputs), dtype=self.dtype)
        return buffers

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        columns = self.n_models * self.fan_out
        return {"weight": (self.fan_in, columns), "bias": (columns,)}

    def per_model(self, a: Any, units: int) -> Any:
        return model_blocks(a, self.n_models, units)

    def bind(self, params: dict[str, Any], grads: dict[str, Any]) -> None:
        self.weight, self.bias = params["weight"], params["bias"]
        self.grad_weight, self.grad_bias = grads["weight"], grads["bias"]

    def forward(self, x: Any, training: bool) -> Any:
        self._input = x
        z = self._buffers(x.shape[0])["z"]
        if self.batched:
            # z_k = x_k W_k for each model k
            self.backend.xp.matmul(
                self.per_model(x, self.fan_in),
                self.per_model(self.weight, self.fan_out),
                out=self.per_model(z, self.fan_out),
            )
        else:
            # z = x W
            self.backend.xp.matmul(x, self.weight, out=z)
        if not self.bias_fused:
            # z = z + b
            self._add_bias(z, self.bias)
        return z

    def backward(self, delta: Any) -> Any:
        xp = self.backend.xp
        if self.batched:
            return self._backward_per_model(delta)
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

    def _backward_per_model(self, delta: Any) -> Any:
        """:meth:`backward` of a stack's later layer, model by model in batched products."""
        xp = self.backend.xp
        inputs = self.per_model(self._input, self.fan_in)
        deltas = self.per_model(delta, self.fan_out)
        # dW_k = x_k^T delta_k
        xp.matmul(
            inputs.transpose(0, 2, 1), deltas, out=self.per_model(self.grad_weight, self.fan_out)
        )
        # db = sum_n delta (every model's columns at once)
        self.backend.column_sums_(self.grad_bias, delta)
        if not self.needs_input_gradient:
            return None
        dx = self._buffers(delta.shape[0])["dx"]
        # dx_k = delta_k W_k^T
        weights = self.per_model(self.weight, self.fan_out)
        xp.matmul(deltas, weights.transpose(0, 2, 1), out=self.per_model(dx, self.fan_in))
        return dx

    def add_weight_decay_(self, weight_decay: Any) -> None:
        """dW = dW + weight_decay * W with one decay per column: ``weight_decay`` a
        (K * fan_out,) row holding each model's decay over its block of columns."""
        # dW = dW + weight_decay_k * W, model k's decay over its columns
        self.backend.run_formula_(
            DECAYED_GRADIENT, (self.grad_weight, self.weight, weight_decay), {},
            row_vectors=("weight_decay",),
        )  # fmt: skip

    def bias_for(self, activation: ActivationFunction) -> Any:
        """Hand the bias add to the activation that follows (fused into its kernel)."""
        self.bias_fused = True
        return self.bias
