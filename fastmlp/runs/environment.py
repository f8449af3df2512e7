"""What determines a run's numbers besides its settings: versions, BLAS, threads, device.

The same settings can give slightly different weights on another BLAS library, another
thread count (OpenBLAS splits matrix products differently, which changes the rounding) or
another version of NumPy. :func:`describe_environment` records all of it in a run's
``config.json`` and ``summary.json``; :func:`blas_thread_limit` pins the thread count, so a
run started with ``blas_threads`` set (every sweep trial is) can be repeated exactly.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import fastmlp
from fastmlp.backends import Backend
from fastmlp.errors import UserError

_PACKAGES = ("numpy", "numba", "cupy", "cupy-cuda12x", "cupy-cuda13x")


def _threadpool_info() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return threadpool_info()


def blas_library() -> dict[str, Any]:
    """The BLAS NumPy uses: name, version and thread count (from threadpoolctl when it is
    installed, else NumPy's build configuration). Other packages may load their own BLAS
    into the process (SciPy's wheels bring another OpenBLAS): NumPy's is the one inside its
    installation (``numpy.libs`` beside a wheel's package), or the only one loaded."""
    config = getattr(getattr(np, "__config__", None), "CONFIG", {})
    blas = config.get("Build Dependencies", {}).get("blas", {})
    pools = [pool for pool in _threadpool_info() if pool.get("user_api") == "blas"]
    package = Path(np.__file__).resolve().parent
    homes = (str(package) + os.sep, str(package.with_name("numpy.libs")) + os.sep)
    numpys = [pool for pool in pools if str(pool.get("filepath", "")).startswith(homes)]
    found = numpys or (pools if len(pools) == 1 else [])
    if found:
        return {
            "name": found[0].get("internal_api"),
            "version": found[0].get("version"),
            "threads": found[0].get("num_threads"),
        }
    return {"name": blas.get("name"), "version": blas.get("version"), "threads": None}


def git_commit() -> str | None:
    """The commit of the fastmlp checkout this runs from (``+dirty`` with local changes),
    or None for an installed release."""
    root = Path(fastmlp.__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def _versions() -> dict[str, str]:
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def describe_environment(backend: Backend, dtype: str, seed: int | None) -> dict[str, Any]:
    """Everything besides the settings that decides a run's numbers (JSON-serialisable)."""
    return {
        "fastmlp_version": fastmlp.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "packages": _versions(),
        "blas": blas_library(),
        "backend": backend.name,
        "device": backend.device,
        "dtype": dtype,
        "seed": seed,
        "machine": platform.machine(),
        "processor": processor_name(),
        "cpu_count": os.cpu_count(),
    }


def processor_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


@contextmanager
def blas_thread_limit(threads: int | None) -> Iterator[None]:
    """Limit BLAS (and OpenMP) to ``threads`` threads for the block; None leaves them as
    they are. Needs threadpoolctl (``pip install "fastmlp[sweep]"``)."""
    if threads is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise UserError(
            f"blas_threads={threads} needs threadpoolctl: pip install threadpoolctl "
            '(or "fastmlp[sweep]")'
        ) from None
    with threadpool_limits(limits=threads):
        yield
