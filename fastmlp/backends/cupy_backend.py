"""The CUDA backend: CuPy arrays and fused ``ElementwiseKernel`` launches.

Each optimizer update is ONE kernel launch over the whole flat parameter buffer; each
kernel is built once (CuPy caches the compiled code per dtype signature, also on disk)
and takes its scalars by value, so a changing learning rate never recompiles anything.
Scalar expressions such as ``1 - beta2`` are computed in double precision on the host and
rounded once to the array dtype, exactly as the NumPy backend does, so float32 results
agree with the CPU's instead of differing by a float32 rounding of ``1 - beta2``.
Bias-add + activation and the activation gradient are fused the same way, and the whole
softmax cross-entropy (row max, loss, whether the row is classified correctly, gradient;
label smoothing included) is one launch with a row per element. Importing this module
imports CuPy: only
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
    per_model_scalar_table,
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

_SOFTMAX_CROSS_ENTROPY_ROWS = cupy.ElementwiseKernel(
    "S y, int64 classes, T onehot_weight, T uniform, T n, T nan",
    "T loss, int64 hit, raw T z",
    """
    // One row of the (N, classes) logits z (flat) per element i, in one launch: the loss
    // loss_i = log sum_k exp(s_k) - sum_k q_k s_k with s = z - max_k z_k (NaN for a label
    // outside [0, classes)), hit_i = [argmax_k z_k = y] with NumPy's argmax (the first of
    // equal logits, the first NaN), and z = (softmax(z) - q) / N, where the target is
    // q = onehot_weight * onehot(y) + uniform ((1 - eps) onehot(y) + eps / K; 1 and 0
    // without label smoothing)
    const ptrdiff_t start = i * classes;
    T top = z[start];
    T best_value = top;
    ptrdiff_t best = 0;
    for (ptrdiff_t k = 1; k < classes; ++k) {
        const T value = z[start + k];
        if (value > top) top = value;
        if (best_value == best_value && (value > best_value || value != value)) {
            best_value = value;
            best = k;
        }
    }
    // s = z - max_k z_k (kept in z); total = sum_k exp(s_k); spread = sum_k s_k
    T total = 0;
    T spread = 0;
    for (ptrdiff_t k = 0; k < classes; ++k) {
        const T shifted = z[start + k] - top;
        z[start + k] = shifted;
        total += exp(shifted);
        spread += shifted;
    }
    const T log_normalizer = log(total);
    const bool valid = y >= 0 && y < classes;
    const T at_label = valid ? z[start + y] : (T)0;
    const T weighted = uniform != 0 ? onehot_weight * at_label + uniform * spread : at_label;
    loss = valid ? log_normalizer - weighted : nan;
    hit = valid && best == y;
    for (ptrdiff_t k = 0; k < classes; ++k) {
        const T onehot = (valid && k == y) ? onehot_weight : (T)0;
        z[start + k] = (exp(z[start + k] - log_normalizer) - uniform - onehot) / n;
    }
    """,
    "fastmlp_softmax_cross_entropy_rows",
)


class CupyBackend(Backend):
    """CuPy on one CUDA device; construction makes that device current."""

    name = "cupy"
    xp = cupy

    def __init__(self, device_id: int = 0) -> None:
        self.device_id = device_id
        self.device = f"cuda:{device_id}"
        cupy.cuda.Device(device_id).use()
        self._layouts: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}  # see _group_layout

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
        inputs, outputs = _reads_and_writes(formula, arrays)
        elementwise_kernel(formula)(*inputs, *(scalars[name] for name in formula.scalars), *outputs)

    def run_formula_per_model_(
        self,
        formula: Formula,
        arrays: Sequence[Any],
        groups: Sequence[tuple[int, int, int]],
        scalars: Sequence[Sequence[Mapping[str, float]]],
    ) -> None:
        """One launch for every group of the stack (``per_model_kernel``): the models'
        scalars as one (tables, scalars, K) table, copied to the device once per step
        (``cupy.asarray`` stages it through page-locked memory and does not wait for the
        device); the groups' starts, widths and tables made once per layout."""
        if not groups:
            return
        first = arrays[0]
        for array in arrays[1:]:
            if array.shape != first.shape or array.dtype != first.dtype:
                _check_formula_call(formula, arrays, dict.fromkeys(formula.scalars), ())
        n_models = len(scalars[0])
        table, tables = per_model_scalar_table(formula, scalars)
        values = cupy.asarray(table.reshape(-1), dtype=first.dtype)
        layout = self._group_layout(tuple(groups), tuple(tables), n_models, first.shape[0])
        inputs, outputs = _reads_and_writes(formula, arrays)
        per_model_kernel(formula)(*layout, len(groups), n_models, values, *inputs, *outputs)

    def _group_layout(
        self,
        groups: tuple[tuple[int, int, int], ...],
        tables: tuple[int, ...],
        n_models: int,
        size: int,
    ) -> tuple[Any, Any, Any]:
        """(starts, widths, tables) of a stack's groups in the order of their starts, on
        the device; checked and copied once per layout (a stack's groups stay the same):
        the kernel indexes by them unchecked, so groups that do not tile the ``size``
        elements in rows of ``n_models`` x their width are a ValueError."""
        key = (groups, tables, n_models, size)
        found = self._layouts.get(key)
        if found is None:
            # by start, an empty group before the group starting where it is
            order = sorted(range(len(groups)), key=lambda g: groups[g][:2])
            ordered = [groups[g] for g in order]
            if (
                ordered[0][0] != 0
                or ordered[-1][1] != size
                or any(a[1] != b[0] for a, b in zip(ordered, ordered[1:]))
            ):
                raise ValueError("per-model groups must tile the arrays without gaps or overlaps")
            if n_models < 1 or any(
                width < 1 or (stop - start) % (n_models * width) for start, stop, width in groups
            ):
                raise ValueError(f"each per-model group must be rows of {n_models} x its width")
            found = self._layouts[key] = tuple(
                cupy.asarray(np.array(column, dtype=np.int64))
                for column in ([groups[g][0] for g in order], [groups[g][2] for g in order],
                               [tables[g] for g in order])
            )  # fmt: skip
        return found

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
        values = [fixed[name] for name in formula.scalars]

        def bound(*arrays: Any) -> None:
            _check_formula_call(formula, arrays, fixed, row_vectors)
            inputs, outputs = _reads_and_writes(formula, arrays)
            kernel(*inputs, *values, *outputs)

        return bound

    def flush_subnormals_(self, x: Any, threshold: float) -> None:
        _FLUSH_SUBNORMALS(threshold, x)

    # ------------------------------------------------------------ network math

    def uniform_(self, out: Any, rng: Any) -> None:
        # cuRAND writes a fresh array from CuPy's memory pool: no host sync, no malloc
        out[...] = rng.random_sample(out.shape, dtype=out.dtype)

    def cross_entropy_(
        self,
        z: Any,
        y: Any,
        label_smoothing: float = 0.0,
        sample_losses: Any = None,
        correct: Any = None,
    ) -> Any:
        require_c_contiguous(z, "logits")
        n, classes = z.shape
        if y.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(y.shape)}")
        if classes == 0 and n > 0:
            raise ValueError("cross-entropy: logits need at least one class")
        onehot_weight, uniform = smoothing_weights(label_smoothing, classes)
        per_sample = cupy.empty(n, dtype=z.dtype)
        hits = cupy.empty(n, dtype=cupy.int64)
        # one launch for the row max, the loss, the hits and the gradient, in place in z
        _SOFTMAX_CROSS_ENTROPY_ROWS(
            y, classes, onehot_weight, uniform, n, math.nan, per_sample, hits, z.reshape(-1)
        )
        loss = per_sample.mean()
        if sample_losses is not None:
            sample_losses[...] = per_sample
        if correct is not None:
            correct += hits.sum()
        return loss


def _reads_and_writes(formula: Formula, arrays: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """The formula's arrays split as its kernels take them: those it only reads (inputs),
    then those it updates (outputs), each in the formula's order."""
    updated = formula.updates
    inputs = [array for name, array in zip(formula.arrays, arrays) if name not in updated]
    outputs = [array for name, array in zip(formula.arrays, arrays) if name in updated]
    return inputs, outputs


@functools.cache
def per_model_kernel(formula: Formula) -> Any:
    """The CuPy ElementwiseKernel that runs ``formula`` over every group of a stack in one
    launch (``CupyBackend.run_formula_per_model_``): element i finds its group (the groups
    tile the flat arrays in order, ``q_starts``) and its model k, then reads model k's
    scalars from ``q_values`` (tables, scalars, K) at its group's table, and runs the
    formula's body with them, as ``elementwise_kernel``'s body runs with scalars passed by
    value. The kernel's own names start with q_: no formula name can clash."""
    updated = set(formula.updates)
    inputs = ["raw int64 q_starts", "raw int64 q_widths", "raw int64 q_tables",
              "int64 q_groups", "int64 q_models", "raw T q_values"]  # fmt: skip
    inputs += [f"T {name}" for name in formula.arrays if name not in updated]
    outputs = [f"T {name}" for name in formula.arrays if name in updated]
    count = len(formula.scalars)
    lookup = [
        "// the group of element i, its model k, and where k's scalars of that group are",
        "ptrdiff_t q_group = 0;",
        "while (q_group + 1 < q_groups && i >= q_starts[q_group + 1]) ++q_group;",
        "const ptrdiff_t q_k = ((i - q_starts[q_group]) / q_widths[q_group]) % q_models;",
        f"const ptrdiff_t q_first = q_tables[q_group] * {count} * q_models + q_k;",
    ]
    lookup += [f"const T {name} = q_values[q_first + {index} * q_models];"
               for index, name in enumerate(formula.scalars)]  # fmt: skip
    return cupy.ElementwiseKernel(
        ", ".join(inputs),
        ", ".join(outputs),
        "\n".join([*lookup, formula.c_body()]),
        f"fastmlp_{formula.name}_per_model",
    )


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
