"""The CPU backend: NumPy ufuncs with ``out=`` into preallocated scratch buffers.

Every kernel here computes what the reference body in :mod:`fastmlp.backends.base`
computes, one ufunc pass at a time, writing into the caller's arrays or into scratch
buffers that are allocated once per (role, shape, dtype) and reused: a steady-state
training step allocates no array memory (``tests/test_no_allocation.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fastmlp.backends.base import (
    Backend,
    _check_formula_call,
    require_c_contiguous,
    smoothing_weights,
)
from fastmlp.backends.formulas import Formula, Plan


class NumpyBackend(Backend):
    """NumPy on the host CPU."""

    name = "numpy"
    device = "cpu"
    xp = np

    def __init__(self) -> None:
        self._scratch_buffers: dict[tuple[str, tuple[int, ...], np.dtype], np.ndarray] = {}
        self._slots: dict[tuple[int, str, tuple[int, ...], Any], np.ndarray] = {}
        # (formula, shape, dtype, row vectors) -> what _prepare found
        self._prepared: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._functions = self.formula_functions()

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
        its row's first entry, so indexing with the positions never leaves the array. Index
        with mode="clip" (a no-op on these positions): np.take's default mode="raise"
        copies through a temporary as large as ``out``.
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
        x.take(indices, axis=0, out=out, mode="clip")

    def add_scaled_(self, y: Any, x: Any, alpha: float) -> None:
        s = self._scratch("update", y.shape, y.dtype)
        # y = y + alpha * x
        np.multiply(x, alpha, out=s)
        np.add(y, s, out=y)

    # ------------------------------------------------------------ formulas

    def formula_functions(self) -> dict[str, Callable[..., Any]]:
        return {"erf": erf}

    def run_formula_(
        self,
        formula: Formula,
        arrays: Sequence[Any],
        scalars: Mapping[str, float],
        row_vectors: tuple[str, ...] = (),
    ) -> None:
        dtype = arrays[0].dtype
        try:
            values = [dtype.type(scalars[name]) for name in formula.scalars]
        except KeyError:
            _check_formula_call(formula, arrays, scalars, row_vectors)  # raises, saying what
            raise
        self._run(formula, arrays, values, row_vectors)

    def bind_formula(
        self,
        formula: Formula,
        scalars: Mapping[str, float],
        dtype: Any,
        ndim: int,
        row_vectors: tuple[str, ...] = (),
    ) -> Callable[..., None]:
        scalar = np.dtype(dtype).type
        values = [scalar(scalars[name]) for name in formula.scalars]
        run = self._run

        def kernel(*arrays: Any) -> None:
            run(formula, arrays, values, row_vectors)

        return kernel

    def _run(
        self,
        formula: Formula,
        arrays: Sequence[Any],
        values: Sequence[Any],
        row_vectors: tuple[str, ...],
    ) -> None:
        """Run ``formula``'s plan on checked arrays, ``values`` its scalars in their dtype."""
        first = arrays[0]  # never a row vector
        dtype = first.dtype
        key = (formula, first.shape, dtype, row_vectors)
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = self._prepare(formula, first.shape, dtype,
                                                           row_vectors)  # fmt: skip
        function, functions, shapes, buffers, literals = prepared
        if len(arrays) != len(shapes):
            _check_formula_call(formula, arrays, dict.fromkeys(formula.scalars), row_vectors)
        for array, shape in zip(arrays, shapes):
            if array.shape != shape or array.dtype != dtype:
                _check_formula_call(formula, arrays, dict.fromkeys(formula.scalars), row_vectors)
        if formula.may_overflow:  # exp(z) -> inf where the formula expects it
            with np.errstate(over="ignore"):
                function(*functions, *arrays, *buffers, *values, *literals)
        else:
            function(*functions, *arrays, *buffers, *values, *literals)

    def _prepare(
        self, formula: Formula, shape: tuple[int, ...], dtype: Any, row_vectors: tuple[str, ...]
    ) -> tuple[Any, ...]:
        """What running ``formula`` on arrays of this shape and dtype takes, looked up once:
        the plan's function and callees, the arrays' shapes, its scratch slots, literals."""
        plan = _plan(formula)
        functions = tuple(self._functions.get(name) or getattr(np, name) for name in plan.callees)
        shapes = tuple(shape[-1:] if name in row_vectors else shape for name in formula.arrays)
        buffers = tuple(
            self._slot(index, kind, shape, dtype) for index, kind in enumerate(plan.slot_kinds)
        )
        literals = tuple(dtype.type(value) for value in plan.literals)
        return plan.function, functions, shapes, buffers, literals

    def _slot(self, index: int, kind: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """Scratch slot ``index`` of formula plans: shared by every formula run on arrays of
        this shape and dtype (a bool array for a "bool" slot, int8 for a "bits" one)."""
        key = (index, kind, shape, dtype)
        buffer = self._slots.get(key)
        if buffer is None:
            kinds = {"float": dtype, "bool": np.bool_, "bits": np.int8}
            buffer = np.empty(shape, dtype=kinds[kind])
            self._slots[key] = buffer
        return buffer

    def flush_subnormals_(self, x: Any, threshold: float) -> None:
        magnitude = self._scratch("update", x.shape, x.dtype)
        tiny = self._scratch("tiny_mask", x.shape, np.bool_)
        # x = 0 where |x| < threshold
        np.abs(x, out=magnitude)
        np.less(magnitude, threshold, out=tiny)
        np.copyto(x, 0, where=tiny)

    # ------------------------------------------------------------ network math

    def uniform_(self, out: Any, rng: Any) -> None:
        # in place, in out's dtype: no temporary
        rng.random(out=out, dtype=out.dtype)

    def softmax_(self, z: Any) -> None:
        row = self._scratch("row", (z.shape[0], 1), z.dtype)
        # z = exp(z - max_k z_k) / sum_k exp(z - max_k z_k)
        np.max(z, axis=1, keepdims=True, out=row)
        np.subtract(z, row, out=z)
        np.exp(z, out=z)
        np.sum(z, axis=1, keepdims=True, out=row)
        np.divide(z, row, out=z)

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
        row = self._scratch("row", (n, 1), z.dtype)
        log_normalizer = self._scratch("log_normalizer", (n, 1), z.dtype)
        per_sample = self._scratch("per_sample", (n,), z.dtype)
        true_class, invalid = self._label_positions(y, z.shape)
        self._count_correct(correct, z, y)
        flat = z.reshape(-1)
        loss = np.empty((), dtype=z.dtype)
        # z = z - max_k z_k
        np.max(z, axis=1, keepdims=True, out=row)
        np.subtract(z, row, out=z)
        # loss = mean_n [ log sum_k exp(z_nk) - sum_k q_nk z_nk ]  (NaN for a label out of
        # range), with sum_k q_nk z_nk = z_n,y_n without label smoothing
        np.take(flat, true_class, out=per_sample, mode="clip")
        if label_smoothing:
            onehot_weight, uniform = smoothing_weights(label_smoothing, classes)
            onehot_weight, uniform = z.dtype.type(onehot_weight), z.dtype.type(uniform)
            spread = self._scratch("spread", (n,), z.dtype)
            # sum_k q_k z_k = (1 - eps) z_y + (eps / K) sum_k z_k
            np.sum(z, axis=1, out=spread)
            np.multiply(spread, uniform, out=spread)
            np.multiply(per_sample, onehot_weight, out=per_sample)
            np.add(per_sample, spread, out=per_sample)
        np.exp(z, out=z)
        np.sum(z, axis=1, keepdims=True, out=row)
        np.log(row, out=log_normalizer)
        np.subtract(log_normalizer.reshape(-1), per_sample, out=per_sample)
        if invalid is not None:
            np.copyto(per_sample, np.nan, where=invalid)
        mean_into(loss, per_sample)
        if sample_losses is not None:  # before per_sample serves as scratch below
            np.copyto(self._sample_losses(sample_losses, n, z.dtype), per_sample)
        # z = (softmax(z) - q) / N, q = (1 - eps) onehot(y) + eps / K
        np.divide(z, row, out=z)
        if label_smoothing:
            np.subtract(z, uniform, out=z)
            self._subtract_onehot(flat, true_class, invalid, per_sample, onehot_weight)
        else:
            self._subtract_onehot(flat, true_class, invalid, per_sample)
        np.divide(z, n, out=z)
        return loss

    def _subtract_onehot(
        self,
        flat: np.ndarray,
        true_class: np.ndarray,
        invalid: Any,
        scratch: np.ndarray,
        weight: Any = 1.0,
    ) -> None:
        """``flat[true_class] -= weight`` where the label is valid (``scratch``: (N,) work
        array; ``weight``: 1, or 1 - eps with label smoothing, in ``flat``'s dtype)."""
        np.take(flat, true_class, out=scratch, mode="clip")
        if invalid is None:
            np.subtract(scratch, weight, out=scratch)
        else:
            np.subtract(scratch, weight, out=scratch, where=~invalid)
        np.put(flat, true_class, scratch, mode="clip")

    def _sample_losses(self, given: Any, n: int, dtype: Any) -> Any:
        """Where a loss kernel writes each sample's loss: ``given`` (checked), or scratch."""
        if given is None:
            return self._scratch("per_sample", (n,), dtype)
        if given.shape != (n,) or given.dtype != dtype:
            raise ValueError(
                f"sample_losses must be ({n},) {dtype}, got {given.shape} {given.dtype}"
            )
        return given

    def mean_squared_error_(
        self, z: Any, y: Any, sample_losses: Any = None, correct: Any = None
    ) -> Any:
        require_c_contiguous(z, "logits")
        n, classes = z.shape
        err = self._scratch("error", z.shape, z.dtype)
        row = self._scratch("row", (n, 1), z.dtype)
        per_sample = self._scratch("per_sample", (n,), z.dtype)
        true_class, invalid = self._label_positions(y, z.shape)
        self._count_correct(correct, z, y)
        loss = np.empty((), dtype=z.dtype)
        self.softmax_(z)
        # e = p - onehot(y)
        np.copyto(err, z)
        err_flat = err.reshape(-1)
        self._subtract_onehot(err_flat, true_class, invalid, per_sample)
        # loss = sum_nk e_nk^2 / N  (NaN when a label is out of range)
        loss[()] = np.vdot(err_flat, err_flat) / n if invalid is None else np.nan
        if sample_losses is not None:
            # loss_n = sum_k e_nk^2  (NaN when its label is out of range)
            np.einsum("nk,nk->n", err, err, out=self._sample_losses(sample_losses, n, z.dtype))
            if invalid is not None:
                np.copyto(sample_losses, np.nan, where=invalid)
        # e = dLoss/dp = 2 (p - onehot) / N
        np.multiply(err, 2.0 / n, out=err)
        # z = p * (e - sum_k p_k e_k)
        s = self._scratch("products", z.shape, z.dtype)
        np.multiply(z, err, out=s)
        np.sum(s, axis=1, keepdims=True, out=row)
        np.subtract(err, row, out=err)
        np.multiply(z, err, out=z)
        return loss


def mean_into(loss: np.ndarray, per_sample: np.ndarray) -> None:
    """loss = mean_n per_sample_n into the 0-d ``loss``: np.mean's pairwise sum and division,
    without its Python wrappers (a few microseconds per training step)."""
    np.add.reduce(per_sample, out=loss)
    np.true_divide(loss, per_sample.shape[0], out=loss)


@functools.cache
def _plan(formula: Formula) -> Plan:
    return formula.plan()


def _scipy_erf() -> Any:
    try:
        from scipy.special import erf as scipy_erf
    except ImportError:
        return None
    return scipy_erf


_SCIPY_ERF = _scipy_erf()
_MATH_ERF = np.frompyfunc(math.erf, 1, 1)


def erf(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The error function elementwise (SciPy's when installed, else ``math.erf`` element by
    element: exact, but slow), in ``x``'s dtype, into ``out`` when given."""
    if _SCIPY_ERF is not None:
        return _SCIPY_ERF(x, out=out) if out is not None else _SCIPY_ERF(x)
    values = _MATH_ERF(x).astype(x.dtype)
    if out is None:
        return values
    out[...] = values
    return out
