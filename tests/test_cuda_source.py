"""Every CUDA kernel of the CuPy backend, compiled for the CPU, computes what NumPy computes.

``fastmlp/backends/cupy_backend.py`` is imported over the stand-in ``cupy`` of
``tests/cuda_host.py``, whose kernels compile each CUDA C++ body with the system C++
compiler, so CI without a GPU runs the arithmetic of every kernel as written (not the GPU's
math library, nor its fused multiply-adds). The kernels are driven through
``CupyBackend``'s own methods (``run_formula_``, ``bind_formula``, ``bias_activation_``,
``activation_grad_``, ``add_scaled_``, ``flush_subnormals_``, ``cross_entropy_``) on NumPy
arrays, and compared with ``NumpyBackend`` running the same method on copies, in float32
and float64, on random values and on a grid of edge cases (signed zeros, subnormals, the
overflow thresholds of exp and of squaring, the largest floats, infinities, NaN).

Formulas without a transcendental function must agree bit for bit (docs/ARCHITECTURE.md,
"Formulas"), the others to a few ulp. The cases of formula kernels are made from the
registries (every optimizer, every activation's three kernels) and from the formulas the
layers define, so a new optimizer or activation file gets its case by being registered;
``test_every_kernel_*`` fail when a kernel or a formula source has no case.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import types
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import fastmlp
import fastmlp.nn.layers
from fastmlp import optim
from fastmlp.backends import NumpyBackend
from fastmlp.backends.base import backward_kernel, forward_kernel
from fastmlp.backends.formulas import Formula, scalars_as_arrays
from fastmlp.errors import UserError
from fastmlp.nn.activations import ACTIVATIONS, create
from fastmlp.nn.layers import dense, dropout
from fastmlp.optim.optimizer import flush_threshold
from tests.cuda_host import CUPY_BACKEND_SOURCE, CXX, import_cupy_backend, kernel_stand_in

pytestmark = pytest.mark.cuda_source

DTYPES = ["float32", "float64"]
PACKAGE = Path(fastmlp.__file__).parent


# ------------------------------------------- kernels, recorded as they are built and run


@dataclass(frozen=True)
class KernelDefinition:
    """What a ``cupy.ElementwiseKernel`` / ``ReductionKernel`` was built from. Names are not
    unique (every optimizer's kernel is ``fastmlp_update``, every activation's forward
    ``fastmlp_bias_forward``), so a kernel is known by its whole definition."""

    kind: str
    name: str
    in_params: str
    out_params: str
    code: tuple[str, ...]


class KernelLog:
    """The kernels the stand-in built (in order) and the ones that ran (one entry a call)."""

    def __init__(self) -> None:
        self.built: list[KernelDefinition] = []
        self.ran: list[KernelDefinition] = []

    @contextmanager
    def running(self):
        """The set of kernels that run inside the ``with`` block."""
        start, ran = len(self.ran), set()
        yield ran
        ran.update(self.ran[start:])


def _definition(kind: str, args: tuple, kwargs: dict) -> KernelDefinition:
    # ElementwiseKernel(in, out, operation, name="kernel", ...),
    # ReductionKernel(in, out, map, reduce, post_map, identity, name="reduce_kernel", ...)
    code_count = 1 if kind == "ElementwiseKernel" else 4
    default = "kernel" if kind == "ElementwiseKernel" else "reduce_kernel"
    positional_name = args[2 + code_count : 3 + code_count]
    name = kwargs.get("name", positional_name[0] if positional_name else default)
    return KernelDefinition(kind, name, args[0], args[1], tuple(args[2 : 2 + code_count]))


def recording_stand_in(directory: Path, log: KernelLog) -> types.ModuleType:
    """``kernel_stand_in`` whose kernels write what is built and what runs into ``log``."""
    stand_in = kernel_stand_in(directory)
    for kind in ("ElementwiseKernel", "ReductionKernel"):
        build = getattr(stand_in, kind)

        def recorded(*args, _build=build, _kind=kind, **kwargs):
            definition = _definition(_kind, args, kwargs)
            log.built.append(definition)
            kernel = _build(*args, **kwargs)

            def run(*call_args, **call_kwargs):
                log.ran.append(definition)
                return kernel(*call_args, **call_kwargs)

            run.definition = definition
            return run

        setattr(stand_in, kind, recorded)
    return stand_in


@dataclass
class Host:
    module: types.ModuleType  # cupy_backend.py over the stand-in
    cupy: object  # CupyBackend(0) of that module
    numpy: NumpyBackend
    log: KernelLog
    built_at_import: list[KernelDefinition]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """cupy_backend.py imported over the recording stand-in (compiles nothing yet)."""
    log = KernelLog()
    stand_in = recording_stand_in(tmp_path_factory.mktemp("cuda_source"), log)
    module = import_cupy_backend(stand_in, "cupy_backend_compiled_for_the_cpu")
    return Host(module, module.CupyBackend(0), NumpyBackend(), log, list(log.built))


@pytest.fixture(scope="module")
def host(imported):
    if CXX is None:
        pytest.skip("needs a C++ compiler")
    return imported


# ------------------------------------------------------------------ values and checks


def special_values(dtype) -> np.ndarray:
    """Edge cases of every operation a kernel performs, in ``dtype``."""
    info = np.finfo(dtype)
    log_max = float(np.log(info.max))  # exp overflows above it
    square_overflow = float(np.sqrt(info.max)) * 2
    values = [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 30.0, -30.0,
              log_max - 1, log_max + 1, -log_max + 1, -log_max - 1, -log_max - 10,
              square_overflow, -square_overflow, float(info.max), -float(info.max),
              float(info.tiny), -float(info.tiny), float(info.tiny) / 3,
              float(info.smallest_subnormal), -float(info.smallest_subnormal),
              np.inf, -np.inf, np.nan]  # fmt: skip
    return np.array(values, dtype=dtype)


def with_grid(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """``arrays`` (of one size) with their first s*s elements overwritten, for the s special
    values: every pair of them in the first two arrays, random ones in the others."""
    specials = special_values(arrays[0].dtype)
    s = len(specials)
    flat = [a.reshape(-1) for a in arrays]
    assert all(f.size >= s * s for f in flat)
    index = np.arange(s * s)
    flat[0][: s * s] = specials[index // s]
    if len(flat) > 1:
        flat[1][: s * s] = specials[index % s]
    for f in flat[2:]:
        f[: s * s] = rng.choice(specials, size=s * s)
    return arrays


def tolerance(exact: bool, dtype) -> float:
    """rtol: 0 where the docs promise bit-identical results; a few ulp after exp, erf..."""
    if exact:
        return 0.0
    return 2e-6 if np.dtype(dtype) == np.float32 else 1e-14


def assert_same(actual, expected, rtol, atol=0.0, what="", inputs=()):
    """``actual`` equals ``expected`` to ``rtol`` (relative) and ``atol`` (absolute, may be
    per element): NaN where NaN, infinities of the same sign. On failure, the first
    elements that differ, with their inputs."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape}, expected {e.shape}"
    with np.errstate(invalid="ignore", over="ignore"):
        close = (a == e) | (np.isnan(a) & np.isnan(e)) | (np.abs(a - e) <= atol + rtol * np.abs(e))
    if close.all():
        return
    bad = np.flatnonzero(~close.reshape(-1))
    lines = [f"{what}: {bad.size} of {close.size} elements differ (rtol {rtol:g})"]
    for i in bad[:8]:
        shown = ", ".join(f"{name}={np.asarray(v).reshape(-1)[i]!r}" for name, v in inputs)
        lines.append(f"  [{i}] {shown}: expected {e.reshape(-1)[i]!r}, got {a.reshape(-1)[i]!r}")
    raise AssertionError("\n".join(lines))


def rounding_scale(arrays) -> np.ndarray:
    """Per element, min(1, the largest finite magnitude among ``arrays``): an absolute
    tolerance of rtol times this covers cancellation in a sum of terms of that size
    (1 + erf(z) for very negative z, the zero of GELU's derivative)."""
    magnitudes = [np.nan_to_num(np.abs(a), nan=0.0, posinf=0.0) for a in arrays]
    return np.minimum(np.maximum.reduce(np.broadcast_arrays(*magnitudes)), 1.0)


def numpy_quietly(function, *args, **kwargs):
    """Run a NumPy-backend call without warnings for the NaN, inf and overflow cases."""
    with np.errstate(all="ignore"):
        return function(*args, **kwargs)


# -------------------------------------------------------------------- formula cases


@dataclass
class Run:
    """One call of a backend method, ``call(backend, arrays)``, on copies of ``arrays``
    (the formula's arrays, in order)."""

    label: str
    arrays: list[np.ndarray]
    call: Callable


@dataclass(frozen=True)
class FormulaCase:
    """A formula the library runs, and how to drive it: ``runs(rng, dtype)`` yields Runs."""

    id: str
    formula: Formula
    runs: Callable | None  # None: no inputs written for this formula yet (the case fails)


def other_values(hyperparameters) -> dict[str, float]:
    """A valid value other than the default for each hyperparameter (not a round binary
    fraction, so that rounding it to float32 shows)."""
    values = {}
    for parameter in hyperparameters:
        default = parameter.default
        bounds = [bound for bound in (parameter.low, parameter.high) if np.isfinite(bound)]
        candidates = [default * 0.3, default * 3, *((default + b) / 2 for b in bounds), 0.3]
        for candidate in candidates:
            try:
                value = parameter.check(candidate)
            except UserError:
                continue
            if value != default:
                values[parameter.name] = value
                break
    return values


def by_run_formula(formula: Formula, scalars: dict[str, float]) -> Callable:
    """``run_formula_(formula, arrays, scalars)``, as an optimizer step calls it."""

    def call(backend, arrays):
        backend.run_formula_(formula, arrays, scalars)

    return call


def by_bind_formula(formula: Formula, scalars: dict[str, float], row_vectors=()) -> Callable:
    """The formula bound once with ``bind_formula``, then called: as a layer runs it."""

    def call(backend, arrays):
        first = arrays[0]
        backend.bind_formula(formula, scalars, first.dtype, first.ndim, row_vectors)(*arrays)

    return call


def by_bias_activation(function) -> Callable:
    """``bias_activation_(z, b, function)``, or with ``out`` as the third array."""

    def call(backend, arrays):
        backend.bias_activation_(*arrays[:2], function, *arrays[2:])

    return call


def by_activation_grad(function) -> Callable:
    """``activation_grad_(delta, x, function)``."""

    def call(backend, arrays):
        backend.activation_grad_(*arrays, function)

    return call


def optimizer_runs(name: str) -> Callable:
    """Two steps of the optimizer: the first, with its defaults, and the fourth with other
    hyperparameter values (its state from three steps on NumPy)."""
    formula = optim.optimizer_class(name).formula
    hyperparameters = optim.optimizer_class(name).hyperparameters

    def runs(rng, dtype):
        size = special_values(dtype).size ** 2 + 1500
        for label, values, warm_up in (("defaults, step 1", {}, 0),
                                       ("other values, step 4", other_values(hyperparameters),
                                        3)):  # fmt: skip
            optimizer = optim.create(name, **values)
            p = rng.normal(size=size).astype(dtype)
            for _ in range(warm_up):
                g = rng.normal(size=size).astype(dtype)
                numpy_quietly(optimizer.step, p, g, NumpyBackend())
            buffers = [optimizer.state.get(key, np.zeros(size, dtype)).copy()
                       for key in optimizer.buffers]  # fmt: skip
            optimizer.steps += 1
            optimizer.advance()
            scalars = optimizer.scalars(optimizer.hyperparameter_values())
            g = (rng.normal(size=size) * 10.0 ** rng.uniform(-3, 1, size=size)).astype(dtype)
            arrays = with_grid([p, g, *buffers], rng)
            yield Run(f"{name}, {label}", arrays, by_run_formula(formula, scalars))

    return runs


def activation_settings(name: str):
    """(label, ActivationFunction): the defaults, and other values of its hyperparameters."""
    settings = [("defaults", create(name))]
    options = other_values(ACTIVATIONS.get(name).hyperparameters)
    if options:
        label = ", ".join(f"{key}={value:g}" for key, value in options.items())
        settings.append((label, create(name, **options)))
    return settings


def logits_and_bias(rng, dtype):
    """z (rows, units), b (units,): row i of the first s rows is special value i, b's first
    s entries the special values, so z + b takes every pair; the rest ordinary."""
    specials = special_values(dtype)
    s = specials.size
    z = (rng.normal(size=(s + 40, s + 5)) * 4).astype(dtype)
    z[:s] = specials[:, None]
    b = rng.normal(size=s + 5).astype(dtype)
    b[:s] = specials
    return z, b


def activation_runs(name: str, kind: str) -> Callable:
    """The activation's forward (``kind`` "forward", or "forward-keep" into ``out``) or
    gradient ("backward"), through the backend method and through bind_formula."""
    declaration = ACTIVATIONS.get(name)

    def runs(rng, dtype):
        for label, function in activation_settings(name):
            z, b = logits_and_bias(rng, dtype)
            if kind == "backward":
                x = z.copy()  # the input, or the output a = f(z + b) as the layer keeps it
                if function.backward_from == "output":
                    numpy_quietly(NumpyBackend().bias_activation_, x, b, function)
                arrays = with_grid([rng.normal(size=z.shape).astype(dtype), x], rng)
                calls = {
                    "activation_grad_": by_activation_grad(function),
                    "bind_formula": by_bind_formula(backward_kernel(declaration), function.scalars),
                }
            else:
                keep = kind == "forward-keep"
                arrays = [z, b, np.full_like(z, 7.0)] if keep else [z, b]
                formula = forward_kernel(declaration, keep)
                calls = {
                    "bias_activation_": by_bias_activation(function),
                    "bind_formula": by_bind_formula(formula, function.scalars, ("b",)),
                }
            for path, call in calls.items():
                yield Run(f"{name} ({label}) by {path}", arrays, call)

    return runs


def dropout_runs(attribute: str) -> Callable:
    """A dropout formula at rates 0, 0.3 and 0.5, bound as the layer binds it and run."""

    def runs(rng, dtype):
        formula = getattr(dropout, attribute)
        shape = (special_values(dtype).size ** 2 // 20 + 10, 20)
        for rate in (0.0, 0.3, 0.5):
            scale = float(np.float64(1.0) / (1.0 - rate))  # as the layer computes it
            u = rng.random(shape).astype(dtype)
            u.reshape(-1)[-3:] = [rate, np.nextafter(dtype.type(rate), dtype.type(0)), 0.0]
            mask = np.where(u < rate, 0.0, scale).astype(dtype)
            x = rng.normal(size=shape).astype(dtype)
            scalars = {"rate": rate, "scale": scale} if attribute == "KEEP_SCALE" else {}
            if attribute == "KEEP_SCALE":
                arrays = with_grid([u], rng)
            elif attribute == "MASKED":
                arrays = [*with_grid([x, mask], rng), np.full_like(x, 7.0)]
            else:
                arrays = with_grid([x, mask], rng)
            for path, call in (("bind_formula", by_bind_formula(formula, scalars)),
                               ("run_formula_", by_run_formula(formula, scalars))):  # fmt: skip
                yield Run(f"dropout p={rate} by {path}", arrays, call)

    return runs


def weight_decay_runs(rng, dtype):
    """The per-column L2 term of a stack's layer, dW = dW + w_k W, as the layer runs it."""
    shape = (special_values(dtype).size ** 2 // 24 + 10, 24)
    decay = np.repeat([0.0, 5e-4, 0.5], 8).astype(dtype)

    def call(backend, arrays):
        backend.run_formula_(dense.DECAYED_GRADIENT, arrays, {}, row_vectors=("weight_decay",))

    arrays = [*with_grid([rng.normal(size=shape).astype(dtype) for _ in range(2)], rng), decay]
    yield Run("per-model weight decay", arrays, call)


def per_model_optimizer_runs(name: str) -> Callable:
    """The optimizer's update for a stack of 3 models: each scalar a row vector of three
    models' values (defaults, other values, defaults again), as a stacked step runs it."""
    optimizer_class = optim.optimizer_class(name)
    declared = optimizer_class.formula
    per_column = scalars_as_arrays(declared)

    def runs(rng, dtype):
        width = 16
        values = [{}, other_values(optimizer_class.hyperparameters), {}]
        members = [optim.create(name, **one) for one in values]
        for member in members:
            member.steps = 4
            member.advance()
        scalars = [member.scalars(member.hyperparameter_values()) for member in members]
        rows = special_values(dtype).size ** 2 // (3 * width) + 10
        shape = (rows, 3 * width)
        arrays = with_grid([rng.normal(size=shape).astype(dtype) for _ in declared.arrays], rng)
        vectors = [
            np.repeat([one[scalar] for one in scalars], width).astype(dtype)
            for scalar in declared.scalars
        ]

        def call(backend, given):
            backend.run_formula_(per_column, given, {}, row_vectors=declared.scalars)

        yield Run(f"{name} for a stack of 3", [*arrays, *vectors], call)

    return runs


# The formulas that layers declare at module level (fastmlp/nn/layers/*.py), by module and
# name, with how to drive each; one missing here fails its case and the coverage test.
LAYER_FORMULA_RUNS = {
    "dense.DECAYED_GRADIENT": weight_decay_runs,
    "dropout.KEEP_SCALE": dropout_runs("KEEP_SCALE"),
    "dropout.MASKED": dropout_runs("MASKED"),
    "dropout.MASK_IN_PLACE": dropout_runs("MASK_IN_PLACE"),
}


def layer_formulas() -> dict[str, Formula]:
    """Every module-level Formula of the modules of ``fastmlp.nn.layers``."""
    found = {}
    for info in pkgutil.iter_modules(fastmlp.nn.layers.__path__):
        module = importlib.import_module(f"fastmlp.nn.layers.{info.name}")
        for attribute, value in vars(module).items():
            if isinstance(value, Formula):
                found[f"{info.name}.{attribute}"] = value
    return found


def formula_cases() -> list[FormulaCase]:
    """A case for every formula the library runs: each registered optimizer's update, each
    registered activation's fused bias forward (in place, and keeping its input) and its
    gradient, and the layers' formulas."""
    cases = []
    for name in optim.names():
        formula = optim.optimizer_class(name).formula
        cases.append(FormulaCase(f"{name}-update", formula, optimizer_runs(name)))
        per_model = per_model_optimizer_runs(name)
        cases.append(FormulaCase(f"{name}-update-per-model", scalars_as_arrays(formula), per_model))
    for name in ACTIVATIONS.names():
        declaration = ACTIVATIONS.get(name)
        for kind, formula in (("forward", forward_kernel(declaration, False)),
                              ("forward-keep", forward_kernel(declaration, True)),
                              ("backward", backward_kernel(declaration))):  # fmt: skip
            cases.append(FormulaCase(f"{name}-{kind}", formula, activation_runs(name, kind)))
    for key, formula in layer_formulas().items():
        cases.append(FormulaCase(key, formula, LAYER_FORMULA_RUNS.get(key)))
    return cases


FORMULA_CASES = formula_cases()


def formula_kernel(formula: Formula) -> tuple[str, str]:
    """(name, body) of the CuPy kernel of a formula, as cupy_backend.py builds it."""
    return (f"fastmlp_{formula.name}", formula.c_body())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FORMULA_CASES, ids=[case.id for case in FORMULA_CASES])
def test_formula_kernel_compiled_for_the_cpu_equals_numpy(host, case, dtype):
    """The CUDA body of the formula's kernel, through CupyBackend's methods, computes what
    the NumPy backend's plan computes: bit for bit without transcendental functions."""
    if case.runs is None:
        pytest.fail(f"formula {case.id} has no inputs: add it to LAYER_FORMULA_RUNS")
    formula = case.formula
    rtol = tolerance(formula.exact, dtype)
    with host.log.running() as ran:
        for run in case.runs(np.random.default_rng(7), np.dtype(dtype)):
            expected = [a.copy() for a in run.arrays]
            actual = [a.copy() for a in run.arrays]
            numpy_quietly(run.call, host.numpy, expected)
            run.call(host.cupy, actual)
            atol = rtol * rounding_scale(run.arrays)
            inputs = list(zip(formula.arrays, np.broadcast_arrays(*run.arrays)))
            for name, got, want in zip(formula.arrays, actual, expected):
                assert_same(got, want, rtol, atol if got.shape == atol.shape else 0.0,
                            f"{run.label}, {dtype}: {name}", inputs)  # fmt: skip
    assert {(d.name, d.code[0]) for d in ran} == {formula_kernel(formula)}


# ---------------------------------------------------------- the module-level kernels


def flat_pair(rng, dtype, size=2000):
    """Two flat arrays: every pair of special values first, then ordinary values."""
    s = special_values(dtype).size
    n = s * s + size
    arrays = [(rng.normal(size=n) * 10.0 ** rng.uniform(-3, 3, size=n)).astype(dtype)
              for _ in range(2)]  # fmt: skip
    return with_grid(arrays, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_scaled_kernel_equals_numpy(host, dtype):
    """``y = y + alpha x``: bit for bit, alpha rounded once to the arrays' dtype."""
    rng = np.random.default_rng(3)
    with host.log.running() as ran:
        for alpha in (0.37, -1e-3, 0.1, 0.0, 1e30):
            y, x = flat_pair(rng, dtype)
            expected = y.copy()
            numpy_quietly(host.numpy.add_scaled_, expected, x, alpha)
            host.cupy.add_scaled_(y, x, alpha)
            assert_same(y, expected, 0.0, what=f"alpha={alpha}, {dtype}", inputs=[("x", x)])
    assert ran == kernels_of(host, "test_add_scaled_kernel_equals_numpy")


@pytest.mark.parametrize("dtype", DTYPES)
def test_flush_subnormals_kernel_equals_numpy(host, dtype):
    """``x = 0 where |x| < threshold``, on both sides of the optimizers' threshold, at the
    smallest normal and subnormal floats, and with NaN and infinities (never flushed)."""
    rng = np.random.default_rng(4)
    smallest = -45 if dtype == "float32" else -320
    with host.log.running() as ran:
        for threshold in (flush_threshold(dtype), float(np.finfo(dtype).tiny), 0.0, 1.0):
            x = special_values(dtype)
            x = np.concatenate([x, threshold * np.array([0.5, 1, 2, -0.5, -1, -2], dtype)])
            x = np.concatenate([x, rng.normal(size=2000) * 10.0 ** rng.uniform(smallest, 0, 2000)])
            x = x.astype(dtype)
            expected = x.copy()
            numpy_quietly(host.numpy.flush_subnormals_, expected, threshold)
            host.cupy.flush_subnormals_(x, threshold)
            assert_same(x, expected, 0.0, what=f"threshold={threshold}, {dtype}")
    assert ran == kernels_of(host, "test_flush_subnormals_kernel_equals_numpy")


def cross_entropy_tolerance(dtype):
    """Both subtract the row max from z first; what differs is the libraries' exp and log
    (a few ulp) and the order of the row sums."""
    return 2e-6 if dtype == "float32" else 1e-13


def special_logit_rows(dtype):
    """(row, label) pairs, one batch each: NaN, infinities, the largest floats, subnormals."""
    info = np.finfo(dtype)
    big, tiny = float(info.max), float(info.smallest_subnormal)
    rows = [
        ([1.0, -np.inf, 0.0, 2.0, -1.0, 0.5], 0),  # exp(-inf) = 0 off the label
        ([1.0, -np.inf, 0.0, 2.0, -1.0, 0.5], 1),  # at the label: an infinite loss
        ([1.0, np.inf, 0.0, 2.0, -1.0, 0.5], 0),  # inf - inf: NaN
        ([1.0, np.nan, 0.0, 2.0, -1.0, 0.5], 2),
        ([-np.inf] * 6, 0),
        ([big, -big, 0.0, 0.0, 0.0, 0.0], 0),
        ([big, -big, 0.0, 0.0, 0.0, 0.0], 1),  # z_y - max overflows to -inf
        ([1e30, -1e30, 0.0, 3.0, 0.0, 0.0], 3),
        ([tiny, -tiny, 0.0, tiny, tiny, 0.0], 1),
        ([0.0] * 6, 5),
        ([60.0, -60.0, -1000.0, 1000.0, 0.0, 0.0], 3),
    ]
    return [(np.array([row], dtype=dtype), np.array([label])) for row, label in rows]


def check_cross_entropy(host, z, y, label_smoothing, what):
    """Loss and gradient to rounding, the count of correct rows (NumPy's argmax: the first
    of equal logits, the first NaN) exactly."""
    rtol = cross_entropy_tolerance(z.dtype)
    expected = z.copy()
    expected_correct, correct = np.zeros((), np.int64), np.full((), 7, np.int64)
    expected_loss = numpy_quietly(host.numpy.cross_entropy_, expected, y, label_smoothing,
                                  correct=expected_correct)  # fmt: skip
    loss = numpy_quietly(host.cupy.cross_entropy_, z, y, label_smoothing, correct=correct)
    assert correct == expected_correct + 7, f"{what}: correct rows"
    assert np.shape(loss) == () and np.asarray(loss).dtype == z.dtype, what
    assert_same(loss, expected_loss, rtol, what=f"{what}: loss")
    assert_same(z, expected, rtol, rtol / z.shape[0], what=f"{what}: gradient")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_kernels_equal_numpy(host, dtype, label_smoothing):
    """Loss, gradient and count of correct rows of ``cross_entropy_`` (one kernel: a row
    per element): ordinary logits, logits offset by 100, labels out of range
    (int64 and uint64), and rows of NaN, infinities, the largest floats and subnormals."""
    rng = np.random.default_rng(5)
    eps = label_smoothing
    with host.log.running() as ran:
        for offset in (0.0, 100.0):
            z = (rng.normal(size=(37, 10)) * 5 + offset).astype(dtype)
            y = rng.integers(0, 10, size=37)
            check_cross_entropy(host, z, y, eps, f"logits + {offset}, eps={eps}, {dtype}")
        labels = [np.array([1, bad, 2]) for bad in (-1, 10, 12, -(2**63), 2**63 - 1)]
        labels += [np.array([1, bad, 2], dtype=np.uint64) for bad in (10, 2**63, 2**64 - 1)]
        for y in labels:  # one label out of range per batch: its row alone makes the NaN
            z = rng.normal(size=(3, 10)).astype(dtype)
            check_cross_entropy(host, z, y, eps, f"labels {y.tolist()}, eps={eps}, {dtype}")
        for z, y in special_logit_rows(dtype):
            check_cross_entropy(host, z, y, eps, f"logits {z[0].tolist()}, label {y[0]}, {dtype}")
    assert ran == {host.module._SOFTMAX_CROSS_ENTROPY_ROWS.definition}
    assert ran <= kernels_of(host, "test_cross_entropy_kernels_equal_numpy")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_kernels_of_tied_huge_logits_equal_numpy(host, dtype, label_smoothing):
    """Two tied logits of 1e30: softmax 1/2 each, loss log 2. (The CUDA kernels once formed
    max + log sum exp(z - max) before subtracting, which rounds to the max: loss 0.)"""
    z = np.array([[1e30, 1e30, 0.0, 0.0]], dtype=dtype)
    check_cross_entropy(host, z, np.array([0]), label_smoothing, f"tied 1e30 logits, {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", optim.names())
def test_per_model_kernel_equals_numpy(host, name, dtype):
    """``run_formula_per_model_`` on a stack of 3 models: one launch of ``per_model_kernel``
    over three groups of different widths, the first and last sharing one table of scalars
    and the middle one its own (as weights and biases of different options do), special
    values included, computes what the NumPy backend's per-column path computes: bit for
    bit without transcendental functions."""
    optimizer_class = optim.optimizer_class(name)
    formula = optimizer_class.formula
    members = [optim.create(name, **one)
               for one in ({}, other_values(optimizer_class.hyperparameters), {})]  # fmt: skip
    for member in members:
        member.steps = 4
        member.advance()
    shared = [member.scalars(member.hyperparameter_values()) for member in members]
    own = [member.scalars({**member.hyperparameter_values(), "lr": 0.37}) for member in members]
    rng, dtype = np.random.default_rng(9), np.dtype(dtype)
    specials = special_values(dtype).size ** 2
    widths, starts = (16, 5, 7), [0]
    for rows, width in zip((specials // 48 + 3, 4, 2), widths):
        starts.append(starts[-1] + rows * 3 * width)
    groups = [(starts[g], starts[g + 1], widths[g]) for g in range(3)]
    size = starts[-1]
    arrays = with_grid([rng.normal(size=size).astype(dtype) for _ in formula.arrays], rng)
    expected, actual = [a.copy() for a in arrays], [a.copy() for a in arrays]
    scalars = [shared, own, shared]
    numpy_quietly(host.numpy.run_formula_per_model_, formula, expected, groups, scalars)
    with host.log.running() as ran:
        numpy_quietly(host.cupy.run_formula_per_model_, formula, actual, groups, scalars)
    assert ran == {host.module.per_model_kernel(formula).definition}
    rtol = tolerance(formula.exact, dtype)
    inputs = list(zip(formula.arrays, arrays))
    for array_name, got, want in zip(formula.arrays, actual, expected):
        assert_same(got, want, rtol, rtol * rounding_scale(arrays),
                    f"{name} per model, {dtype}: {array_name}", inputs)  # fmt: skip


@pytest.mark.parametrize(
    "groups, message",
    [([(0, 24, 4), (24, 30, 2)], "tile"), ([(0, 24, 4), (30, 36, 2)], "tile"),
     ([(0, 24, 0), (24, 36, 2)], "rows of 3"), ([(0, 20, 4), (20, 36, 2)], "rows of 3")],
    ids=["short", "a gap", "no width", "a ragged group"],
)  # fmt: skip
def test_the_per_model_kernel_refuses_groups_it_would_misread(host, groups, message):
    """The CUDA kernel indexes by the groups' starts and widths without checks of its own,
    so the host refuses groups that do not tile the arrays in rows of K models first."""
    formula = optim.optimizer_class("sgd").formula
    arrays = [np.zeros(36) for _ in formula.arrays]
    scalars = [[{"lr": 0.1}] * 3] * len(groups)
    with host.log.running() as ran, pytest.raises(ValueError, match=message):
        host.cupy.run_formula_per_model_(formula, arrays, groups, scalars)
    assert not ran


# Each module-level kernel of cupy_backend.py and the test that runs it.
MODULE_KERNEL_CASES = {
    "_ADD_SCALED": "test_add_scaled_kernel_equals_numpy",
    "_FLUSH_SUBNORMALS": "test_flush_subnormals_kernel_equals_numpy",
    "_SOFTMAX_CROSS_ENTROPY_ROWS": "test_cross_entropy_kernels_equal_numpy",
}


def kernels_of(host, test_name):
    """The definitions of the module-level kernels MODULE_KERNEL_CASES gives ``test_name``."""
    return {getattr(host.module, variable).definition
            for variable, test in MODULE_KERNEL_CASES.items() if test == test_name}  # fmt: skip


# ------------------------------------------------------------------------ coverage


def kernel_constructions(tree):
    """(enclosing function or None, assignment target or None, call) of every construction
    of a CuPy kernel in a module: cupy.ElementwiseKernel, ReductionKernel, RawKernel,
    RawModule, cupy.fuse."""
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                else function  # fmt: skip
            if isinstance(child, ast.Call):
                spelled = ast.unparse(child.func)
                if spelled.endswith(("Kernel", "RawModule", "fuse")):
                    target = None
                    if isinstance(node, ast.Assign) and function is None and node.value is child:
                        target = node.targets[0].id
                    found.append((function, target, spelled))
            visit(child, inner)

    visit(tree, None)
    return found


def test_every_kernel_cupy_backend_builds_has_a_case(imported):
    """Each module-level kernel of cupy_backend.py is in MODULE_KERNEL_CASES (and its test
    asserts it ran), and every other kernel is a formula's, built by elementwise_kernel
    (test_formula_kernel_compiled_for_the_cpu_equals_numpy) or per_model_kernel
    (test_per_model_kernel_equals_numpy)."""
    tree = ast.parse(CUPY_BACKEND_SOURCE.read_text(), filename=str(CUPY_BACKEND_SOURCE))
    constructions = kernel_constructions(tree)
    module_level = {target for function, target, _ in constructions if function is None}
    assert None not in module_level, "a module-level kernel that is not assigned to a name"
    assert module_level == set(MODULE_KERNEL_CASES), (
        "module-level kernels without a case (add one and its MODULE_KERNEL_CASES entry): "
        f"{sorted(module_level - set(MODULE_KERNEL_CASES))}; stale entries: "
        f"{sorted(set(MODULE_KERNEL_CASES) - module_level)}"
    )
    elsewhere = [(f, spelled) for f, _, spelled in constructions
                 if f not in (None, "elementwise_kernel", "per_model_kernel")]  # fmt: skip
    assert not elsewhere, f"kernels built where no case finds them: {elsewhere}"
    built = {getattr(imported.module, name).definition for name in MODULE_KERNEL_CASES}
    assert set(imported.built_at_import) == built
    assert len(imported.built_at_import) == len(built)


def test_every_kernel_of_a_formula_has_a_case(imported):
    """Every formula formula_cases() finds has inputs, and elementwise_kernel builds for
    each a kernel of its own, fastmlp_<formula name> with the formula's C translation as
    its body: what each case asserts it ran."""
    missing = [case.id for case in FORMULA_CASES if case.runs is None]
    assert not missing, f"formulas without inputs (add them to LAYER_FORMULA_RUNS): {missing}"
    assert len({case.id for case in FORMULA_CASES}) == len(FORMULA_CASES)
    definitions = {}
    for case in FORMULA_CASES:
        definition = imported.module.elementwise_kernel(case.formula).definition
        assert (definition.name, definition.code[0]) == formula_kernel(case.formula), case.id
        definitions.setdefault(definition, set()).add(id(case.formula))
    shared = [d.name for d, formulas in definitions.items() if len(formulas) > 1]
    assert not shared, f"formulas whose kernels cannot be told apart: {shared}"


# Where the library makes formulas or runs them, as file:top-level definition, and where
# formula_cases() finds those formulas; a new place needs its formulas enumerated there,
# then a line here. The backends' own run_formula_ / bind_formula calls run the formulas
# of their callers.
FORMULA_SOURCES = {
    "optim/optimizer.py:Optimizer": "each registered optimizer's update, one model's and a stack's",
    "nn/activations/activation.py:Activation": "each registered activation's formulas",
    "backends/base.py:forward_kernel": "the fused bias forward of each activation",
    "backends/base.py:backward_kernel": "the in-place gradient of each activation",
    "nn/layers/activation.py:Activation": "forward_kernel, backward_kernel of activations",
    "nn/layers/dense.py:Dense": "forward_kernel of the identity (the unfused bias add)",
    "nn/layers/dense.py:<module>": "the per-model weight decay (layer_formulas)",
    "backends/base.py:Backend": "a stack's optimizer update, scalars as row vectors (per-model)",
    "nn/layers/dropout.py:<module>": "module-level formulas of the layers (layer_formulas)",
    "nn/layers/dropout.py:Dropout": "bind_formula of those",
}
MAKES_FORMULAS = {"formula", "Formula", "with_bias", "in_place", "scalars_as_arrays"}
RUNS_FORMULAS = {"run_formula_", "bind_formula", "forward_kernel", "backward_kernel"}


def formula_call_sites():
    """file:top-level definition of every call that makes or runs a formula in fastmlp/
    (outside formulas.py, and not counting the backends' own running of formulas)."""
    sites = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "backends/formulas.py":
            continue
        calls = (
            MAKES_FORMULAS if relative.startswith("backends/") else MAKES_FORMULAS | RUNS_FORMULAS
        )
        for statement in ast.parse(path.read_text(), filename=str(path)).body:
            where = getattr(statement, "name", "<module>")
            for node in ast.walk(statement):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    if name in calls:
                        sites.add(f"{relative}:{where}")
    return sites


def test_every_kernel_formula_source_in_the_library_is_enumerated():
    """Every place in the library that makes or runs a formula is one whose formulas
    formula_cases() enumerates (FORMULA_SOURCES)."""
    sites = formula_call_sites()
    assert sites <= set(FORMULA_SOURCES), (
        "formulas made or run where tests/test_cuda_source.py does not look for them: "
        f"{sorted(sites - set(FORMULA_SOURCES))}"
    )
    assert set(FORMULA_SOURCES) <= sites, f"stale: {sorted(set(FORMULA_SOURCES) - sites)}"
