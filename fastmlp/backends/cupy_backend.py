"""The CUDA backend: CuPy arrays and fused ``ElementwiseKernel`` launches.

Each optimizer update is ONE kernel launch over the whole flat parameter buffer; each
kernel is built once (CuPy caches the compiled code per dtype signature, also on disk)
and takes its scalars by value, so a changing learning rate never recompiles anything.
Scalar expressions such as ``1 - beta2`` are computed in double precision on the host and
rounded once to the array dtype, exactly as the NumPy backend does, so float32 results
agree with the CPU's instead of differing by a float32 rounding of ``1 - beta2``.
Bias-add + activation, the activation gradient and the softmax cross-entropy gradient
(label smoothing included) are fused the same way. Importing this module imports CuPy: only
:func:`fastmlp.backends.get_backend` does that, and only when a CUDA device is asked for.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cupy
import numpy as np

from fastmlp.backends.base import (
    Backend,
    _check_formula_call,
    require_c_contiguous,
    smoothing_weights,
)
from fastmlp.backends.formulas import Formula

_ADD_SCALED = cupy.ElementwiseKernel(
    "T x, T alpha",
    "T y",
    """
    // y = y + alpha * x
    y += alpha * x;
    """,
    "fastmlp_add_scaled",
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

_ROW_SUM_EXP = cupy.ReductionKernel(
    "T z",
    "T total",
    "exp(z)",
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

_SMOOTHED_CROSS_ENTROPY_PER_SAMPLE = cupy.ElementwiseKernel(
    "raw T z, S y, T log_normalizer, T spread, int64 classes, T onehot_weight, T uniform, T nan",
    "T loss",
    """
    // loss_n = log_normalizer_n - sum_k q_nk z_nk, NaN for a label outside [0, classes), with
    // sum_k q_nk z_nk = (1 - eps) z_n,y_n + (eps / K) sum_k z_nk (spread_n = sum_k z_nk)
    loss = (y >= 0 && y < classes)
        ? log_normalizer - (onehot_weight * z[i * classes + y] + uniform * spread) : nan;
    """,
    "fastmlp_smoothed_cross_entropy_per_sample",
)

_SOFTMAX_CROSS_ENTROPY_GRAD = cupy.ElementwiseKernel(
    "raw S y, raw T log_normalizer, int64 classes, T onehot_weight, T uniform, T n",
    "T z",
    """
    // z = (softmax(z) - q) / N, with softmax(z) = exp(z - logsumexp_k z_k) and the target
    // q = onehot_weight * onehot(y) + uniform ((1 - eps) onehot(y) + eps / K; 1 and 0
    // without label smoothing); a label outside [0, classes) matches no column, so its
    // row gets no onehot term
    ptrdiff_t row = i / classes;
    T onehot = (i % classes) == y[row] ? onehot_weight : (T)0;
    z = (exp(z - log_normalizer[row]) - uniform - onehot) / n;
    """,
    "fastmlp_softmax_cross_entropy_grad",
)


# Page-locked staging buffers for uploads: a buffer is written again only after the copy
# queued from it has run, which waits only when the device is this many uploads behind.
PINNED_BUFFERS = 4


class _PinnedStaging:
    """A page-locked host buffer and the event recorded after the copy queued from it."""

    def __init__(self, nbytes: int) -> None:
        self.memory = cupy.cuda.alloc_pinned_memory(nbytes)
        self.nbytes = nbytes
        self.copied = cupy.cuda.Event(disable_timing=True)


class CupyBackend(Backend):
    """CuPy on one CUDA device; construction makes that device current."""

    name = "cupy"
    xp = cupy

    def __init__(self, device_id: int = 0) -> None:
        self.device_id = device_id
        self.device = f"cuda:{device_id}"
        cupy.cuda.Device(device_id).use()
        self._staging: list[_PinnedStaging | None] = [None] * PINNED_BUFFERS
        self._next_staging = 0
        self._uploaded: dict[tuple[int, np.dtype], Any] = {}  # (size, dtype) -> device array

    def to_numpy(self, a: Any) -> np.ndarray:
        return cupy.asnumpy(a)

    def upload(self, values: np.ndarray, dtype: Any) -> Any:
        """``values`` on the device without a host sync. ``cupy.asarray`` of a NumPy array
        copies from pageable memory, which waits for every queued kernel first (once per
        step, for a stack's per-model scalars); a copy from page-locked memory is queued
        on the stream like a kernel. So the values go through the next of
        ``PINNED_BUFFERS`` page-locked buffers (written once the copy queued from it has
        run) into a device array kept per size and dtype, which the stream's order keeps
        from being overwritten before the kernels queued earlier have read it."""
        host = np.ascontiguousarray(values, dtype=dtype).reshape(-1)
        key = (host.size, host.dtype)
        target = self._uploaded.get(key)
        if target is None:
            target = self._uploaded[key] = cupy.empty(host.size, dtype=host.dtype)
        if host.size == 0:
            return target
        index = self._next_staging
        self._next_staging = (index + 1) % PINNED_BUFFERS
        staging = self._staging[index]
        if staging is not None:
            staging.copied.synchronize()  # the copy queued from it has run
        if staging is None or staging.nbytes < host.nbytes:
            staging = self._staging[index] = _PinnedStaging(host.nbytes)
        staged = np.frombuffer(staging.memory, host.dtype, host.size)
        staged[...] = host
        stream = cupy.cuda.get_current_stream()
        target.set(staged, stream=stream)
        staging.copied.record(stream)
        return target

    def rng(self, seed: int | None = None) -> Any:
        return cupy.random.RandomState(seed)

    def synchronize(self) -> None:
        cupy.cuda.Device(self.device_id).synchronize()

    def available_memory(self) -> int | None:
        # free device memory plus what CuPy's pool holds unused
        free, _total = cupy.cuda.runtime.memGetInfo()
        return int(free) + int(cupy.get_default_memory_pool().free_bytes())

    def add_scaled_(self, y: Any, x: Any, alpha: float) -> None:
        _ADD_SCALED(x, alpha, y)

    # ------------------------------------------------------------ formulas

    def formula_functions(self) -> dict[str, Callable[..., Any]]:
        from cupyx.scipy.special import erf

        return {"erf": erf}

    def run_formula_(
        self,
        formula: Formula,
        arrays: Sequence[Any],
        scalars: Mapping[str, float],
        row_vectors: tuple[str, ...] = (),
    ) -> None:
        _check_formula_call(formula, arrays, scalars, row_vectors)
        kernel = elementwise_kernel(formula)
        updated = set(formula.updates)
        inputs = [a for name, a in zip(formula.arrays, arrays) if name not in updated]
        outputs = [a for name, a in zip(formula.arrays, arrays) if name in updated]
        kernel(*inputs, *(scalars[name] for name in formula.scalars), *outputs)

    def bind_formula(
        self,
        formula: Formula,
        scalars: Mapping[str, float],
        dtype: Any,
        ndim: int,
        row_vectors: tuple[str, ...] = (),
    ) -> Callable[..., None]:
        kernel = elementwise_kernel(formula)
        fixed = dict(scalars)
        updated = set(formula.updates)
        reads = [index for index, name in enumerate(formula.arrays) if name not in updated]
        writes = [index for index, name in enumerate(formula.arrays) if name in updated]
        values = [fixed[name] for name in formula.scalars]

        def bound(*arrays: Any) -> None:
            _check_formula_call(formula, arrays, fixed, row_vectors)
            kernel(*[arrays[i] for i in reads], *values, *[arrays[i] for i in writes])

        return bound

    def flush_subnormals_(self, x: Any, threshold: float) -> None:
        _FLUSH_SUBNORMALS(threshold, x)

    # ------------------------------------------------------------ network math

    def uniform_(self, out: Any, rng: Any) -> None:
        # cuRAND writes a fresh array from CuPy's memory pool: no host sync, no malloc
        out[...] = rng.random_sample(out.shape, dtype=out.dtype)

    def cross_entropy_(
        self, z: Any, y: Any, label_smoothing: float = 0.0, sample_losses: Any = None
    ) -> Any:
        require_c_contiguous(z, "logits")
        n, classes = z.shape
        if y.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(y.shape)}")
        onehot_weight, uniform = smoothing_weights(label_smoothing, classes)
        # z = z - max_k z_k first (the loss and its gradient do not change), so that
        # log_normalizer is not rounded to the precision of a huge max_k z_k
        z -= z.max(axis=1, keepdims=True)
        # log_normalizer = log sum_k exp(z_k)
        log_normalizer = cupy.log(_ROW_SUM_EXP(z, axis=1))
        flat = z.reshape(-1)
        if label_smoothing:
            # loss = mean_n [ log_normalizer_n - (1 - eps) z_n,y_n - (eps / K) sum_k z_nk ]
            per_sample = _SMOOTHED_CROSS_ENTROPY_PER_SAMPLE(
                flat, y, log_normalizer, z.sum(axis=1), classes, onehot_weight, uniform, math.nan
            )
        else:
            # loss = mean_n [ log_normalizer_n - z_n,y_n ]
            per_sample = _CROSS_ENTROPY_PER_SAMPLE(flat, y, log_normalizer, classes, math.nan)
        loss = per_sample.mean()
        if sample_losses is not None:
            sample_losses[...] = per_sample
        _SOFTMAX_CROSS_ENTROPY_GRAD(y, log_normalizer, classes, onehot_weight, uniform, n, z)
        return loss


@functools.cache
def elementwise_kernel(formula: Formula) -> Any:
    """The CuPy ElementwiseKernel of a formula: read-only arrays and the scalars as inputs,
    the updated arrays as outputs (read and written), the body its C translation. Built
    once per formula; CuPy compiles it per dtype and caches the binary on disk."""
    updated = set(formula.updates)
    inputs = [f"T {name}" for name in formula.arrays if name not in updated]
    inputs += [f"T {name}" for name in formula.scalars]
    outputs = [f"T {name}" for name in formula.arrays if name in updated]
    return cupy.ElementwiseKernel(
        ", ".join(inputs), ", ".join(outputs), formula.c_body(), f"fastmlp_{formula.name}"
    )
