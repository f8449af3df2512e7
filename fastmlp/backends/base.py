"""The reference backend: every kernel written once, plainly, against ``self.xp``.

A :class:`Backend` owns an array module (NumPy or CuPy) and a device. Its methods fall
in two groups:

* array plumbing: ``asarray``, ``to_numpy``, ``empty``, ``zeros``, ``rng``, ``synchronize``;
* in-place kernels (names end in ``_``): the optimizer updates on flat 1-D buffers, the
  fused bias-add + activation, the activation gradient, and softmax + loss gradient.

The bodies here are the readable specification.
:class:`~fastmlp.backends.numpy_backend.NumpyBackend`
and :class:`~fastmlp.backends.cupy_backend.CupyBackend` override the hot kernels with
identical signatures (``tests/test_backend_consistency.py`` enforces that) and the tests
check that every override computes what the body here computes.

Conventions for every kernel:

* arrays are updated in place and belong to this backend; scalars are Python floats;
* ``p``, ``g`` are the flat parameter and gradient buffers, state buffers have their shape;
* an activation is named by its canonical lower-case name (see ``fastmlp.nn.activations``);
* kernels are memory-safe whatever their inputs: arrays of mismatched sizes are an error, and
  in the loss kernels a label outside ``[0, classes)`` gives its row a NaN loss and no target
  term (no kernel reads or writes outside its arrays). Callers that want a clear error for
  such labels check them first (``fastmlp.nn.inputs.check_label_range``).
"""

from __future__ import annotations

import math
import os
from types import ModuleType
from typing import Any

import numpy as np


def adam_scalars(lr: float, beta1: float, beta2: float, step: int) -> tuple[float, float]:
    """Adam's per-step scalars, in double precision on the host.

    Returns (step_size, bias_correction2_sqrt) = (lr / (1 - beta1^t), sqrt(1 - beta2^t)).
    """
    return lr / (1.0 - beta1**step), math.sqrt(1.0 - beta2**step)


def nadam_scalars(
    lr: float, beta2: float, step: int, mu: float, mu_next: float, mu_product: float
) -> tuple[float, float, float]:
    """NAdam's per-step scalars, in double precision on the host.

    Returns (bias_correction2, grad_step, momentum_step) =
    (1 - beta2^t, lr (1 - mu_t) / (1 - prod_t), lr mu_{t+1} / (1 - prod_t mu_{t+1})).
    """
    bias_correction2 = 1.0 - beta2**step
    grad_step = lr * (1.0 - mu) / (1.0 - mu_product)
    momentum_step = lr * mu_next / (1.0 - mu_product * mu_next)
    return bias_correction2, grad_step, momentum_step


def _read_int(path: str) -> int | None:
    try:
        with open(path) as stream:
            text = stream.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def host_available_memory() -> int | None:
    """Bytes of host memory available to this process (None where it cannot be told)."""
    available = None
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if available is None and hasattr(os, "sysconf"):
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            available = None
    limit = _read_int("/sys/fs/cgroup/memory.max")
    used = _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        available = limit - used if available is None else min(available, limit - used)
    room = _address_space_left()
    if room is not None:
        available = room if available is None else min(available, room)
    return available


def _address_space_left() -> int | None:
    """Bytes left under this process's address-space limit (``ulimit -v``), if it has one."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as stream:
            for line in stream:
                if line.startswith("VmSize:"):
                    return max(0, soft - int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return soft


class Backend:
    """Array module + device + reference kernels.

    Attributes:
        name: ``"numpy"`` or ``"cupy"``.
        device: ``"cpu"`` or ``"cuda:N"``.
        xp: the array module every method is written against.
    """

    name: str = "reference"
    device: str = "cpu"
    xp: ModuleType = np

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"

    # ------------------------------------------------------------------ arrays

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """``a`` as an array of this backend (no copy when it already is one)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        """``a`` as a host NumPy array (a device-to-host copy on GPU backends)."""
        return np.asarray(a)

    def empty(self, shape: int | tuple[int, ...], dtype: Any = "float32") -> Any:
        """An uninitialised array of this backend."""
        return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape: int | tuple[int, ...], dtype: Any = "float32") -> Any:
        """A zero-filled array of this backend."""
        return self.xp.zeros(shape, dtype=dtype)

    def rng(self, seed: int | None = None) -> Any:
        """A random generator that lives on this device; it has ``permutation(n)``."""
        return self.xp.random.default_rng(seed)

    def synchronize(self) -> None:
        """Wait until all queued device work is done (a no-op on the CPU)."""

    def available_memory(self) -> int | None:
        """Bytes that new arrays of this backend can still take (None: unknown).

        On the CPU: the kernel's estimate of available memory (``MemAvailable``), capped by
        the cgroup limit of a container.
        """
        return host_available_memory()

    def gather_(self, out: Any, x: Any, indices: Any) -> None:
        """``out[i] = x[indices[i]]`` along the first axis (a batch of rows)."""
        self.xp.take(x, indices, axis=0, out=out)

    def column_sums_(self, out: Any, x: Any) -> None:
        """``out_k = sum_n x_nk`` (bias gradients). out: (K,), x: (N, K)."""
        self.xp.sum(x, axis=0, out=out)

    def add_scaled_(self, y: Any, x: Any, alpha: float) -> None:
        """``y = y + alpha * x`` in place (used for L2 weight decay on the gradient)."""
        # y = y + alpha * x
        y += alpha * x

    # ------------------------------------------------------- optimizer updates

    def sgd_(self, p: Any, g: Any, lr: float) -> None:
        """Plain gradient descent."""
        # p = p - lr * g
        p -= lr * g

    def momentum_(self, p: Any, g: Any, b: Any, lr: float, momentum: float) -> None:
        """Heavy-ball momentum (``torch.optim.SGD`` with momentum, dampening 0)."""
        # b = momentum * b + g
        b *= momentum
        b += g
        # p = p - lr * b
        p -= lr * b

    def nag_(self, p: Any, g: Any, b: Any, lr: float, momentum: float) -> None:
        """Nesterov momentum (``torch.optim.SGD`` with ``nesterov=True``)."""
        # b = momentum * b + g
        b *= momentum
        b += g
        # p = p - lr * (g + momentum * b)
        p -= lr * (g + momentum * b)

    def rmsprop_(self, p: Any, g: Any, v: Any, lr: float, beta: float, eps: float) -> None:
        """RMSProp (``torch.optim.RMSprop`` with ``alpha=beta``)."""
        # v = beta * v + (1 - beta) * g^2
        v *= beta
        v += (1.0 - beta) * g * g
        # p = p - lr * g / (sqrt(v) + eps)
        p -= lr * g / (self.xp.sqrt(v) + eps)

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
        """Adam (``torch.optim.Adam``); ``step`` is t, counting this update (t >= 1)."""
        step_size, bias_correction2_sqrt = adam_scalars(lr, beta1, beta2, step)
        # m = beta1 * m + (1 - beta1) * g
        m *= beta1
        m += (1.0 - beta1) * g
        # v = beta2 * v + (1 - beta2) * g^2
        v *= beta2
        v += (1.0 - beta2) * g * g
        # p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
        p -= step_size * m / (self.xp.sqrt(v) / bias_correction2_sqrt + eps)

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
        """NAdam (``torch.optim.NAdam``).

        ``mu`` and ``mu_next`` are the momentum schedule at t and t + 1, ``mu_product`` is
        the running product mu_1 * ... * mu_t (this step included); the optimizer keeps them.
        """
        bias_correction2, grad_step, momentum_step = nadam_scalars(
            lr, beta2, step, mu, mu_next, mu_product
        )
        # m = beta1 * m + (1 - beta1) * g
        m *= beta1
        m += (1.0 - beta1) * g
        # v = beta2 * v + (1 - beta2) * g^2
        v *= beta2
        v += (1.0 - beta2) * g * g
        # denom = sqrt(v / (1 - beta2^t)) + eps
        denom = self.xp.sqrt(v / bias_correction2) + eps
        # p = p - lr (1 - mu_t) / (1 - prod_t) * g / denom
        #       - lr mu_{t+1} / (1 - prod_t mu_{t+1}) * m / denom
        p -= grad_step * g / denom + momentum_step * m / denom

    def flush_subnormals_(self, x: Any, threshold: float) -> None:
        """Set every element with ``|x| < threshold`` to exactly zero.

        Optimizer state that decays geometrically (a momentum or second-moment buffer
        whose gradient is always zero) drifts into subnormal floats, which x86 CPUs
        process ~100x slower. Optimizers call this every few steps with a threshold far
        below anything that moves a parameter (see ``fastmlp.optim.optimizer``).
        """
        # x = 0 where |x| < threshold
        x[self.xp.abs(x) < threshold] = 0

    # ------------------------------------------------------------ network math

    def bias_activation_(self, z: Any, b: Any, activation: str) -> None:
        """``z = f(z + b)`` in place. z: (N, units) pre-activation, b: (units,)."""
        xp = self.xp
        # z = z + b
        z += b
        if activation == "identity":
            return
        if activation == "relu":
            # z = max(z, 0)
            xp.maximum(z, 0, out=z)
        elif activation == "tanh":
            # z = tanh(z)
            xp.tanh(z, out=z)
        elif activation == "sigmoid":
            # z = 1 / (1 + exp(-z)) for z >= 0, exp(z) / (1 + exp(z)) for z < 0
            e = xp.exp(-xp.abs(z))
            z[...] = xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        else:
            raise ValueError(f"unknown activation {activation!r}")

    def activation_grad_(self, delta: Any, a: Any, activation: str) -> None:
        """``delta = delta * f'(z)`` in place, with f' written through the output a = f(z).

        delta: (N, units) gradient w.r.t. the layer output; a: (N, units) that output.
        """
        if activation == "identity":
            return
        if activation == "relu":
            # delta = delta * [a > 0]
            delta[a <= 0] = 0
        elif activation == "tanh":
            # delta = delta * (1 - a^2)
            delta *= 1.0 - a * a
        elif activation == "sigmoid":
            # delta = delta * a * (1 - a)
            delta *= a * (1.0 - a)
        else:
            raise ValueError(f"unknown activation {activation!r}")

    def softmax_(self, z: Any) -> None:
        """Row-wise softmax in place (max-subtracted). z: (N, classes)."""
        xp = self.xp
        # z = exp(z - max_k z_k) / sum_k exp(z - max_k z_k)
        z -= z.max(axis=1, keepdims=True)
        xp.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)

    def cross_entropy_(self, z: Any, y: Any) -> Any:
        """Softmax cross-entropy: returns the mean loss, leaves dLoss/dz in ``z``.

        z: (N, classes) logits, overwritten with (softmax(z) - onehot(y)) / N.
        y: (N,) integer labels. Returns a 0-d array (no host sync).
        loss = mean_n [ log sum_k exp(z_nk) - z_n,y_n ]   (log-sum-exp, max-subtracted)
        A label outside [0, classes) makes its row's loss NaN and drops its onehot term.
        """
        xp = self.xp
        n = z.shape[0]
        rows = xp.arange(n)
        valid, safe_y = self._valid_labels(y, z.shape)
        shifted = z - z.max(axis=1, keepdims=True)
        log_normalizer = xp.log(xp.exp(shifted).sum(axis=1))
        per_sample = xp.where(valid, log_normalizer - shifted[rows, safe_y], xp.nan)
        loss = per_sample.mean()
        # z = (softmax(z) - onehot(y)) / N
        z[...] = xp.exp(shifted - log_normalizer[:, None])
        z[rows, safe_y] -= valid.astype(z.dtype)
        z /= n
        return loss

    def mean_squared_error_(self, z: Any, y: Any) -> Any:
        """Squared error on the softmax output: returns the loss, leaves dLoss/dz in ``z``.

        loss = mean_n sum_k (p_nk - onehot(y)_nk)^2 with p = softmax(z).
        Gradient through the softmax Jacobian, with e = dLoss/dp = 2 (p - onehot) / N:
        dLoss/dz_j = p_j (e_j - sum_k p_k e_k).
        A label outside [0, classes) makes its row's loss NaN and drops its onehot term.
        """
        xp = self.xp
        n = z.shape[0]
        rows = xp.arange(n)
        valid, safe_y = self._valid_labels(y, z.shape)
        self.softmax_(z)
        err = z.copy()
        err[rows, safe_y] -= valid.astype(z.dtype)
        per_sample = xp.where(valid, (err * err).sum(axis=1), xp.nan)
        loss = per_sample.mean()
        err *= 2.0 / n
        # z = p * (e - sum_k p_k e_k)
        z *= err - (z * err).sum(axis=1, keepdims=True)
        return loss

    def _valid_labels(self, y: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
        """(valid, safe_y): which labels lie in [0, classes), and the labels with every
        invalid one replaced by 0 (safe to index with). y: (N,), shape: (N, classes)."""
        n, classes = shape
        if y.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(y.shape)}")
        valid = (y >= 0) & (y < classes)
        return valid, self.xp.where(valid, y, 0)
