"""The CuPy backend's training path, run without a GPU over ``tests/fake_cupy.py``: it
computes what the NumPy backend computes, and its cost in launches and host syncs is fixed.

Every launch costs CuPy ~10-20 us of host time, which at batch 64 is most of a GPU step,
and every device-to-host transfer stalls the host until the device is done. The counts
below are what a step of the reference network R (784-128-128-128-10 ReLU, Adam, float32,
batch 64) issues; a change that adds a launch or a transfer must change them knowingly.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import optim
from tests.cuda_host import CXX, import_cupy_backend
from tests.fake_cupy import LEDGER, FakeCupy, fake_cupyx

pytestmark = [
    pytest.mark.fake_gpu,
    pytest.mark.skipif(CXX is None, reason="needs a C++ compiler"),
]

# A training step of R: 11 matrix products (4 forward, 4 dW, 3 dX: the first layer's dX is
# never needed), 4 bias gradients, 3 fused bias + ReLU and the output bias, 3 ReLU
# gradients, 2 gathers (inputs and labels), the loss (row max, its subtraction, row sum of
# exp, log, per-sample loss, mean: sum and divide, fused gradient), the running loss
# (multiply, add), the running accuracy (argmax, equal, sum, add) and ONE optimizer update.
R_STEP_LAUNCHES = {
    "matmul": 11,
    "sum": 4,  # the bias gradients
    "fastmlp_bias_forward": 4,
    "fastmlp_backward_in_place": 3,
    "take": 2,  # the batch's inputs and labels
    "fastmlp_softmax_cross_entropy_rows": 1,  # loss, correct rows and gradient
    "add.reduce": 2,  # the mean loss, the correct rows
    "divide": 1,  # the mean loss
    "multiply": 1,  # the batch's share of the epoch loss
    "add": 2,  # ... added, and the correct rows added
    "fastmlp_update": 1,
}


@pytest.fixture(scope="module")
def fake_gpu(tmp_path_factory):
    """A CupyBackend whose ``cupy`` is the NumPy-backed stand-in that counts."""
    cupyx = fake_cupyx()
    modules = {
        "cupyx": cupyx,
        "cupyx.scipy": cupyx.scipy,
        "cupyx.scipy.special": cupyx.scipy.special,
    }
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        module = import_cupy_backend(FakeCupy(tmp_path_factory.mktemp("fake_gpu")), "fake_gpu")
        yield module.CupyBackend(0)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def images(count, seed):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=count),
    )


def trained(backend, *, steps, epochs=1, dtype="float32", validation=False, **settings):
    """R (or ``settings``' network) trained on random images; the ledger then holds the
    last call's launches and transfers."""
    x, y = images(64 * steps, 0)
    x_val, y_val = images(200, 1) if validation else (None, None)
    model = fastmlp.MLP(
        784,
        settings.pop("hidden_sizes", (128, 128, 128)),
        10,
        device=backend,
        seed=0,
        dtype=dtype,
        activation=settings.pop("activation", "relu"),
        loss=settings.pop("loss", "cross_entropy"),
        weight_decay=settings.pop("weight_decay", 0.0),
        label_smoothing=settings.pop("label_smoothing", 0.0),
        dropout=settings.pop("dropout", 0.0),
    )
    optimizer = optim.create(settings.pop("optimizer", "adam"), lr=1e-3)
    LEDGER.reset()
    history = fastmlp.train(
        model, optimizer, x, y, epochs=epochs, batch_size=64, x_val=x_val, y_val=y_val,
        seed=0, progress=False, verbose=False, **settings,
    )  # fmt: skip
    return model, history


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"optimizer": "nadam", "activation": "tanh", "loss": "mean_squared_error"},
        {"optimizer": "momentum", "activation": "gelu", "weight_decay": 5e-4},
        {"optimizer": "rmsprop", "activation": "sigmoid", "label_smoothing": 0.1},
        {"optimizer": "adamw", "activation": "leaky_relu", "clip_grad_norm": 0.5},
        {"optimizer": "sgd", "activation": "elu", "dropout": 0.3},
    ],
    ids=[
        "adam-relu",
        "nadam-tanh-mse",
        "momentum-gelu-l2",
        "rmsprop-sigmoid-smoothing",
        "adamw-leaky-clipping",
        "sgd-elu-dropout",
    ],  # fmt: skip
)
def test_training_on_the_fake_gpu_computes_what_numpy_computes(fake_gpu, settings):
    """Two epochs with validation in float64: the CuPy backend's host code and its kernels
    (compiled for the CPU) give the NumPy backend's parameters and history."""
    common = dict(steps=3, epochs=2, dtype="float64", validation=True, hidden_sizes=(32, 16))
    on_gpu, gpu_history = trained(fake_gpu, **common, **dict(settings))
    on_cpu, cpu_history = trained(fastmlp.get_backend("numpy"), **common, **dict(settings))
    with LEDGER.paused():
        np.testing.assert_allclose(np.asarray(on_gpu.params), on_cpu.params, rtol=1e-9, atol=1e-12)
    for gpu_epoch, cpu_epoch in zip(gpu_history.epochs, cpu_history.epochs, strict=True):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert getattr(gpu_epoch, key) == pytest.approx(getattr(cpu_epoch, key), rel=1e-9)


def test_a_training_step_of_r_costs_a_fixed_number_of_launches(fake_gpu):
    """Launches per step: the difference between epochs of 8 and of 4 steps, over 4."""
    trained(fake_gpu, steps=4)
    short = LEDGER.launches.copy()
    trained(fake_gpu, steps=8)
    per_step = {
        name: (LEDGER.launches[name] - short[name]) / 4
        for name in set(LEDGER.launches) | set(short)
        if LEDGER.launches[name] != short[name]
    }
    assert per_step == R_STEP_LAUNCHES, f"{sum(per_step.values()):g} launches per step"
    assert sum(R_STEP_LAUNCHES.values()) == 32


def test_an_epoch_reads_the_device_once(fake_gpu):
    """One device-to-host transfer per epoch, training and validation numbers together;
    uploading the data costs its own (the label range check) once per call, not per epoch."""
    trained(fake_gpu, steps=2, epochs=1, validation=True)
    one_epoch = LEDGER.to_host
    trained(fake_gpu, steps=2, epochs=4, validation=True)
    assert LEDGER.to_host - one_epoch == 3
    assert LEDGER.to_device == 4  # training and validation inputs and labels, once


def test_evaluate_reads_the_device_once(fake_gpu):
    model, _ = trained(fake_gpu, steps=1)
    x, y = images(300, 2)
    x_device = fake_gpu.asarray(x)
    labels = fake_gpu.asarray(y)
    LEDGER.reset()
    model._evaluation_sums_(model._as_inputs(x_device), labels, fake_gpu.zeros((2,), "float64"))
    assert LEDGER.to_host == 0
    model.evaluate(x_device, labels)
    assert LEDGER.to_host == 1 + 2  # the sums, and the label range check of labels given


def trained_stack(backend, optimizer_name):
    """A stack of 3 small models (per-model rates, weight decays and dropout) trained for
    two epochs with validation in float64."""
    x, y = images(64 * 3, 0)
    x_val, y_val = images(100, 1)
    model = fastmlp.MLP(
        784, (32, 16), 10, device=backend, dtype="float64", seed=[1, 2, 3],
        n_models=3, weight_decay=[0.0, 5e-4, 0.0], dropout=[0.0, 0.2, 0.4],
    )  # fmt: skip
    optimizer = optim.create(optimizer_name, model.param_groups(), lr=[1e-3, 3e-3, 1e-2])
    history = fastmlp.train(model, optimizer, x, y, epochs=2, batch_size=64, x_val=x_val,
                            y_val=y_val, seed=0, progress=False, verbose=False)  # fmt: skip
    return model, history


@pytest.mark.parametrize("optimizer_name", ["adam", "nadam", "momentum"])
def test_a_stack_on_the_fake_gpu_computes_what_numpy_computes(fake_gpu, optimizer_name):
    """The stack's batched products, per-model loss blocks, per-model dropout and the
    optimizer's per-model row vectors through the CuPy backend's code."""
    on_gpu, gpu_history = trained_stack(fake_gpu, optimizer_name)
    on_cpu, cpu_history = trained_stack(fastmlp.get_backend("numpy"), optimizer_name)
    with LEDGER.paused():
        np.testing.assert_allclose(np.asarray(on_gpu.params), on_cpu.params, rtol=1e-9, atol=1e-12)
    for gpu_model, cpu_model in zip(gpu_history, cpu_history, strict=True):
        for gpu_epoch, cpu_epoch in zip(gpu_model.epochs, cpu_model.epochs, strict=True):
            assert gpu_epoch.val_loss == pytest.approx(cpu_epoch.val_loss, rel=1e-9)


def test_a_stack_step_copies_its_models_scalars_once_and_updates_in_one_launch(fake_gpu):
    """Each optimizer step of a stack with per-model hyperparameters copies its models'
    scalars to the device once (one table for all groups) and updates all six groups in
    one launch; everything else is copied once per stack: the parameters, the per-model
    weight decays of the three layers, the inputs and labels (and once per backend, the
    groups' layout)."""
    trained_stack(fake_gpu, "adam")  # the groups' layout is on the device from here on
    LEDGER.reset()
    trained_stack(fake_gpu, "adam")
    steps = 2 * 3  # two epochs of three batches
    assert LEDGER.to_device == 1 + 3 + 4 + steps
    assert LEDGER.launches["fastmlp_update_per_model"] == steps


def stack_step_launches(backend, n_models):
    """Launches per training step of a stack of ``n_models`` models of R (Adam, one rate
    each): the difference between epochs of 8 and of 4 steps, over 4."""
    counts = []
    for steps in (4, 8):
        x, y = images(64 * steps, 0)
        model = fastmlp.MLP(784, (128, 128, 128), 10, device=backend, seed=list(range(n_models)),
                            n_models=n_models)  # fmt: skip
        optimizer = optim.create("adam", model.param_groups(), lr=[1e-3] * n_models)
        LEDGER.reset()
        fastmlp.train(model, optimizer, x, y, epochs=1, batch_size=64, seed=0, progress=False,
                      verbose=False)  # fmt: skip
        counts.append(LEDGER.total_launches)
    return (counts[1] - counts[0]) / 4


def test_a_stack_step_costs_the_same_launches_for_2_models_as_for_8(fake_gpu):
    """One launch where there were K: every product, kernel and the optimizer step of a
    stack serve all its models, so a step of 8 models of R costs what a step of 2 does
    (39: a single model's 32, and the per-model loss blocks and counts)."""
    assert stack_step_launches(fake_gpu, 2) == stack_step_launches(fake_gpu, 8) == 39
