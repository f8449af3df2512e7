"""The reference backend: every kernel written once, plainly, against ``self.xp``.

A :class:`Backend` owns an array module (NumPy or CuPy) and a device. Its methods fall
in two groups:

* array plumbing: ``asarray``, ``to_numpy``, ``empty``, ``zeros``, ``rng``, ``uniform_``,
  ``synchronize``, ``available_memory``;
* in-place kernels (names end in ``_``): :meth:`Backend.run_formula_`, which runs any
  per-element formula (an optimizer update, an activation and its gradient, the dropout
  mask: see :mod:`fastmlp.backends.formulas`), the fused bias-add + activation and the
  activation gradient built from an activation's declaration, bias gradients, the L2
  gradient term, softmax and the two losses (cross-entropy with optional label smoothing);
  and :meth:`Backend.bind_formula`, a formula with fixed scalars looked up once, which is
  what layers call per batch.

The bodies here are the readable specification.
:class:`~fastmlp.backends.numpy_backend.NumpyBackend`,
:class:`~fastmlp.backends.numba_backend.NumbaBackend` and
:class:`~fastmlp.backends.cupy_backend.CupyBackend` override the hot kernels with identical
signatures (``tests/test_backend_consistency.py`` enforces that) and the tests check that
every override computes what the body here computes.

Conventions for every kernel:

* arrays are updated in place and belong to this backend; scalars are Python floats;
* ``p``, ``g`` are the flat parameter and gradient buffers, state buffers have their shape;
* an activation is an :class:`~fastmlp.nn.activations.ActivationFunction` (a registered
  declaration with its hyperparameters' values);
* kernels are memory-safe whatever their inputs: arrays of mismatched sizes are an error, and
  in the loss kernels a label outside ``[0, classes)`` gives its row a NaN loss and no onehot
  term (no kernel reads or writes outside its arrays). Callers that want a clear error for
  such labels check them first (``fastmlp.nn.inputs.check_label_range``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from fastmlp.backends.formulas import Formula, in_place, scalars_as_arrays, with_bias

if TYPE_CHECKING:
    from fastmlp.nn.activations import ActivationFunction


@functools.cache
def forward_kernel(declaration: Any, keep_input: bool) -> Formula:
    """The fused bias-add + activation formula of an activation declaration."""
    return with_bias(declaration.forward_formula, keep_input)


@functools.cache
def backward_kernel(declaration: Any) -> Formula:
    """The in-place activation-gradient formula of an activation declaration."""
    return in_place(declaration.backward_formula)


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
        y += y.dtype.type(alpha) * x

    # ------------------------------------------------------------ formulas

    def formula_functions(self) -> dict[str, Callable[..., Any]]:
        """Functions a formula may call that ``xp`` lacks (NumPy has no ``erf``)."""
        if self.xp is np:
            from fastmlp.backends.numpy_backend import erf

            return {"erf": erf}
        return {}

    def run_formula_(
        self,
        formula: Formula,
        arrays: Sequence[Any],
        scalars: Mapping[str, float],
        row_vectors: tuple[str, ...] = (),
    ) -> None:
        """Run a per-element formula, updating its updated arrays in place.

        arrays: the formula's array parameters in order, all of one shape, except the ones
        named in ``row_vectors``: (columns,) vectors broadcast over the rows of the others.
        scalars: a value for each of the formula's scalar parameters.
        """
        _check_formula_call(formula, arrays, scalars, row_vectors)
        with np.errstate(over="ignore"):
            values = formula.evaluate(self.xp, arrays, dict(scalars), self.formula_functions())
        for name, value in zip(formula.updates, values):
            arrays[formula.arrays.index(name)][...] = value

    def run_formula_per_model_(
        self,
        formula: Formula,
        arrays: Sequence[Any],
        groups: Sequence[tuple[int, int, int]],
        scalars: Sequence[Sequence[Mapping[str, float]]],
    ) -> None:
        """Run ``formula`` on a stack's flat arrays with each model's own scalars.

        arrays: the formula's arrays, 1-D of one length. groups: (start, stop, width) each,
        the range [start, stop) viewed as (rows, K * width), model k's entries in columns
        [k * width, (k + 1) * width). scalars: per group, K mappings (model k's scalars);
        groups given the same list are groups with the same scalars. Here: one kernel per
        group, each scalar a row vector holding model k's value over model k's columns
        (``scalars_as_arrays``), every group's row vectors made on the host and moved to the
        device in one transfer.
        """
        per_column = scalars_as_arrays(formula)
        vectors = [
            np.repeat([model[name] for model in models], width)
            for (_, _, width), models in zip(groups, scalars)
            for name in formula.scalars
        ]
        values = self.asarray(np.concatenate(vectors) if vectors else np.zeros(0), arrays[0].dtype)
        offset = 0
        for (start, stop, width), models in zip(groups, scalars):
            columns = len(models) * width
            shape = ((stop - start) // columns, columns)
            given = [array[start:stop].reshape(shape) for array in arrays]
            for _ in formula.scalars:
                given.append(values[offset : offset + columns])
                offset += columns
            self.run_formula_(per_column, given, {}, row_vectors=formula.scalars)

    def bind_formula(
        self,
        formula: Formula,
        scalars: Mapping[str, float],
        dtype: Any,
        ndim: int,
        row_vectors: tuple[str, ...] = (),
    ) -> Callable[..., None]:
        """``run_formula_`` with its scalars fixed, looked up once: ``kernel(*arrays)`` runs
        ``formula`` on arrays of ``dtype`` with ``ndim`` dimensions (row vectors: 1).

        Layers bind their formulas when they are built (an activation's hyperparameters and
        a dropout rate do not change), so that a call per batch is a kernel launch and
        nothing more. Arrays are checked as by ``run_formula_``.
        """
        fixed = dict(scalars)

        def kernel(*arrays: Any) -> None:
            self.run_formula_(formula, arrays, fixed, row_vectors)

        return kernel

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

    def bias_activation_(
        self, z: Any, b: Any, activation: ActivationFunction, out: Any = None
    ) -> None:
        """The forward pass of a hidden layer's bias and activation.

        ``out`` None: ``z = f(z + b)`` in place. Else ``z = z + b`` and ``out = f(z)``, for
        an activation whose gradient needs its input. z, out: (N, units); b: (units,).
        """
        kernel = forward_kernel(activation.declaration, out is not None)
        arrays = (z, b) if out is None else (z, b, out)
        self.run_formula_(kernel, arrays, activation.scalars, row_vectors=("b",))

    def activation_grad_(self, delta: Any, x: Any, activation: ActivationFunction) -> None:
        """``delta = delta * f'(z)`` in place, with ``x`` the activation's output a = f(z)
        or its input z, as the activation's ``backward_from`` says. delta, x: (N, units)."""
        self.run_formula_(backward_kernel(activation.declaration), (delta, x), activation.scalars)

    def uniform_(self, out: Any, rng: Any) -> None:
        """Fill ``out`` with uniform random numbers in [0, 1) drawn from ``rng`` (a generator
        of this backend, see :meth:`rng`), in ``out``'s dtype."""
        out[...] = rng.random(out.shape, dtype=out.dtype)

    def softmax_(self, z: Any) -> None:
        """Row-wise softmax in place (max-subtracted). z: (N, classes)."""
        xp = self.xp
        # z = exp(z - max_k z_k) / sum_k exp(z - max_k z_k)
        z -= z.max(axis=1, keepdims=True)
        xp.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)

    def cross_entropy_(
        self,
        z: Any,
        y: Any,
        label_smoothing: float = 0.0,
        sample_losses: Any = None,
        correct: Any = None,
    ) -> Any:
        """Softmax cross-entropy: returns the mean loss, leaves dLoss/dz in ``z``; each
        sample's loss also into ``sample_losses`` (N,) when given; the number of rows
        classified correctly added to ``correct`` when given (:meth:`_count_correct`).

        z: (N, classes) logits, overwritten with (softmax(z) - q) / N, where the target
        distribution is q = (1 - eps) onehot(y) + eps / classes for ``label_smoothing`` eps
        (torch's ``CrossEntropyLoss(label_smoothing=eps)``; eps = 0: q = onehot(y)).
        y: (N,) integer labels. Returns a 0-d array (no host sync). With s = z - max_k z_k:
        loss = mean_n [ log sum_k exp(s_nk) - sum_k q_nk s_nk ]
             = mean_n [ (1 - eps) (-log p_n,y_n) + eps mean_k (-log p_nk) ],  p = softmax(z)
        A label outside [0, classes) makes its row's loss NaN and drops its onehot term (the
        eps / classes term, which does not depend on the label, stays).
        """
        xp = self.xp
        n, classes = z.shape
        rows = xp.arange(n)
        valid, safe_y = self._valid_labels(y, z.shape)
        self._count_correct(correct, z, y)
        onehot_weight, uniform = smoothing_weights(label_smoothing, classes)
        shifted = z - z.max(axis=1, keepdims=True)
        log_normalizer = xp.log(xp.exp(shifted).sum(axis=1))
        weighted = shifted[rows, safe_y]
        if label_smoothing:
            # sum_k q_k s_k = (1 - eps) s_y + (eps / K) sum_k s_k
            weighted = onehot_weight * weighted + uniform * shifted.sum(axis=1)
        per_sample = xp.where(valid, log_normalizer - weighted, xp.nan)
        loss = per_sample.mean()
        if sample_losses is not None:
            sample_losses[...] = per_sample
        # z = (softmax(z) - q) / N
        z[...] = xp.exp(shifted - log_normalizer[:, None]) - uniform
        z[rows, safe_y] -= onehot_weight * valid.astype(z.dtype)
        z /= n
        return loss

    def mean_squared_error_(
        self, z: Any, y: Any, sample_losses: Any = None, correct: Any = None
    ) -> Any:
        """Squared error on the softmax output: returns the loss, leaves dLoss/dz in ``z``;
        each sample's loss also into ``sample_losses`` (N,) when given; the number of rows
        classified correctly added to ``correct`` when given (:meth:`_count_correct`).

        loss = mean_n sum_k (p_nk - onehot(y)_nk)^2 with p = softmax(z).
        Gradient through the softmax Jacobian, with e = dLoss/dp = 2 (p - onehot) / N:
        dLoss/dz_j = p_j (e_j - sum_k p_k e_k).
        A label outside [0, classes) makes its row's loss NaN and drops its onehot term.
        """
        xp = self.xp
        n = z.shape[0]
        rows = xp.arange(n)
        valid, safe_y = self._valid_labels(y, z.shape)
        self._count_correct(correct, z, y)
        self.softmax_(z)
        err = z.copy()
        err[rows, safe_y] -= valid.astype(z.dtype)
        per_sample = xp.where(valid, (err * err).sum(axis=1), xp.nan)
        loss = per_sample.mean()
        if sample_losses is not None:
            sample_losses[...] = per_sample
        err *= 2.0 / n
        # z = p * (e - sum_k p_k e_k)
        z *= err - (z * err).sum(axis=1, keepdims=True)
        return loss

    @staticmethod
    def _count_correct(correct: Any, z: Any, y: Any) -> None:
        """correct = correct + #{n : argmax_k z_nk = y_n}, the argmax the first of equal
        logits (the first NaN, if any), as NumPy's; nothing when ``correct`` is None. z:
        (N, classes) logits before a loss kernel overwrites them; correct: a 0-d integer
        array of the backend."""
        if correct is not None:
            correct += (z.argmax(axis=1) == y).sum()

    def _valid_labels(self, y: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
        """(valid, safe_y): which labels lie in [0, classes), and the labels with every
        invalid one replaced by 0 (safe to index with). y: (N,), shape: (N, classes)."""
        n, classes = shape
        if y.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(y.shape)}")
        valid = (y >= 0) & (y < classes)
        return valid, self.xp.where(valid, y, 0)


def per_model_scalar_table(
    formula: Formula, scalars: Sequence[Sequence[Mapping[str, float]]]
) -> tuple[np.ndarray, list[int]]:
    """The scalars of a stack's groups as one table: (values, which), values of shape
    (tables, len(formula.scalars), K) in float64 with ``values[t, s, k]`` scalar s of model
    k, and ``which[g]`` the table of group g. Groups given the same list of scalars (the
    same options, see ``Backend.run_formula_per_model_``) share one table."""
    tables: dict[int, int] = {}
    entries: list[float] = []  # values[t, s, k] in C order
    for models in scalars:
        if id(models) not in tables:
            tables[id(models)] = len(tables)
            entries += [model[name] for name in formula.scalars for model in models]
    shape = (len(tables), len(formula.scalars), len(scalars[0]) if scalars else 0)
    return np.array(entries, dtype=np.float64).reshape(shape), [tables[id(m)] for m in scalars]


def require_c_contiguous(a: Any, what: str) -> None:
    """A ValueError unless ``a`` is C-contiguous: kernels that index its flat view (a loss
    at each row's label) would otherwise read and write a copy."""
    if not a.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous (pass a contiguous copy)")


def smoothing_weights(label_smoothing: float, classes: int) -> tuple[float, float]:
    """(1 - eps, eps / classes): the weights of the smoothed cross-entropy target
    q = (1 - eps) onehot(y) + eps / classes, in double precision (a kernel rounds each once
    to its arrays' dtype); (1, 0) without smoothing, whatever ``classes``."""
    if not label_smoothing:
        return 1.0, 0.0
    if classes < 1:
        raise ValueError(f"label smoothing needs at least one class, got {classes}")
    return 1.0 - label_smoothing, label_smoothing / classes


def _check_formula_call(
    formula: Formula,
    arrays: Sequence[Any],
    scalars: Mapping[str, float],
    row_vectors: tuple[str, ...],
) -> None:
    """Raise unless ``arrays`` and ``scalars`` fit ``formula`` (before any kernel runs)."""
    if len(arrays) != len(formula.arrays):
        raise ValueError(
            f"formula {formula.name} takes {len(formula.arrays)} arrays, got {len(arrays)}"
        )
    for name in formula.scalars:
        if name not in scalars:
            missing = sorted(set(formula.scalars) - set(scalars))
            raise ValueError(f"formula {formula.name} needs scalars {', '.join(missing)}")
    first = arrays[0]
    shape, dtype = first.shape, first.dtype
    row = shape[-1:]
    for name, array in zip(formula.arrays, arrays):
        if array.dtype != dtype or array.shape != (row if name in row_vectors else shape):
            raise ValueError(
                f"formula {formula.name}: arrays of mismatched shapes or dtypes "
                f"{[(tuple(a.shape), str(a.dtype)) for a in arrays]}"
            )
