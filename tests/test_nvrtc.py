"""Every CUDA kernel of the CuPy backend compiles with NVIDIA's runtime compiler, no GPU needed.

``tests/test_cuda_source.py`` runs each kernel's body as C++ on the CPU; this module compiles
each of them as CUDA, in the source CuPy writes around an ``ElementwiseKernel`` (its headers,
``typedef float T;``, ``CArray`` parameters, ``CUPY_FOR`` over the elements, a non-raw
input bound as ``const T &x = _raw_x[_ind.get()];``), with CuPy's own compiler options and
NVRTC, for compute capability 9.0 (H100/H200), in float32 and float64, with 32- and 64-bit
indexing. A kernel that would not compile on a GPU machine (a CUDA math function that
does not exist, an overload that is ambiguous for float, a type that does not convert)
fails here. NVRTC runs on the host: it needs CuPy and NVRTC installed (``pip install
cupy-cuda13x cuda-pathfinder nvidia-cuda-nvrtc``), not a driver or a device; without them
the module is skipped. The kernels are the ones ``test_cuda_source.py`` enumerates: the
module-level kernels and a formula kernel (one model's and a stack's) for every formula.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.cuda_host import C_TYPES, import_cupy_backend
from tests.test_cuda_source import (
    FORMULA_CASES,
    KernelDefinition,
    KernelLog,
    recording_stand_in,
)

pytestmark = pytest.mark.nvrtc

cupy = pytest.importorskip("cupy", reason="needs CuPy (NVRTC compiles without a GPU)")
cupy_core = pytest.importorskip("cupy._core.core")
cupy_compiler = pytest.importorskip("cupy.cuda.compiler")

ARCHITECTURE = "90"  # H100 and H200
DTYPES = ["float32", "float64"]
LABEL_TYPE = C_TYPES[np.dtype("int64")][0]  # S: the labels, int64 on the device


def parameters(text: str) -> list[tuple[bool, str, str]]:
    """(raw, type, name) of each parameter of an ElementwiseKernel's in_params/out_params."""
    found = []
    for item in text.split(","):
        *raw, type_name, name = item.split()
        found.append((bool(raw), type_name, name))
    return found


def cupy_source(definition: KernelDefinition, scalar_inputs: set[str], use_32bit: bool) -> str:
    """The CUDA source CuPy writes for ``definition`` called with 1-D contiguous arrays for
    every array parameter and host scalars for ``scalar_inputs``."""
    inputs, outputs = parameters(definition.in_params), parameters(definition.out_params)
    declared, bindings = [], []
    for index, (raw, type_name, name) in enumerate(inputs + outputs):
        c_type = type_name if type_name in ("T", "S") else C_TYPES[np.dtype(type_name)][0]
        const = "const " if index < len(inputs) else ""
        if name in scalar_inputs:
            declared.append(f"const {c_type} {name}")
            continue
        array = f"CArray<{c_type}, 1, true, {'true' if use_32bit else 'false'}>"
        declared.append(f"{const}{array} {name if raw else '_raw_' + name}")
        if not raw:
            bindings.append(f"{const}{c_type} &{name} = _raw_{name}[_ind.get()];")
    declared.append(f"CIndexer<1, {'true' if use_32bit else 'false'}> _ind")
    headers = "".join(f"#include <{header}>\n" for header in cupy_core._cupy_header_list)
    newline = "\n"
    return f"""{headers}
typedef {{T}} T;
typedef {LABEL_TYPE} S;
extern "C" __global__ void {definition.name}({", ".join(declared)}) {{
  #pragma unroll 1
  CUPY_FOR(i, _ind.size()) {{
    _ind.set(i);
    {newline.join(bindings)}
    {definition.code[0]};
  }}
}}
"""


def compile_for_the_gpu(source: str) -> bytes:
    """PTX of ``source`` for compute capability ARCHITECTURE, with CuPy's options. CuPy asks
    the current device for its architecture; here there is none, so it is given."""
    options = tuple(cupy_core.assemble_cupy_compiler_options(()))
    arch_options = (f"-arch=compute_{ARCHITECTURE}", "ptx")
    original = cupy_compiler._get_arch_for_options_for_nvrtc
    cupy_compiler._get_arch_for_options_for_nvrtc = lambda _arch: arch_options
    try:
        ptx, _mapping = cupy_compiler.compile_using_nvrtc(source, options, arch=ARCHITECTURE)
    finally:
        cupy_compiler._get_arch_for_options_for_nvrtc = original
    return ptx if isinstance(ptx, bytes) else ptx.encode()


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """(id, definition, scalar inputs) of every kernel the CuPy backend builds."""
    log = KernelLog()
    stand_in = recording_stand_in(tmp_path_factory.mktemp("nvrtc"), log)
    module = import_cupy_backend(stand_in, "cupy_backend_for_nvrtc")
    found = []
    scalars_of_module_kernels = {
        "fastmlp_add_scaled": {"alpha"},
        "fastmlp_flush_subnormals": {"threshold"},
        "fastmlp_softmax_cross_entropy_rows": {"classes", "onehot_weight", "uniform", "n", "nan"},
    }
    for definition in log.built:
        found.append((definition.name, definition, scalars_of_module_kernels[definition.name]))
    for case in FORMULA_CASES:
        scalars = set(case.formula.scalars)
        found.append((case.id, module.elementwise_kernel(case.formula).definition, scalars))
        per_model = module.per_model_kernel(case.formula).definition
        found.append((f"{case.id}-stack", per_model, {"q_groups", "q_models"}))
    return found


def try_nvrtc() -> str | None:
    """None when NVRTC loads and compiles, else why not."""
    try:
        compile_for_the_gpu('extern "C" __global__ void probe(float* x) { x[0] = erff(x[0]); }')
    except Exception as error:  # noqa: BLE001 - any failure to load NVRTC means: skip
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return None


@pytest.fixture(scope="module")
def nvrtc():
    reason = try_nvrtc()
    if reason is not None:
        pytest.skip(f"NVRTC does not compile here ({reason}); pip install nvidia-cuda-nvrtc")


def test_kernels_cover_the_module_level_kernels_and_every_formula(kernels):
    names = {kernel_id for kernel_id, _, _ in kernels}
    assert {"fastmlp_add_scaled", "fastmlp_flush_subnormals",
            "fastmlp_softmax_cross_entropy_rows"} <= names  # fmt: skip
    assert len(kernels) == 3 + 2 * len(FORMULA_CASES)


@pytest.mark.parametrize("use_32bit", [True, False], ids=["index32", "index64"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_cupy_backend_kernel_compiles_with_nvrtc(nvrtc, kernels, dtype, use_32bit):
    """Each kernel, as CuPy would write it for 1-D arrays of ``dtype``, compiles to PTX; a
    failure names the kernel and NVRTC's first error line."""
    failures, c_type = [], C_TYPES[np.dtype(dtype)][0]
    for kernel_id, definition, scalars in kernels:
        source = cupy_source(definition, scalars, use_32bit).replace("{T}", c_type)
        try:
            ptx = compile_for_the_gpu(source)
        except cupy_compiler.CompileException as error:
            first = next((line for line in str(error).splitlines() if "error" in line), "")
            failures.append(f"{kernel_id}: {first.strip()}")
            continue
        assert f".entry {definition.name}(".encode() in ptx, kernel_id
    assert not failures, "kernels NVRTC does not compile:\n" + "\n".join(failures)
