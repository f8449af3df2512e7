"""Adding an optimizer or an activation is one new file, and nothing else.

Each test writes a throwaway file into the package (``fastmlp/optim/`` or
``fastmlp/nn/activations/``), edits no other file, and checks in a fresh interpreter that
the new entry works from Python, from ``fastmlp train`` (its name and its hyperparameter's
flag), from a ``--config`` file and a sweep config, on every CPU backend, and that the
kernel oracle tables of the tests include it. The file is removed afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

import fastmlp
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
import json, sys
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
for device in ("numpy", "numba"):
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
