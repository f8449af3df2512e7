"""Every backend offers the base Backend's API with identical signatures; device selection.

The CuPy backend is checked by importing it where CuPy is installed, and otherwise
statically, from the source of ``fastmlp/backends/cupy_backend.py`` with ``ast``, so this
file proves the contract on CPU-only machines too.
"""

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import fastmlp
from fastmlp.backends import Backend, NumpyBackend

try:
    from fastmlp.backends.numba_backend import NumbaBackend
except ImportError:  # numba is optional (extra "jit")
    NumbaBackend = None

CPU_BACKENDS = [NumpyBackend] + ([NumbaBackend] if NumbaBackend is not None else [])

CUPY_BACKEND_SOURCE = Path(fastmlp.backends.__file__).with_name("cupy_backend.py")


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
