"""Every backend offers the base Backend's API with identical signatures; device selection.

The CuPy backend is checked by importing it where CuPy is installed, and otherwise
statically, from the source of ``fastmlp/backends/cupy_backend.py`` with ``ast``, so this
file proves the contract on CPU-only machines too: the methods' signatures, and for the
module-level CUDA kernels, that each body names only what it declares and that each call
passes as many arguments as the kernel takes.
"""

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.backends import Backend, NumpyBackend
from tests.cuda_host import CUPY_BACKEND_SOURCE, CXX, import_cupy_backend, kernel_stand_in

try:
    from fastmlp.backends.numba_backend import NumbaBackend
except ImportError:  # numba is optional (extra "jit")
    NumbaBackend = None

CPU_BACKENDS = [NumpyBackend] + ([NumbaBackend] if NumbaBackend is not None else [])


def public_methods(cls):
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def parameter_spec(function):
    """(name, kind, default) of every parameter: what callers rely on (not annotations)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def ast_parameter_spec(node):
    """parameter_spec of a function definition read from source."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    defaults = [inspect.Parameter.empty] * (len(positional) - len(args.defaults)) + [
        ast.literal_eval(d) for d in args.defaults
    ]
    spec = []
    for i, arg in enumerate(positional):
        kind = (
            inspect.Parameter.POSITIONAL_ONLY
            if i < len(args.posonlyargs)
            else inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        spec.append((arg.arg, kind, defaults[i]))
    if args.vararg:
        spec.append((args.vararg.arg, inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.empty))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        value = inspect.Parameter.empty if default is None else ast.literal_eval(default)
        spec.append((arg.arg, inspect.Parameter.KEYWORD_ONLY, value))
    if args.kwarg:
        spec.append((args.kwarg.arg, inspect.Parameter.VAR_KEYWORD, inspect.Parameter.empty))
    return spec


BASE_METHODS = public_methods(Backend)


def cuda_available():
    return any(device.startswith("cuda") for device in fastmlp.available_devices())


def test_base_backend_has_the_documented_api():
    """docs/ARCHITECTURE.md, "The backend contract": array plumbing and the fused kernels."""
    for name in [
        "asarray",
        "to_numpy",
        "empty",
        "zeros",
        "rng",
        "uniform_",
        "synchronize",
        "available_memory",
        "run_formula_",
        "bind_formula",
        "bias_activation_",
        "activation_grad_",
        "column_sums_",
        "add_scaled_",
        "softmax_",
        "cross_entropy_",
        "mean_squared_error_",
        "flush_subnormals_",
    ]:
        assert name in BASE_METHODS, name


def test_every_loss_names_a_kernel_every_backend_has():
    from fastmlp.nn.losses import LOSSES

    for name in LOSSES:
        assert LOSSES.get(name).kernel in BASE_METHODS, name


@pytest.mark.parametrize("backend_class", CPU_BACKENDS, ids=lambda cls: cls.name)
@pytest.mark.parametrize("name", sorted(BASE_METHODS))
def test_cpu_backend_method_has_the_base_signature(backend_class, name):
    assert parameter_spec(getattr(backend_class, name)) == parameter_spec(BASE_METHODS[name])


@pytest.mark.parametrize("backend_class", CPU_BACKENDS, ids=lambda cls: cls.name)
def test_cpu_backend_adds_no_public_method_the_base_lacks(backend_class):
    assert set(public_methods(backend_class)) == set(BASE_METHODS)


def cupy_class_definition():
    tree = ast.parse(CUPY_BACKEND_SOURCE.read_text(), filename=str(CUPY_BACKEND_SOURCE))
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CupyBackend"]
    assert len(classes) == 1, "cupy_backend.py defines class CupyBackend once"
    return classes[0]


def test_cupy_backend_source_subclasses_backend():
    bases = [ast.unparse(base) for base in cupy_class_definition().bases]
    assert bases == ["Backend"]


def test_cupy_backend_source_overrides_only_base_methods_with_base_signatures():
    """Static check: each public method CupyBackend defines is a base method, same signature."""
    methods = [
        node
        for node in cupy_class_definition().body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and not node.name.startswith("_")
    ]
    assert methods, "CupyBackend overrides the hot kernels"
    for node in methods:
        assert node.name in BASE_METHODS, f"CupyBackend.{node.name} is not a base method"
        assert ast_parameter_spec(node) == parameter_spec(BASE_METHODS[node.name]), node.name


def cupy_kernel_definitions():
    """{name: (kind, arguments)} of the module-level ``cupy.ElementwiseKernel`` and
    ``cupy.ReductionKernel`` definitions of cupy_backend.py, read from source."""
    tree = ast.parse(CUPY_BACKEND_SOURCE.read_text(), filename=str(CUPY_BACKEND_SOURCE))
    kernels = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            constructor = ast.unparse(node.value.func)
            if constructor in ("cupy.ElementwiseKernel", "cupy.ReductionKernel"):
                arguments = [ast.literal_eval(argument) for argument in node.value.args]
                kernels[node.targets[0].id] = (constructor.removeprefix("cupy."), arguments)
    return kernels


def kernel_parameter_names(declaration):
    """The names in a CuPy parameter list such as ``"raw T z, S y, int64 classes"``."""
    return [item.split()[-1] for item in declaration.split(",") if item.strip()]


CUPY_KERNELS = cupy_kernel_definitions()
# what a kernel body may name besides its parameters and its own locals: the element index,
# type names, C keywords, CUDA math functions, and a reduction's operands
C_NAMES = {"i", "T", "S", "ptrdiff_t", "bool", "const", "if", "else", "for", "exp", "log",
           "fabs", "a", "b"}  # fmt: skip


def test_cupy_source_defines_the_loss_kernels():
    assert "_SOFTMAX_CROSS_ENTROPY_ROWS" in CUPY_KERNELS


@pytest.mark.parametrize("name", sorted(CUPY_KERNELS))
def test_cupy_kernel_bodies_name_only_their_parameters_and_locals(name):
    """Static check of each CUDA body (a misspelt or dropped parameter compiles only on a
    GPU): every identifier outside comments is declared."""
    kind, arguments = CUPY_KERNELS[name]
    declared = set(kernel_parameter_names(arguments[0]) + kernel_parameter_names(arguments[1]))
    code = [arguments[2]] if kind == "ElementwiseKernel" else arguments[2:5]
    text = re.sub(r"//[^\n]*", "", "\n".join(code))
    local = set(re.findall(r"\b(?:T|S|ptrdiff_t|bool)\s+([A-Za-z_]\w*)\s*=", text))
    text = re.sub(r"\b\d+(\.\d*)?([eE][-+]?\d+)?[fF]?", " ", text)
    unknown = set(re.findall(r"[A-Za-z_]\w*", text)) - declared - local - C_NAMES
    assert not unknown, f"{name} names {sorted(unknown)}"


def test_cupy_kernel_calls_pass_as_many_arguments_as_the_kernels_declare():
    """Every call of a module-level kernel in cupy_backend.py passes its inputs, and for an
    elementwise kernel optionally its outputs: nothing more, nothing less."""
    tree = ast.parse(CUPY_BACKEND_SOURCE.read_text(), filename=str(CUPY_BACKEND_SOURCE))
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in CUPY_KERNELS
    ]
    assert {call.func.id for call in calls} == set(CUPY_KERNELS), "every kernel is called"
    for call in calls:
        kind, arguments = CUPY_KERNELS[call.func.id]
        inputs = len(kernel_parameter_names(arguments[0]))
        outputs = len(kernel_parameter_names(arguments[1]))
        allowed = {inputs, inputs + outputs} if kind == "ElementwiseKernel" else {inputs}
        assert len(call.args) in allowed, f"{call.func.id}: {ast.unparse(call)}"


def test_ast_signature_reader_agrees_with_inspect_on_the_numpy_backend():
    """The static reader above reads NumpyBackend's source exactly as inspect does."""
    source = Path(inspect.getsourcefile(NumpyBackend)).read_text()
    (cls,) = [
        n
        for n in ast.parse(source).body
        if isinstance(n, ast.ClassDef) and n.name == "NumpyBackend"
    ]
    checked = 0
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            assert ast_parameter_spec(node) == parameter_spec(getattr(NumpyBackend, node.name))
            checked += 1
    assert checked >= 10


def test_cupy_backend_class_has_the_base_signatures_when_cupy_is_importable():
    pytest.importorskip("cupy")
    from fastmlp.backends.cupy_backend import CupyBackend

    assert issubclass(CupyBackend, Backend)
    assert set(public_methods(CupyBackend)) == set(BASE_METHODS)
    for name, method in BASE_METHODS.items():
        assert parameter_spec(getattr(CupyBackend, name)) == parameter_spec(method), name


# ------------------------------------------- the CUDA loss kernels, compiled for the CPU


@pytest.fixture(scope="module")
def host_cupy_backend(tmp_path_factory):
    """CupyBackend from cupy_backend.py, imported over the stand-in ``cupy``
    (``tests/cuda_host.py``)."""
    if CXX is None:
        pytest.skip("needs a C++ compiler")
    stand_in = kernel_stand_in(tmp_path_factory.mktemp("cuda_on_the_host"))
    return import_cupy_backend(stand_in).CupyBackend(0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.6])
def test_cupy_cross_entropy_compiled_for_the_cpu_equals_the_reference(
    host_cupy_backend, dtype, label_smoothing
):
    """The CUDA loss kernels, run on the CPU, compute the reference body's loss and
    gradient, with and without label smoothing; out-of-range labels (negative, too large,
    huge unsigned) give a NaN loss and lose their onehot term only."""
    rng = np.random.default_rng(11)
    z = (rng.normal(size=(37, 10)) * 5).astype(dtype)
    z[0] = [1000, -1000, 0, 0, 0, 0, 0, 0, 0, 3]
    y = rng.integers(0, 10, size=37)
    expected = z.copy()
    expected_loss = Backend().cross_entropy_(expected, y, label_smoothing)
    loss = host_cupy_backend.cross_entropy_(z, y, label_smoothing)
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(float(loss), float(expected_loss), rtol=tolerance)
    np.testing.assert_allclose(z, expected, rtol=tolerance, atol=tolerance / 37)
    for bad in (np.array([0, -1, 12, 3]), np.array([1, 2**64 - 1, 2, 0], dtype=np.uint64)):
        logits = rng.normal(size=(4, 10)).astype(dtype)
        valid = np.array([True, False, bad[2] < 10, True])
        assert np.isnan(host_cupy_backend.cross_entropy_(logits, bad, label_smoothing))
        np.testing.assert_allclose(logits[~valid].sum(axis=1), (1 - label_smoothing) / 4,
                                   rtol=tolerance)  # fmt: skip
        np.testing.assert_allclose(logits[valid].sum(axis=1), 0.0, atol=tolerance)


# ----------------------------------------------------------------- device selection


@pytest.mark.skipif(NumbaBackend is None, reason="needs numba")
def test_numba_names_the_numba_backend():
    assert fastmlp.get_backend("numba").name == "numba"


@pytest.mark.parametrize("device", ["cpu", "numpy", "CPU", " Numpy "])
def test_cpu_device_names_give_a_numpy_backend(device):
    """ "cpu" is NumPy (with compiled optimizer updates when Numba is installed); "numpy" is
    always the plain NumPy backend."""
    backend = fastmlp.get_backend(device)
    assert isinstance(backend, NumpyBackend)
    expected = "numpy" if device.strip().lower() == "numpy" or NumbaBackend is None else "numba"
    assert backend.name == expected and backend.device == "cpu"
    assert backend.xp is __import__("numpy")


def test_get_backend_returns_a_backend_instance_unchanged():
    backend = fastmlp.get_backend("cpu")
    assert fastmlp.get_backend(backend) is backend


@pytest.mark.skipif(cuda_available(), reason="this machine has a usable CUDA GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cupy", "CUDA"])
def test_cuda_without_cupy_or_gpu_is_an_error_that_says_what_to_do(device):
    """Never a silent CPU fallback: a DeviceUnavailableError saying what to install/check."""
    with pytest.raises(fastmlp.DeviceUnavailableError) as error:
        fastmlp.get_backend(device)
    message = str(error.value)
    assert 'pip install "fastmlp[cuda12]"' in message or "no CUDA GPU" in message, message


def test_auto_picks_cuda_exactly_when_a_gpu_is_usable():
    backend = fastmlp.get_backend("auto")
    if cuda_available():
        assert backend.device.startswith("cuda")
    else:
        assert isinstance(backend, NumpyBackend)


@pytest.mark.parametrize("device", ["tpu", "", "cuda:x", "cuda:-1", "opencl", "cpu:0"])
def test_unknown_device_strings_raise_value_error(device):
    with pytest.raises(ValueError, match="unknown device"):
        fastmlp.get_backend(device)


def independent_gpu_count():
    """CUDA devices as CuPy itself reports them (0 without CuPy or a driver): not through
    fastmlp, so the test below compares two sources."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


def test_available_devices_lists_the_cpu_first_then_every_gpu():
    devices = fastmlp.available_devices()
    assert devices[0] == "cpu"
    assert devices[1:] == [f"cuda:{index}" for index in range(independent_gpu_count())]


def test_importing_fastmlp_and_building_a_cpu_model_never_imports_cupy():
    code = (
        "import sys, numpy as np, fastmlp\n"
        "model = fastmlp.MLP(input_size=4, hidden_sizes=(3,), output_size=2, seed=0)\n"
        "optimizer = fastmlp.optim.create('adam')\n"
        "model.loss_and_grad(np.zeros((2, 4), dtype=np.float32), np.array([0, 1]))\n"
        "optimizer.step(model.params, model.grads)\n"
        "fastmlp.MLP()\n"
        "assert 'cupy' not in sys.modules, 'cupy was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
