"""The CPU backend: NumPy ufuncs with ``out=`` into preallocated scratch buffers.

Every kernel here computes what the reference body in :mod:`fastmlp.backends.base`
computes, one ufunc pass at a time, writing into the caller's arrays or into scratch
buffers that are allocated once per (role, shape, dtype) and reused: a steady-state
training step allocates no array memory (``tests/test_no_allocation.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastmlp.backends.base import Backend, adam_scalars, nadam_scalars


class NumpyBackend(Backend):
    """NumPy on the host CPU."""

    name = "numpy"
    device = "cpu"
    xp = np

    def __init__(self) -> None:
        self._scratch_buffers: dict[tuple[str, tuple[int, ...], np.dtype], np.ndarray] = {}

    def _scratch(self, role: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A reusable buffer for one role in a kernel (allocated on first use)."""
        key = (role, shape, np.dtype(dtype))
        buffer = self._scratch_buffers.get(key)
        if buffer is None:
            buffer = np.empty(shape, dtype=dtype)
            self._scratch_buffers[key] = buffer
        return buffer

    def _row_indices(self, n: int, classes: int) -> np.ndarray:
        """Flat offsets of the start of each row of an (n, classes) array: [0, C, 2C, ...]."""
        key = ("row_offsets", (n, classes), np.dtype(np.intp))
        offsets = self._scratch_buffers.get(key)
        if offsets is None:
            offsets = np.arange(n, dtype=np.intp) * classes
            self._scratch_buffers[key] = offsets
        return offsets

    def _label_positions(self, y: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, Any]:
        """Flat positions n * classes + y_n of the true-class entries of an (n, classes) array,
        and the mask of labels outside [0, classes) (None when every label is valid).

        Labels of any integer dtype (uint64 included); an invalid label's position points at
        its row's first entry, so indexing with the positions never leaves the array.
        """
        n, classes = shape
        if y.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(y.shape)}")
        positions = self._scratch("label_positions", y.shape, np.intp)
        invalid = self._scratch("invalid_labels", y.shape, np.bool_)
        np.copyto(positions, y, casting="unsafe")
        # invalid = y_n outside [0, classes): negative labels are huge when read unsigned
        np.greater_equal(positions.view(np.uintp), classes, out=invalid)
        if invalid.any():
            np.copyto(positions, 0, where=invalid)
        else:
            invalid = None
        # positions = n * classes + y_n
        np.add(positions, self._row_indices(n, classes), out=positions)
        return positions, invalid

    def rng(self, seed: int | None = None) -> np.random.Generator:
        return np.random.default_rng(seed)

    def gather_(self, out: Any, x: Any, indices: Any) -> None:
        # mode="clip" skips the bounds-checked buffered path of the default mode="raise";
        # the indices come from a permutation, so they are always in range.
        np.take(x, indices, axis=0, out=out, mode="clip")

    def add_scaled_(self, y: Any, x: Any, alpha: float) -> None:
        s = self._scratch("update", y.shape, y.dtype)
        # y = y + alpha * x
        np.multiply(x, alpha, out=s)
        np.add(y, s, out=y)

    # ------------------------------------------------------- optimizer updates

    def sgd_(self, p: Any, g: Any, lr: float) -> None:
        s = self._scratch("update", p.shape, p.dtype)
        # p = p - lr * g
        np.multiply(g, lr, out=s)
        np.subtract(p, s, out=p)

    def momentum_(self, p: Any, g: Any, b: Any, lr: float, momentum: float) -> None:
        s = self._scratch("update", p.shape, p.dtype)
        # b = momentum * b + g
        np.multiply(b, momentum, out=b)
        np.add(b, g, out=b)
        # p = p - lr * b
        np.multiply(b, lr, out=s)
        np.subtract(p, s, out=p)

    def nag_(self, p: Any, g: Any, b: Any, lr: float, momentum: float) -> None:
        s = self._scratch("update", p.shape, p.dtype)
        # b = momentum * b + g
        np.multiply(b, momentum, out=b)
        np.add(b, g, out=b)
        # p = p - lr * (g + momentum * b)
        np.multiply(b, momentum, out=s)
        np.add(s, g, out=s)
        np.multiply(s, lr, out=s)
        np.subtract(p, s, out=p)

    def rmsprop_(self, p: Any, g: Any, v: Any, lr: float, beta: float, eps: float) -> None:
        s = self._scratch("update", p.shape, p.dtype)
        # v = beta * v + (1 - beta) * g^2
        np.multiply(v, beta, out=v)
        np.multiply(g, g, out=s)
        np.multiply(s, 1.0 - beta, out=s)
        np.add(v, s, out=v)
        # p = p - lr * g / (sqrt(v) + eps)
        np.sqrt(v, out=s)
        np.add(s, eps, out=s)
        np.divide(g, s, out=s)
        np.multiply(s, lr, out=s)
        np.subtract(p, s, out=p)

    def _update_moments(self, g: Any, m: Any, v: Any, beta1: float, beta2: float) -> None:
        """The Adam-family moment updates shared by :meth:`adam_` and :meth:`nadam_`."""
        s = self._scratch("update", g.shape, g.dtype)
        # m = beta1 * m + (1 - beta1) * g
        np.multiply(m, beta1, out=m)
        np.multiply(g, 1.0 - beta1, out=s)
        np.add(m, s, out=m)
        # v = beta2 * v + (1 - beta2) * g^2
        np.multiply(v, beta2, out=v)
        np.multiply(g, g, out=s)
        np.multiply(s, 1.0 - beta2, out=s)
        np.add(v, s, out=v)

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
        s = self._scratch("update", p.shape, p.dtype)
        step_size, bias_correction2_sqrt = adam_scalars(lr, beta1, beta2, step)
        self._update_moments(g, m, v, beta1, beta2)
        # denom = sqrt(v) / sqrt(1 - beta2^t) + eps
        np.sqrt(v, out=s)
        np.divide(s, bias_correction2_sqrt, out=s)
        np.add(s, eps, out=s)
        # p = p - (lr / (1 - beta1^t)) * m / denom
        np.divide(m, s, out=s)
        np.multiply(s, step_size, out=s)
        np.subtract(p, s, out=p)

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
        denom = self._scratch("denominator", p.shape, p.dtype)
        s = self._scratch("update", p.shape, p.dtype)
        bias_correction2, grad_step, momentum_step = nadam_scalars(
            lr, beta2, step, mu, mu_next, mu_product
        )
        self._update_moments(g, m, v, beta1, beta2)
        # denom = sqrt(v / (1 - beta2^t)) + eps
        np.divide(v, bias_correction2, out=denom)
        np.sqrt(denom, out=denom)
        np.add(denom, eps, out=denom)
        # p = p - lr (1 - mu_t) / (1 - prod_t) * g / denom
        np.divide(g, denom, out=s)
        np.multiply(s, grad_step, out=s)
        np.subtract(p, s, out=p)
        # p = p - lr mu_{t+1} / (1 - prod_t mu_{t+1}) * m / denom
        np.divide(m, denom, out=s)
        np.multiply(s, momentum_step, out=s)
        np.subtract(p, s, out=p)

    def flush_subnormals_(self, x: Any, threshold: float) -> None:
        magnitude = self._scratch("update", x.shape, x.dtype)
        tiny = self._scratch("tiny_mask", x.shape, np.bool_)
        # x = 0 where |x| < threshold
        np.abs(x, out=magnitude)
        np.less(magnitude, threshold, out=tiny)
        np.copyto(x, 0, where=tiny)

    # ------------------------------------------------------------ network math

    def bias_activation_(self, z: Any, b: Any, activation: str) -> None:
        # z = z + b
        np.add(z, b, out=z)
        if activation == "identity":
            return
        if activation == "relu":
            # z = max(z, 0)
            np.maximum(z, 0, out=z)
        elif activation == "tanh":
            # z = tanh(z)
            np.tanh(z, out=z)
        elif activation == "sigmoid":
            # z = 1 / (1 + exp(-z)); exp overflows to inf only where the result is 0
            with np.errstate(over="ignore"):
                np.negative(z, out=z)
                np.exp(z, out=z)
            np.add(z, 1.0, out=z)
            np.reciprocal(z, out=z)
        else:
            raise ValueError(f"unknown activation {activation!r}")

    def activation_grad_(self, delta: Any, a: Any, activation: str) -> None:
        if activation == "identity":
            return
        if activation == "relu":
            inactive = self._scratch("inactive", a.shape, np.bool_)
            # delta = delta * [a > 0]
            np.less_equal(a, 0, out=inactive)
            np.copyto(delta, 0, where=inactive)
            return
        s = self._scratch("activation_slope", a.shape, a.dtype)
        if activation == "tanh":
            # delta = delta * (1 - a^2)
            np.multiply(a, a, out=s)
            np.subtract(1.0, s, out=s)
        elif activation == "sigmoid":
            # delta = delta * a * (1 - a)
            np.subtract(1.0, a, out=s)
            np.multiply(s, a, out=s)
        else:
            raise ValueError(f"unknown activation {activation!r}")
        np.multiply(delta, s, out=delta)

    def softmax_(self, z: Any) -> None:
        row = self._scratch("row", (z.shape[0], 1), z.dtype)
        # z = exp(z - max_k z_k) / sum_k exp(z - max_k z_k)
        np.max(z, axis=1, keepdims=True, out=row)
        np.subtract(z, row, out=z)
        np.exp(z, out=z)
        np.sum(z, axis=1, keepdims=True, out=row)
        np.divide(z, row, out=z)

    def cross_entropy_(self, z: Any, y: Any) -> Any:
        n, classes = z.shape
        row = self._scratch("row", (n, 1), z.dtype)
        log_normalizer = self._scratch("log_normalizer", (n, 1), z.dtype)
        per_sample = self._scratch("per_sample", (n,), z.dtype)
        true_class, invalid = self._label_positions(y, z.shape)
        flat = z.reshape(-1)
        loss = np.empty((), dtype=z.dtype)
        # z = z - max_k z_k
        np.max(z, axis=1, keepdims=True, out=row)
        np.subtract(z, row, out=z)
        # loss = mean_n [ log sum_k exp(z_nk) - z_n,y_n ]  (NaN for a label out of range)
        np.take(flat, true_class, out=per_sample)
        np.exp(z, out=z)
        np.sum(z, axis=1, keepdims=True, out=row)
        np.log(row, out=log_normalizer)
        np.subtract(log_normalizer.reshape(-1), per_sample, out=per_sample)
        if invalid is not None:
            np.copyto(per_sample, np.nan, where=invalid)
        np.mean(per_sample, out=loss)
        # z = (softmax(z) - onehot(y)) / N
        np.divide(z, row, out=z)
        self._subtract_onehot(flat, true_class, invalid, per_sample)
        np.divide(z, n, out=z)
        return loss

    def _subtract_onehot(
        self, flat: np.ndarray, true_class: np.ndarray, invalid: Any, scratch: np.ndarray
    ) -> None:
        """``flat[true_class] -= 1`` where the label is valid (``scratch``: (N,) work array)."""
        np.take(flat, true_class, out=scratch)
        if invalid is None:
            np.subtract(scratch, 1.0, out=scratch)
        else:
            np.subtract(scratch, 1.0, out=scratch, where=~invalid)
        np.put(flat, true_class, scratch)

    def mean_squared_error_(self, z: Any, y: Any) -> Any:
        n, classes = z.shape
        err = self._scratch("error", z.shape, z.dtype)
        row = self._scratch("row", (n, 1), z.dtype)
        per_sample = self._scratch("per_sample", (n,), z.dtype)
        true_class, invalid = self._label_positions(y, z.shape)
        loss = np.empty((), dtype=z.dtype)
        self.softmax_(z)
        # e = p - onehot(y)
        np.copyto(err, z)
        err_flat = err.reshape(-1)
        self._subtract_onehot(err_flat, true_class, invalid, per_sample)
        # loss = sum_nk e_nk^2 / N  (NaN when a label is out of range)
        loss[()] = np.vdot(err_flat, err_flat) / n if invalid is None else np.nan
        # e = dLoss/dp = 2 (p - onehot) / N
        np.multiply(err, 2.0 / n, out=err)
        # z = p * (e - sum_k p_k e_k)
        s = self._scratch("products", z.shape, z.dtype)
        np.multiply(z, err, out=s)
        np.sum(s, axis=1, keepdims=True, out=row)
        np.subtract(err, row, out=err)
        np.multiply(z, err, out=z)
        return loss
