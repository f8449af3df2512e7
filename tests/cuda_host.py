"""The CUDA kernels of the CuPy backend, compiled for the CPU.

Without a GPU the CuPy code is run here on NumPy arrays: ``cupy_backend.py`` is imported
with a stand-in ``cupy`` whose ElementwiseKernel and ReductionKernel compile the CUDA C++
code of each kernel for the CPU (the system C++ compiler), in the loop CuPy generates
around it. That runs the host code of ``CupyBackend`` and the arithmetic of its kernels as
written (not CuPy's own type rules, launch code or GPU math library).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

import fastmlp.backends

CUPY_BACKEND_SOURCE = Path(fastmlp.backends.__file__).with_name("cupy_backend.py")

CXX = shutil.which("g++") or shutil.which("c++")
C_TYPES = {
    np.dtype("float32"): ("float", ctypes.c_float),
    np.dtype("float64"): ("double", ctypes.c_double),
    np.dtype("int64"): ("long long", ctypes.c_longlong),
    np.dtype("uint64"): ("unsigned long long", ctypes.c_ulonglong),
}
# CUDA overloads its math functions for float; std:: has the same overloads (the global
# C functions would compute a float kernel's exp or erf in double)
C_PRELUDE = (
    "#include <cmath>\n#include <cstddef>\n"
    "using std::erf, std::exp, std::expm1, std::fabs, std::log, std::log1p, std::sqrt,"
    " std::tanh;\n"
)
# as written: no contraction of a * b + c into a fused multiply-add (where the CPU has one)
CXX_FLAGS = ("-std=c++17", "-O1", "-ffp-contract=off", "-shared", "-fPIC")


class HostKernel:
    """A CuPy kernel definition whose code is compiled for the CPU, once per source."""

    def __init__(self, directory, in_params, out_params, *code, **_options):
        self.directory = directory
        self.inputs = [tuple(item.split()) for item in in_params.split(",")]
        self.outputs = [tuple(item.split()) for item in out_params.split(",")]
        self.code = code
        self.functions = {}

    def dtypes(self, values):
        """The type placeholders T and S, bound by the first array given for each."""
        bound = {}
        for (*_raw, type_name, _name), value in zip(self.inputs + self.outputs, values):
            if type_name in ("T", "S") and isinstance(value, np.ndarray):
                bound.setdefault(type_name, value.dtype)
        return bound

    def run(self, body, parameters, arguments, bound):
        """Compile ``kernel(parameters) { body }`` with T and S typedef'd, and call it."""
        source = C_PRELUDE + "".join(f"typedef {C_TYPES[bound[t]][0]} {t};\n" for t in bound)
        source += f'extern "C" void kernel({", ".join(parameters)}) {{\n{body}\n}}\n'
        if source not in self.functions:
            stem = self.directory / hashlib.sha256(source.encode()).hexdigest()[:16]
            stem.with_suffix(".cpp").write_text(source)
            command = [CXX, *CXX_FLAGS, "-o", f"{stem}.so"]
            subprocess.run([*command, f"{stem}.cpp"], check=True)
            self.functions[source] = ctypes.CDLL(f"{stem}.so").kernel
        self.functions[source](*arguments)


class HostElementwiseKernel(HostKernel):
    """``cupy.ElementwiseKernel``: the body runs for each index i of the output; a raw array
    is a pointer, any other array its element i, a scalar its value. Inputs are broadcast
    to the outputs' shape (a row vector over the rows, as CuPy indexes it), outputs must
    have it; outputs not given are allocated, as CuPy does."""

    def __call__(self, *args):
        declared = self.inputs + self.outputs
        values = list(args) + [None] * (len(declared) - len(args))
        bound = self.dtypes(values)
        elements = [v for (*raw, _, _), v in zip(declared, values)
                    if not raw and isinstance(v, np.ndarray) and v.ndim > 0]  # fmt: skip
        shape = np.broadcast_shapes(*(v.shape for v in elements))
        size = int(np.prod(shape))
        parameters, locals_, arguments = ["ptrdiff_t size"], [], [ctypes.c_ssize_t(size)]
        strided = {}  # outputs given as strided views (CuPy indexes any strides): their copies
        for index, (*raw, type_name, name) in enumerate(declared):
            dtype = bound[type_name] if type_name in bound else np.dtype(type_name)
            if values[index] is None:
                values[index] = np.empty(shape, dtype=dtype)
            value, (c_type, c_scalar) = values[index], C_TYPES[dtype]
            if isinstance(value, np.ndarray) and (raw or value.ndim > 0):
                if not raw and value.shape != shape:
                    assert index < len(self.inputs), f"{name}: CuPy broadcasts no output"
                    value = values[index] = np.ascontiguousarray(np.broadcast_to(value, shape))
                if not raw and not value.flags.c_contiguous:
                    if index >= len(self.inputs):
                        strided[index] = value
                    value = values[index] = np.ascontiguousarray(value)  # kept until the run
                assert value.flags.c_contiguous and value.dtype == dtype, name
                parameters.append(f"{c_type}* {name}_")
                # as CuPy declares them: an input element const, an output's a reference
                const = "const " if index < len(self.inputs) else ""
                locals_.append(f"{c_type}* {name} = {name}_;" if raw
                               else f"{const}{c_type}& {name} = {name}_[i];")  # fmt: skip
                arguments.append(ctypes.c_void_p(value.ctypes.data))
            else:  # a scalar: const, as CuPy passes it
                parameters.append(f"const {c_type} {name}")
                arguments.append(c_scalar(value))
        body = "for (ptrdiff_t i = 0; i < size; ++i) {\n" + "\n".join(locals_)
        self.run(body + "\n" + self.code[0] + "\n}", parameters, arguments, bound)
        for index, view in strided.items():
            view[...] = values[index]
            values[index] = view
        outputs = values[len(self.inputs) :]
        return outputs[0] if len(outputs) == 1 else outputs


class HostReductionKernel(HostKernel):
    """``cupy.ReductionKernel`` over one axis: a = identity, then a = reduce(a, map(...)) for
    each element along the axis (in order; CuPy reduces as a tree), then post_map."""

    def __call__(self, *args, axis):
        map_expr, reduce_expr, post_map_expr, identity = self.code[:4]
        bound = self.dtypes(args)
        arrays = [np.ascontiguousarray(np.moveaxis(a, axis, -1))
                  for a in np.broadcast_arrays(*args)]  # fmt: skip
        rows, cols = int(np.prod(arrays[0].shape[:-1])), arrays[0].shape[-1]
        (_, output), c_type = self.outputs[0][-2:], C_TYPES[bound["T"]][0]
        result = np.empty(arrays[0].shape[:-1], dtype=bound["T"])
        parameters = ["ptrdiff_t rows", "ptrdiff_t cols", f"{c_type}* {output}_"]
        parameters += [f"{c_type}* {name}_" for *_, name in self.inputs]
        reads = "".join(f"T {name} = {name}_[j * cols + k]; " for *_, name in self.inputs)
        body = (
            f"for (ptrdiff_t j = 0; j < rows; ++j) {{\nT a = (T)({identity});\n"
            f"for (ptrdiff_t k = 0; k < cols; ++k) {{ {reads}T b = ({map_expr}); "
            f"a = ({reduce_expr}); }}\nT& {output} = {output}_[j];\n{post_map_expr};\n}}"
        )
        arguments = [ctypes.c_ssize_t(rows), ctypes.c_ssize_t(cols)]
        arguments += [ctypes.c_void_p(a.ctypes.data) for a in (result, *arrays)]
        self.run(body, parameters, arguments, bound)
        return result


def import_cupy_backend(stand_in: types.ModuleType, name: str = "cupy_backend_on_the_host") -> Any:
    """``fastmlp/backends/cupy_backend.py`` imported as a new module over ``stand_in``."""
    spec = importlib.util.spec_from_file_location(name, CUPY_BACKEND_SOURCE)
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("cupy")
    sys.modules["cupy"] = stand_in
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["cupy"]
        else:
            sys.modules["cupy"] = saved
    return module


def kernel_stand_in(directory: Path) -> types.ModuleType:
    """A stand-in ``cupy`` with the host kernels, NumPy's ``asarray``, ``empty`` and
    ``int64``, and a do-nothing device."""
    stand_in = types.ModuleType("cupy")
    stand_in.ElementwiseKernel = functools.partial(HostElementwiseKernel, directory)
    stand_in.ReductionKernel = functools.partial(HostReductionKernel, directory)
    stand_in.asarray, stand_in.empty, stand_in.int64 = np.asarray, np.empty, np.int64
    device = types.SimpleNamespace(use=lambda: None)
    stand_in.cuda = types.SimpleNamespace(Device=lambda _device_id: device)
    return stand_in
