"""Forward + backward at several batch sizes, and one epoch of the reference network."""

from __future__ import annotations

import pytest

import fastmlp
from benchmarks.conftest import synchronized


@pytest.mark.parametrize("batch_size", [32, 64, 256, 1024])
def test_forward_backward(benchmark, backend, images, batch_size):
    benchmark.group = f"forward+backward batch {batch_size}"
    x, y = images
    model = fastmlp.MLP(device=backend, seed=0)
    xb = backend.asarray(x[:batch_size])
    yb = backend.asarray(y[:batch_size])
    benchmark(synchronized(backend, lambda: model.loss_and_grad(xb, yb)))


@pytest.mark.parametrize("batch_size", [64, 1024])
def test_reference_network_epoch(benchmark, backend, images, batch_size):
    """784-128-128-128-10 ReLU, Adam, shuffled batches gathered on the device: one epoch."""
    benchmark.group = f"epoch batch {batch_size}"
    x, y = images
    model = fastmlp.MLP(device=backend, seed=0)
    optimizer = fastmlp.optim.Adam(lr=1e-3)
    x_device, y_device = backend.asarray(x), backend.asarray(y)
    epochs = iter(range(10**6))

    def epoch():
        fastmlp.train(
            model,
            optimizer,
            x_device,
            y_device,
            epochs=1,
            batch_size=batch_size,
            seed=0,
            progress=False,
            verbose=False,
            start_epoch=next(epochs),
        )

    benchmark.pedantic(synchronized(backend, epoch), rounds=3, warmup_rounds=1)
