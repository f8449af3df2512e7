"""One optimizer step on a flat buffer: fused backend kernel vs the plain reference body.

Sizes: the reference network's 134,794 parameters, and 10 million (memory-bound regime).
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.conftest import ReferenceBackend, synchronized

SIZES = {"135k": 134_794, "10M": 10_000_000}

STEPS = {
    "sgd": lambda b, p, g, s: b.sgd_(p, g, 1e-3),
    "momentum": lambda b, p, g, s: b.momentum_(p, g, s[0], 1e-3, 0.9),
    "nag": lambda b, p, g, s: b.nag_(p, g, s[0], 1e-3, 0.9),
    "rmsprop": lambda b, p, g, s: b.rmsprop_(p, g, s[0], 1e-3, 0.99, 1e-8),
    "adam": lambda b, p, g, s: b.adam_(p, g, s[0], s[1], 1e-3, 0.9, 0.999, 1e-8, 10),
    "nadam": lambda b, p, g, s: b.nadam_(
        p, g, s[0], s[1], 2e-3, 0.9, 0.999, 1e-8, 10, 0.5, 0.5, 0.1
    ),
}


def buffers(backend, size):
    rng = np.random.default_rng(0)
    host = [rng.standard_normal(size, dtype=np.float32) for _ in range(2)]
    p, g = (backend.asarray(array) for array in host)
    state = [backend.zeros(size, dtype="float32") for _ in range(2)]
    return p, g, state


@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
@pytest.mark.parametrize("optimizer", STEPS)
def test_fused_step(benchmark, backend, optimizer, size):
    benchmark.group = f"optimizer step {size}"
    p, g, state = buffers(backend, SIZES[size])
    benchmark(synchronized(backend, lambda: STEPS[optimizer](backend, p, g, state)))


@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
@pytest.mark.parametrize("optimizer", STEPS)
def test_reference_step(benchmark, optimizer, size):
    benchmark.group = f"optimizer step {size}"
    backend = ReferenceBackend()
    p, g, state = buffers(backend, SIZES[size])
    benchmark(lambda: STEPS[optimizer](backend, p, g, state))
