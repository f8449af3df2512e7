"""The CPU backend with compiled kernels: one pass over the data where NumPy needs many.

A NumPy optimizer update is a sequence of ``out=`` ufunc passes over the flat buffers
(Adam: 13 passes over 4-5 arrays), each bound by cache bandwidth; so are an activation and
its gradient. When Numba is installed (``pip install "fastmlp[jit]"``), :class:`NumbaBackend`
compiles every per-element formula (:mod:`fastmlp.backends.formulas`: optimizer updates,
bias + activation, activation gradients, dropout) into one loop, generated from the
formula's declaration, and has hand-written loops for the bias gradients, the L2 term, the
subnormal flush and softmax cross-entropy (label smoothing fused in); the rest of
:class:`~fastmlp.backends.numpy_backend.NumpyBackend` is used as it is.

Every loop evaluates, per element, exactly the operations of the NumPy backend in the same
order and precision (scalars and literals are rounded once to the array dtype, as NumPy
does; Numba does not contract to FMA or reassociate without ``fastmath``), so the two
backends give bit-identical results wherever no transcendental function is involved
(``exp``, ``tanh``, ``erf``: libraries differ in their last bit), and agree to rounding
otherwise (``tests/test_numba_backend.py``). Generated sources and compiled code are
cached on disk (:func:`kernel_cache_directory`).

Numba does not check bounds, so every kernel checks its arrays' sizes before its loop
(a ValueError, never an out-of-bounds access) and the loss kernel gives a label outside
``[0, classes)`` a NaN loss instead of indexing with it (and refuses logits of no class).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from fastmlp.backends.base import per_model_scalar_table, smoothing_weights
from fastmlp.backends.formulas import Formula, numba_per_model_source, numba_source
from fastmlp.backends.numpy_backend import NumpyBackend, mean_into
from fastmlp.files import atomic_write_text

# error_model="numpy": IEEE division (x / 0 = inf) instead of Python's ZeroDivisionError
# check, which lets LLVM vectorise the loops. No `parallel`: a second thread pool would
# fight BLAS's (and PyTorch's, in the same process) for the cores.
_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


@njit(**_JIT)
def _add_scaled(y, x, alpha):  # pragma: no cover - compiled
    if x.shape[0] != y.shape[0]:
        raise ValueError("fused update: every buffer must have the length of params")
    for i in range(y.shape[0]):
        # y = y + alpha * x
        y[i] = y[i] + x[i] * alpha


@njit(**_JIT)
def _flush_subnormals(x, threshold):  # pragma: no cover - compiled
    for i in range(x.shape[0]):
        # x = 0 where |x| < threshold
        if abs(x[i]) < threshold:
            x[i] = 0


@njit(**_JIT)
def _column_sums(out, x):  # pragma: no cover - compiled
    if out.shape[0] != x.shape[1]:
        raise ValueError("column sums: out must have one entry per column")
    # out_k = sum_n x_nk, row by row (the order NumPy's sum over axis 0 uses)
    out[:] = 0
    if x.shape[0] > 0:
        out[:] = x[0]
    for row in range(1, x.shape[0]):
        for col in range(x.shape[1]):
            out[col] = out[col] + x[row, col]


@njit(**_JIT)
def _softmax_cross_entropy(z, y, per_sample, onehot_weight, uniform, correct):  # pragma: no cover
    # the target q = onehot_weight * onehot(y) + uniform: (1 - eps) onehot(y) + eps / K with
    # label smoothing eps, onehot(y) without (onehot_weight 1, uniform 0); correct[0] counts
    # the rows whose argmax (NumPy's: the first of equal logits, the first NaN) is the label
    n, classes = z.shape
    if y.shape[0] != n or per_sample.shape[0] != n:
        raise ValueError("cross-entropy: labels and per-sample losses need one entry per row")
    if classes == 0 and n > 0:
        raise ValueError("cross-entropy: logits need at least one class")
    if correct.shape[0] != 1:
        raise ValueError("cross-entropy: the count of correct rows is one entry")
    smoothing = uniform != 0
    hits = 0
    for row in range(n):
        # shifted = z - max_k z_k; best = argmax_k z_k
        top = z[row, 0]
        best, best_value = 0, top
        for col in range(1, classes):
            value = z[row, col]
            if value > top:
                top = value
            if best_value == best_value and (value > best_value or value != value):
                best, best_value = col, value
        label = y[row]
        if label == best:
            hits += 1
        valid = label >= 0 and label < classes
        # shifted_k = z_k - max_k z_k; total = sum_k exp(shifted_k); spread = sum_k shifted_k;
        # z = exp(shifted) (each exp computed once, reused for the gradient)
        total = 0.0
        spread = 0.0
        at_label = top  # shifted_y (set below when the label is valid), in z's dtype
        for col in range(classes):
            shifted = z[row, col] - top
            spread += shifted
            if col == label:
                at_label = shifted
            z[row, col] = math.exp(shifted)
            total += z[row, col]
        if not valid:
            per_sample[row] = math.nan
        elif smoothing:
            # sum_k q_k shifted_k = (1 - eps) shifted_y + (eps / K) sum_k shifted_k
            weighted = onehot_weight * at_label + uniform * spread
            # loss_n = log sum_k exp(shifted_k) - sum_k q_k shifted_k
            per_sample[row] = math.log(total) - weighted
        else:
            # loss_n = log sum_k exp(shifted_k) - shifted_y
            per_sample[row] = math.log(total) - at_label
        # z = (softmax(z) - q) / N
        if smoothing:
            for col in range(classes):
                z[row, col] = z[row, col] / total - uniform
            if valid:
                z[row, label] = z[row, label] - onehot_weight
        else:
            for col in range(classes):
                z[row, col] = z[row, col] / total
            if valid:
                z[row, label] = z[row, label] - 1
        for col in range(classes):
            z[row, col] = z[row, col] / n
    correct[0] = correct[0] + hits


class NumbaBackend(NumpyBackend):
    """NumPy on the CPU, with every per-element formula and the loss compiled into loops."""

    name = "numba"

    def __init__(self) -> None:
        super().__init__()
        # (formula, ndim, row vectors, dtype) -> (compiled loop or None, literals)
        self._kernels: dict[tuple[Any, ...], tuple[Any, tuple[Any, ...]]] = {}

    def add_scaled_(self, y: Any, x: Any, alpha: float) -> None:
        _add_scaled(y, x, y.dtype.type(alpha))

    def run_formula_(
        self,
        formula: Formula,
        arrays: Sequence[Any],
        scalars: Mapping[str, float],
        row_vectors: tuple[str, ...] = (),
    ) -> None:
        first = arrays[0]
        key = (formula, first.ndim, row_vectors, first.dtype)
        found = self._kernels.get(key)
        if found is None:
            kernel = _loop(formula, first.ndim, row_vectors)
            found = self._kernels[key] = (kernel, _literals(formula, first.dtype))
        kernel, literals = found
        if kernel is None:  # NumPy's is faster, no writable cache, or an unusual shape
            super().run_formula_(formula, arrays, scalars, row_vectors)
            return
        # scalars and literals in the arrays' dtype (the kernel checks the shapes itself)
        if formula.scalars:
            scalar = first.dtype.type
            kernel(*[scalar(scalars[name]) for name in formula.scalars], *literals, *arrays)
        else:
            kernel(*literals, *arrays)

    def run_formula_per_model_(
        self,
        formula: Formula,
        arrays: Sequence[Any],
        groups: Sequence[tuple[int, int, int]],
        scalars: Sequence[Sequence[Mapping[str, float]]],
    ) -> None:
        kernel = _per_model_loop(formula)
        if kernel is None or not groups:
            super().run_formula_per_model_(formula, arrays, groups, scalars)
            return
        dtype = arrays[0].dtype
        table, tables = per_model_scalar_table(formula, scalars)
        values = table.astype(dtype)
        starts, rows, widths, which = _group_arrays(tuple(groups), len(scalars[0]), tuple(tables))
        # one launch for every group of the stack
        kernel(starts, rows, widths, which, values, *_literals(formula, dtype), *arrays)

    def bind_formula(
        self,
        formula: Formula,
        scalars: Mapping[str, float],
        dtype: Any,
        ndim: int,
        row_vectors: tuple[str, ...] = (),
    ) -> Callable[..., None]:
        kernel = _loop(formula, ndim, row_vectors)
        if kernel is None:
            return super().bind_formula(formula, scalars, dtype, ndim, row_vectors)
        dtype = np.dtype(dtype)
        # the scalars and literals in the arrays' dtype; the kernel checks the shapes
        values = [dtype.type(scalars[name]) for name in formula.scalars]
        return functools.partial(kernel, *values, *_literals(formula, dtype))

    def flush_subnormals_(self, x: Any, threshold: float) -> None:
        _flush_subnormals(x, x.dtype.type(threshold))

    def column_sums_(self, out: Any, x: Any) -> None:
        _column_sums(out, x)

    def cross_entropy_(
        self,
        z: Any,
        y: Any,
        label_smoothing: float = 0.0,
        sample_losses: Any = None,
        correct: Any = None,
    ) -> Any:
        per_sample = self._sample_losses(sample_losses, z.shape[0], z.dtype)
        loss = np.empty((), dtype=z.dtype)
        # the target's weights (1 - eps, eps / K), rounded once to the logits' dtype
        onehot_weight, uniform = smoothing_weights(label_smoothing, z.shape[1])
        scalar = z.dtype.type
        # the loop counts the correct rows into the training loop's 0-d int64 counter
        # itself; any other counter gets the shared count (the loop's then goes to scratch)
        fused = correct is not None and correct.shape == () and correct.dtype == np.int64
        if not fused:
            self._count_correct(correct, z, y)
        hits = correct.reshape(1) if fused else self._scratch("hits", (1,), np.int64)
        _softmax_cross_entropy(z, y, per_sample, scalar(onehot_weight), scalar(uniform), hits)
        mean_into(loss, per_sample)
        return loss


# NumPy evaluates these with SIMD code, several times faster than Numba's scalar calls.
NUMPY_FASTER = frozenset({"exp", "expm1", "log", "log1p", "tanh"})


def worth_compiling(formula: Formula) -> bool:
    """Whether a compiled loop beats NumPy's ufunc sequence: always, unless the formula
    calls a function NumPy vectorises much better (measured: ``tanh`` in a loop is ~10x
    slower than ``np.tanh``) and none that NumPy lacks (``erf``)."""
    functions = formula.function_names
    return "erf" in functions or not functions & NUMPY_FASTER


@functools.cache
def _loop(formula: Formula, ndim: int, row_vectors: tuple[str, ...]) -> Any:
    """The compiled loop to run ``formula`` with, or None to use NumPy's ufuncs."""
    return compiled(formula, ndim, row_vectors) if worth_compiling(formula) else None


@functools.lru_cache(maxsize=64)
def _group_arrays(
    groups: tuple[tuple[int, int, int], ...], n_models: int, tables: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(starts, rows, widths, which table) of a stack's groups, as the per-model kernel
    takes them; made once per layout."""
    starts = np.array([start for start, _, _ in groups], dtype=np.int64)
    rows = np.array([(stop - start) // (n_models * width) for start, stop, width in groups],
                    dtype=np.int64)  # fmt: skip
    widths = np.array([width for _, _, width in groups], dtype=np.int64)
    return starts, rows, widths, np.array(tables, dtype=np.int64)


def _per_model_loop(formula: Formula) -> Any:
    """The compiled per-model loop of ``formula`` (``formulas.numba_per_model_source``), or
    None to use the row-vector kernel of the base class."""
    return compiled(formula, 2, (), per_model=True) if worth_compiling(formula) else None


@functools.cache
def _literals(formula: Formula, dtype: np.dtype) -> tuple[Any, ...]:
    """The formula's numeric literals as scalars of ``dtype``."""
    return tuple(dtype.type(value) for value in formula.literals)


def kernel_cache_directory() -> Path | None:
    """Where generated kernels and Numba's compiled code are kept: the user cache
    (``$XDG_CACHE_HOME/fastmlp/numba`` or ``~/.cache/fastmlp/numba``); None if it cannot be
    written."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    directory = root / "fastmlp" / "numba"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return directory if os.access(directory, os.W_OK) else None


@functools.cache
def compiled(
    formula: Formula, ndim: int, row_vectors: tuple[str, ...], per_model: bool = False
) -> Any:
    """The compiled loop of a formula (see ``formulas.numba_source``; with ``per_model``,
    ``formulas.numba_per_model_source``), or None.

    The generated source is written to the kernel cache under a name made of its hash and
    imported from there, so Numba caches its machine code too (a second run loads it).
    """
    if ndim not in (1, 2) or (ndim == 1 and row_vectors):
        return None
    directory = kernel_cache_directory()
    if directory is None:
        return None
    source = (
        numba_per_model_source(formula) if per_model else numba_source(formula, ndim, row_vectors)
    )
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    module_name = f"fastmlp_kernel_{digest}"
    path = directory / f"{module_name}.py"
    if not path.exists():
        atomic_write_text(path, source)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # Numba looks the module up when it loads its cache
    spec.loader.exec_module(module)
    return module.kernel
