"""Adding an optimizer or an activation is one new file, and nothing else.

Each test writes a throwaway file into the package (``fastmlp/optim/`` or
``fastmlp/nn/activations/``), edits no other file, and checks in a fresh interpreter that
the new entry works from Python, from ``fastmlp train`` (its name and its hyperparameter's
flag), from a ``--config`` file and a sweep config, on every CPU backend, and that the
kernel oracle tables of the tests include it. The file is removed afterwards. A new layer
(one class, placed by overriding ``MLP._build_layers``) gets room in the flat buffers for the
parameters it declares, and exact gradients.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.nn.layers import Activation, BufferCache, Layer
from tests.datasets import write_idx_dataset

PACKAGE = Path(fastmlp.__file__).parent

OPTIMIZER = '''
"""Lion (Chen et al. 2023): the sign of an interpolated momentum, decoupled decay."""

from fastmlp.optim.optimizer import LEARNING_RATE, Optimizer
from fastmlp.registry import Hyperparameter
from dataclasses import replace


class Throwaway(Optimizer):
    name = "NAME"
    hyperparameters = (
        replace(LEARNING_RATE, default=1e-4),
        Hyperparameter("lion_beta", 0.9, "interpolation of lion", low=0.0, high=1.0,
                       high_open=True),
    )
    buffers = ("m",)

    @staticmethod
    def update(p, g, m, *, lr, lion_beta, one_minus):
        c = m * lion_beta + g * one_minus
        p = p - (1.0 if c > 0 else (-1.0 if c < 0 else 0.0)) * lr
        m = m * lion_beta + g * one_minus
        return p, m

    def scalars(self, values):
        return {"lr": values["lr"], "lion_beta": values["lion_beta"],
                "one_minus": 1.0 - values["lion_beta"]}

    def decays(self, values):
        return {"m": values["lion_beta"]}
'''

ACTIVATION = '''
"""Softsign: z / (1 + |z|)."""

from fastmlp.nn.activations.activation import Activation, register
from fastmlp.registry import Hyperparameter


def forward(z, *, softness):
    return z / (softness + abs(z))


def backward(delta, z, *, softness):
    # f'(z) = softness / (softness + |z|)^2
    return delta * (softness / ((softness + abs(z)) * (softness + abs(z))))


register(Activation("NAME", forward, backward, maths="z / (softness + |z|)",
                    hyperparameters=(Hyperparameter("softness", 1.0, "softness of NAME",
                                                    low=0.0, low_open=True),)))
'''

CHECKS = """
import importlib.util, json, sys
import numpy as np
import fastmlp
from fastmlp.cli import main
from fastmlp.runs.config import TrainConfig
from fastmlp.sweep.config import parse_sweep_config
from tests.kernel_cases import KERNEL_CASES

kind, name, flag, value, data, out = sys.argv[1:7]
setting = {"optimizer": "optimizer", "activation": "activation"}[kind]
# Python
if kind == "optimizer":
    optimizer = fastmlp.optim.create(name)
    model = fastmlp.MLP(20, (8,), 3, seed=0)
else:
    optimizer = fastmlp.optim.create("adam")
    model = fastmlp.MLP(20, (8,), 3, activation=name, seed=0)
# every CPU backend installed (Numba is the optional "jit" extra)
for device in ["numpy"] + (["numba"] if importlib.util.find_spec("numba") else []):
    trial = fastmlp.MLP(20, (8,), 3, activation=model.activation, seed=0, device=device)
    step = fastmlp.optim.create(optimizer.name)
    x = np.random.default_rng(0).random((16, 20)).astype("float32")
    loss = trial.loss_and_grad(x, np.arange(16) % 3)
    step.step(trial.params, trial.grads)
    assert np.isfinite(loss) and np.isfinite(trial.params).all(), device
# the kernel oracle tables
assert any(case == name for _, case in KERNEL_CASES), "missing from the kernel cases"
# a --config file and the settings
TrainConfig.from_settings({setting: name, flag: value})
with open(f"{out}/config.json", "w") as stream:
    json.dump({setting: name, flag: float(value), "epochs": 1}, stream)
# a sweep config
parse_sweep_config({"method": "grid", "metric": {"name": "val_accuracy"},
                    "parameters": {setting: {"values": [name]}, flag: {"values": [float(value)]},
                                   "epochs": {"value": 1}}})
# fastmlp train, from the flags and from the config file
for source in (["-" + ("o" if kind == "optimizer" else "a"), name, "--" + flag, value, "-e", "1"],
               ["--config", f"{out}/config.json"]):
    status = main(["train", "-d", "mnist", "--data_dir", data, "--out", out, "-nhl", "1",
                   "-sz", "8", "--device", "cpu", "--no_progress", "--wandb_mode", "disabled",
                   *source])
    assert status == 0, source
print("ok")
"""


@pytest.fixture
def data(tmp_path):
    return write_idx_dataset(tmp_path / "data")


def run_checks(kind, name, flag, value, data, out):
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(PACKAGE.parent))
    out.mkdir()
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHECKS), kind, name, flag, value, str(data),
         str(out)],
        capture_output=True, text=True, env=env, timeout=300, cwd=str(PACKAGE.parent),
    )  # fmt: skip


def one_new_file(folder: Path, source: str, name: str):
    path = folder / f"_throwaway_{name}.py"
    path.write_text(source.replace("NAME", name))
    return path


def test_an_optimizer_in_one_new_file_is_usable_everywhere(data, tmp_path):
    name = f"lion{uuid.uuid4().hex[:6]}"
    path = one_new_file(PACKAGE / "optim", OPTIMIZER, name)
    try:
        result = run_checks("optimizer", name, "lion_beta", "0.8", data, tmp_path / "out")
    finally:
        path.unlink()
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
    runs = sorted((tmp_path / "out").glob("*/config.json"))
    assert [json.loads(p.read_text())["optimizer"] for p in runs] == [name, name]
    assert json.loads(runs[0].read_text())["lion_beta"] == 0.8


def test_an_activation_in_one_new_file_is_usable_everywhere(data, tmp_path):
    name = f"softsign{uuid.uuid4().hex[:6]}"
    path = one_new_file(PACKAGE / "nn" / "activations", ACTIVATION, name)
    try:
        result = run_checks("activation", name, f"{name}_softness", "2.0", data,
                            tmp_path / "out")  # fmt: skip
    finally:
        path.unlink()
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((tmp_path / "out").glob("*/config.json"))
    assert [json.loads(p.read_text())["activation"] for p in runs] == [name, name]
    assert json.loads(runs[0].read_text())[f"{name}_softness"] == 2.0


def test_a_new_activations_gradient_is_exact(tmp_path):
    """Central differences on a registered-at-runtime activation: backward matches forward."""
    import numpy as np

    from fastmlp.nn.activations import ACTIVATIONS, create

    namespace: dict = {}
    name = f"softsign{uuid.uuid4().hex[:6]}"
    module = tmp_path / f"{name}.py"
    module.write_text(ACTIVATION.replace("NAME", name))
    sys.path.insert(0, str(tmp_path))
    try:
        namespace = __import__(name).__dict__
        function = create(name, softness=1.5)
        z = np.random.default_rng(0).normal(size=(4, 5)) * 2
        delta = np.ones_like(z)
        backend = fastmlp.get_backend("numpy")
        kept = np.empty_like(z)
        backend.bias_activation_(z.copy(), np.zeros(5), function, kept)
        backend.activation_grad_(delta, z, function)
        step = 1e-6
        numeric = (namespace["forward"](z + step, softness=1.5)
                   - namespace["forward"](z - step, softness=1.5)) / (2 * step)  # fmt: skip
        np.testing.assert_allclose(delta, numeric, rtol=1e-8)
        np.testing.assert_allclose(kept, namespace["forward"](z, softness=1.5), rtol=1e-15)
    finally:
        sys.path.remove(str(tmp_path))
        ACTIVATIONS.unregister(name)


class Scale(Layer):
    """A throwaway layer with its own parameter role: y = x * s, s of shape (units,)."""

    def __init__(self, units, backend, dtype):
        super().__init__(backend, dtype)
        self.units = units
        self._buffers = BufferCache(lambda n: {"y": backend.empty((n, units), dtype=dtype)})

    def parameter_shapes(self):
        return {"scale": (self.units,)}

    def bind(self, params, grads):
        self.scale, self.grad_scale = params["scale"], grads["scale"]

    def forward(self, x, training):
        self._input = x
        y = self._buffers(x.shape[0])["y"]
        np.multiply(x, self.scale, out=y)
        return y

    def backward(self, delta):
        # ds = sum_n delta * x; dx = delta * s
        self.grad_scale[...] = (delta * self._input).sum(axis=0)
        delta *= self.scale
        return delta


class ScaledMLP(fastmlp.MLP):
    """An MLP with a Scale layer after each hidden activation."""

    def _build_layers(self):
        layers = []
        for layer in super()._build_layers():
            layers.append(layer)
            if isinstance(layer, Activation):
                layers.append(Scale(layer.units, self.backend, self.dtype))
        return layers


def test_a_new_layer_gets_room_for_its_parameters_and_exact_gradients():
    """A layer declaring a new parameter role: the model lays it out after the weights and
    biases, binds views of params and grads, the optimizer updates it, and backprop through
    it matches central differences."""
    model = ScaledMLP(input_size=6, hidden_sizes=(5, 4), output_size=3, device="numpy",
                      dtype="float64", seed=0, activation="tanh")  # fmt: skip
    plain = fastmlp.MLP(input_size=6, hidden_sizes=(5, 4), output_size=3, device="numpy",
                        dtype="float64", seed=0, activation="tanh")  # fmt: skip
    assert model.num_params == plain.num_params + 5 + 4
    np.testing.assert_array_equal(model.params[: plain.num_params], plain.params)
    scales = [layer.scale for layer in model.layers if isinstance(layer, Scale)]
    assert [s.shape for s in scales] == [(5,), (4,)]
    assert np.shares_memory(scales[0], model.params)
    assert model.layout.role_span("scale") == (plain.num_params, model.num_params)
    rng = np.random.default_rng(1)
    model.params[plain.num_params :] = rng.uniform(0.5, 1.5, size=9)
    x, y = rng.normal(size=(7, 6)), rng.integers(0, 3, size=7)
    model.loss_and_grad(x, y)
    analytic = model.grads.copy()
    step, numeric = 1e-6, np.empty_like(analytic)
    for i in range(model.num_params):
        saved = model.params[i]
        model.params[i] = saved + step
        up = float(model.loss_and_grad(x, y))
        model.params[i] = saved - step
        down = float(model.loss_and_grad(x, y))
        model.params[i] = saved
        numeric[i] = (up - down) / (2 * step)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)
    before = model.params[plain.num_params :].copy()
    optimizer = fastmlp.optim.create("sgd", lr=0.1)
    model.loss_and_grad(x, y)
    optimizer.step(model.params, model.grads)
    np.testing.assert_allclose(
        model.params[plain.num_params :], before - 0.1 * model.grads[plain.num_params :]
    )
