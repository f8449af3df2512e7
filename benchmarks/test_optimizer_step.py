"""One optimizer step on a flat buffer: the backend's fused kernel vs the reference evaluation.

Every registered optimizer, at the reference network's 134,794 parameters and at 10 million
(the memory-bound regime). ``test_fused_step`` times ``optimizer.step`` (host scalars, one
kernel launch); ``test_reference_step`` the same update formula evaluated on whole arrays by
the base ``Backend`` (the specification the kernels are checked against).
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.conftest import ReferenceBackend, synchronized
from fastmlp import optim

SIZES = {"135k": 134_794, "10M": 10_000_000}


def buffers(backend, size):
    rng = np.random.default_rng(0)
    p, g = (backend.asarray(rng.standard_normal(size, dtype=np.float32)) for _ in range(2))
    return p, g


@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
@pytest.mark.parametrize("name", optim.names())
def test_fused_step(benchmark, backend, name, size):
    benchmark.group = f"optimizer step {size}"
    p, g = buffers(backend, SIZES[size])
    optimizer = optim.create(name)
    benchmark(synchronized(backend, lambda: optimizer.step(p, g)))


@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
@pytest.mark.parametrize("name", optim.names())
def test_reference_step(benchmark, name, size):
    benchmark.group = f"optimizer step {size}"
    backend = ReferenceBackend()
    p, g = buffers(backend, SIZES[size])
    optimizer = optim.create(name)
    state = [backend.zeros(p.shape, dtype=p.dtype) for _ in optimizer.buffers]
    optimizer.steps = 10
    optimizer.advance()
    scalars = optimizer.scalars(optimizer.hyperparameter_values())
    benchmark(lambda: backend.run_formula_(optimizer.formula, [p, g, *state], scalars))
