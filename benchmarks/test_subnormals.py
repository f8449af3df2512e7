"""The CPU subnormal trap: Adam's state decaying into subnormal floats, and the flush.

``test_adam_step_state`` times one Adam step with its moment buffers full of normal,
subnormal, or zero values: the subnormal case is the slow one on x86. ``test_training_flush``
trains the reference network on Fashion-MNIST at batch 32 for several epochs (so weights of
always-black border pixels and dead units get there) with the optimizer's periodic flush on
and off.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp
import fastmlp.optim.optimizer as optimizer_module

SIZE = 134_794


@pytest.mark.parametrize("state", ["normal", "subnormal", "zero"])
def test_adam_step_state(benchmark, state):
    benchmark.group = f"adam step, state values ({fastmlp.get_backend('cpu').name})"
    backend = fastmlp.get_backend("cpu")
    value = {"normal": 1e-3, "subnormal": 1e-39, "zero": 0.0}[state]
    p = np.zeros(SIZE, np.float32)
    g = np.zeros(SIZE, np.float32)
    m = np.full(SIZE, value, np.float32)
    v = np.full(SIZE, value, np.float32)

    def refill():
        m.fill(value)
        v.fill(value)

    # the fused Adam kernel alone (optimizer.step would flush the subnormal state)
    adam = fastmlp.optim.Adam(lr=1e-3)
    adam.steps = 100
    scalars = adam.scalars(adam.hyperparameter_values())
    benchmark.pedantic(
        lambda: backend.run_formula_(adam.formula, [p, g, m, v], scalars),
        setup=refill,
        rounds=2000,
        warmup_rounds=10,
    )


@pytest.mark.parametrize("flush", [True, False], ids=["flush", "no-flush"])
def test_training_flush(benchmark, images, monkeypatch, flush):
    benchmark.group = f"adam training, batch 32, 4 epochs ({fastmlp.get_backend('cpu').name})"
    if not flush:
        monkeypatch.setattr(optimizer_module, "flush_period", lambda decay: None)
    x, y = images
    model = fastmlp.MLP(seed=0)
    optimizer = fastmlp.optim.Adam(lr=1e-3)
    benchmark.pedantic(
        lambda: fastmlp.train(
            model, optimizer, x, y, epochs=4, batch_size=32, seed=0, progress=False, verbose=False
        ),
        rounds=1,
    )
    state = np.concatenate([optimizer.state["m"], optimizer.state["v"]])
    subnormal = np.count_nonzero((np.abs(state) < np.finfo(np.float32).tiny) & (state != 0))
    benchmark.extra_info["subnormal_state_entries"] = int(subnormal)
