"""The CUDA backend: CuPy arrays and fused ``ElementwiseKernel`` launches.

Each optimizer update is ONE kernel launch over the whole flat parameter buffer; each
kernel is built once (CuPy caches the compiled code per dtype signature, also on disk)
and takes its scalars by value, so a changing learning rate never recompiles anything.
Scalar expressions such as ``1 - beta2`` are computed in double precision on the host and
rounded once to the array dtype, exactly as the NumPy backend does, so float32 results
agree with the CPU's instead of differing by a float32 rounding of ``1 - beta2``.
Bias-add + activation, the activation gradient and the softmax cross-entropy gradient
are fused the same way. Importing this module imports CuPy: only
:func:`fastmlp.backends.get_backend` does that, and only when a CUDA device is asked for.
"""

from __future__ import annotations

import math
from typing import Any

import cupy
import numpy as np

from fastmlp.backends.base import Backend, adam_scalars, nadam_scalars

_ADD_SCALED = cupy.ElementwiseKernel(
    "T x, T alpha",
    "T y",
    """
    // y = y + alpha * x
    y += alpha * x;
    """,
    "fastmlp_add_scaled",
)

_SGD = cupy.ElementwiseKernel(
    "T g, T lr",
    "T p",
    """
    // p = p - lr * g
    p -= lr * g;
    """,
    "fastmlp_sgd",
)

_MOMENTUM = cupy.ElementwiseKernel(
    "T g, T lr, T momentum",
    "T p, T b",
    """
    // b = momentum * b + g
    b = momentum * b + g;
    // p = p - lr * b
    p -= lr * b;
    """,
    "fastmlp_momentum",
)

_NAG = cupy.ElementwiseKernel(
    "T g, T lr, T momentum",
    "T p, T b",
    """
    // b = momentum * b + g
    b = momentum * b + g;
    // p = p - lr * (g + momentum * b)
    p -= lr * (g + momentum * b);
    """,
    "fastmlp_nag",
)

_RMSPROP = cupy.ElementwiseKernel(
    "T g, T lr, T beta, T one_minus_beta, T eps",
    "T p, T v",
    """
    // v = beta * v + (1 - beta) * g^2
    v = beta * v + one_minus_beta * g * g;
    // p = p - lr * g / (sqrt(v) + eps)
    p -= lr * g / (sqrt(v) + eps);
    """,
    "fastmlp_rmsprop",
)

_ADAM = cupy.ElementwiseKernel(
    "T g, T step_size, T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, T eps, "
    "T bias_correction2_sqrt",
    "T p, T m, T v",
    """
    // m = beta1 * m + (1 - beta1) * g
    m = beta1 * m + one_minus_beta1 * g;
    // v = beta2 * v + (1 - beta2) * g^2
    v = beta2 * v + one_minus_beta2 * g * g;
    // p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    p -= step_size * m / (sqrt(v) / bias_correction2_sqrt + eps);
    """,
    "fastmlp_adam",
)

_NADAM = cupy.ElementwiseKernel(
    "T g, T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, T eps, T bias_correction2, "
    "T grad_step, T momentum_step",
    "T p, T m, T v",
    """
    // m = beta1 * m + (1 - beta1) * g
    m = beta1 * m + one_minus_beta1 * g;
    // v = beta2 * v + (1 - beta2) * g^2
    v = beta2 * v + one_minus_beta2 * g * g;
    // denom = sqrt(v / (1 - beta2^t)) + eps
    T denom = sqrt(v / bias_correction2) + eps;
    // p = p - lr (1 - mu_t) / (1 - prod_t) * g / denom
    //       - lr mu_{t+1} / (1 - prod_t mu_{t+1}) * m / denom
    p -= grad_step * g / denom + momentum_step * m / denom;
    """,
    "fastmlp_nadam",
)

_FLUSH_SUBNORMALS = cupy.ElementwiseKernel(
    "T threshold",
    "T x",
    """
    // x = 0 where |x| < threshold
    if (fabs(x) < threshold) x = 0;
    """,
    "fastmlp_flush_subnormals",
)

# f(z + b) for each activation, applied in place to the pre-activation z.
_ACTIVATION_BODIES = {
    "identity": "z = z + b;",
    "relu": "T s = z + b; z = s > 0 ? s : (T)0;",
    "tanh": "z = tanh(z + b);",
    "sigmoid": """
        T s = z + b;
        if (s >= 0) { z = 1 / (1 + exp(-s)); } else { T e = exp(s); z = e / (1 + e); }
    """,
}

# delta * f'(z), with f' written through the activation's output a = f(z).
_ACTIVATION_GRAD_BODIES = {
    "relu": "delta = a > 0 ? delta : (T)0;",
    "tanh": "delta = delta * (1 - a * a);",
    "sigmoid": "delta = delta * a * (1 - a);",
}

_BIAS_ACTIVATION = {
    name: cupy.ElementwiseKernel("T b", "T z", body, f"fastmlp_bias_{name}")
    for name, body in _ACTIVATION_BODIES.items()
}

_ACTIVATION_GRAD = {
    name: cupy.ElementwiseKernel("T a", "T delta", body, f"fastmlp_{name}_grad")
    for name, body in _ACTIVATION_GRAD_BODIES.items()
}

_ROW_SUM_EXP = cupy.ReductionKernel(
    "T z, T row_max",
    "T total",
    "exp(z - row_max)",
    "a + b",
    "total = a",
    "0",
    "fastmlp_row_sum_exp",
)

_CROSS_ENTROPY_PER_SAMPLE = cupy.ElementwiseKernel(
    "raw T z, S y, T log_normalizer, int64 classes, T nan",
    "T loss",
    """
    // loss_n = log_normalizer_n - z_n,y_n, NaN for a label outside [0, classes)
    loss = (y >= 0 && y < classes) ? log_normalizer - z[i * classes + y] : nan;
    """,
    "fastmlp_cross_entropy_per_sample",
)

_SOFTMAX_CROSS_ENTROPY_GRAD = cupy.ElementwiseKernel(
    "raw S y, raw T log_normalizer, int64 classes, T n",
    "T z",
    """
    // z = (softmax(z) - onehot(y)) / N, with softmax(z) = exp(z - logsumexp_k z_k);
    // a label outside [0, classes) matches no column, so its row gets no onehot term
    ptrdiff_t row = i / classes;
    T target = (i % classes) == y[row] ? (T)1 : (T)0;
    z = (exp(z - log_normalizer[row]) - target) / n;
    """,
    "fastmlp_softmax_cross_entropy_grad",
)


class CupyBackend(Backend):
    """CuPy on one CUDA device; construction makes that device current."""

    name = "cupy"
    xp = cupy

    def __init__(self, device_id: int = 0) -> None:
        self.device_id = device_id
        self.device = f"cuda:{device_id}"
        cupy.cuda.Device(device_id).use()

    def to_numpy(self, a: Any) -> np.ndarray:
        return cupy.asnumpy(a)

    def rng(self, seed: int | None = None) -> Any:
        return cupy.random.RandomState(seed)

    def synchronize(self) -> None:
        cupy.cuda.Device(self.device_id).synchronize()

    def available_memory(self) -> int | None:
        # free device memory plus what CuPy's pool holds unused
        free, _total = cupy.cuda.runtime.memGetInfo()
        return int(free) + int(cupy.get_default_memory_pool().free_bytes())

    # ------------------------------------------------------- optimizer updates

    def add_scaled_(self, y: Any, x: Any, alpha: float) -> None:
        _ADD_SCALED(x, alpha, y)

    def sgd_(self, p: Any, g: Any, lr: float) -> None:
        _SGD(g, lr, p)

    def momentum_(self, p: Any, g: Any, b: Any, lr: float, momentum: float) -> None:
        _MOMENTUM(g, lr, momentum, p, b)

    def nag_(self, p: Any, g: Any, b: Any, lr: float, momentum: float) -> None:
        _NAG(g, lr, momentum, p, b)

    def rmsprop_(self, p: Any, g: Any, v: Any, lr: float, beta: float, eps: float) -> None:
        _RMSPROP(g, lr, beta, 1.0 - beta, eps, p, v)

    def adam_(
        self,
        p: Any,
        g: Any,
        m: Any,
        v: Any,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        step: int,
    ) -> None:
        step_size, bias_correction2_sqrt = adam_scalars(lr, beta1, beta2, step)
        _ADAM(
            g,
            step_size,
            beta1,
            1.0 - beta1,
            beta2,
            1.0 - beta2,
            eps,
            bias_correction2_sqrt,
            p,
            m,
            v,
        )

    def nadam_(
        self,
        p: Any,
        g: Any,
        m: Any,
        v: Any,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        step: int,
        mu: float,
        mu_next: float,
        mu_product: float,
    ) -> None:
        bias_correction2, grad_step, momentum_step = nadam_scalars(
            lr, beta2, step, mu, mu_next, mu_product
        )
        _NADAM(
            g,
            beta1,
            1.0 - beta1,
            beta2,
            1.0 - beta2,
            eps,
            bias_correction2,
            grad_step,
            momentum_step,
            p,
            m,
            v,
        )

    def flush_subnormals_(self, x: Any, threshold: float) -> None:
        _FLUSH_SUBNORMALS(threshold, x)

    # ------------------------------------------------------------ network math

    def bias_activation_(self, z: Any, b: Any, activation: str) -> None:
        kernel = _BIAS_ACTIVATION.get(activation)
        if kernel is None:
            raise ValueError(f"unknown activation {activation!r}")
        kernel(b, z)

    def activation_grad_(self, delta: Any, a: Any, activation: str) -> None:
        if activation == "identity":
            return
        kernel = _ACTIVATION_GRAD.get(activation)
        if kernel is None:
            raise ValueError(f"unknown activation {activation!r}")
        kernel(a, delta)

    def cross_entropy_(self, z: Any, y: Any) -> Any:
        n, classes = z.shape
        if y.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(y.shape)}")
        row_max = z.max(axis=1, keepdims=True)
        # log_normalizer = max_k z_k + log sum_k exp(z_k - max_k z_k)
        log_normalizer = cupy.log(_ROW_SUM_EXP(z, row_max, axis=1)) + row_max[:, 0]
        # loss = mean_n [ log_normalizer_n - z_n,y_n ]
        per_sample = _CROSS_ENTROPY_PER_SAMPLE(z.reshape(-1), y, log_normalizer, classes, math.nan)
        loss = per_sample.mean()
        _SOFTMAX_CROSS_ENTROPY_GRAD(y, log_normalizer, classes, n, z)
        return loss
