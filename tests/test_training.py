"""The training loop and a whole experiment: learning, divergence, interruption and resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.nn.inputs import to_device_inputs
from fastmlp.runs.experiment import run_experiment
from fastmlp.training import epoch_seed, train
from tests.datasets import make_images, write_idx_dataset

SMALL = {"epochs": 4, "batch_size": 32, "num_layers": 1, "hidden_size": 32, "device": "cpu"}


@pytest.fixture
def idx_dir(tmp_path):
    return write_idx_dataset(tmp_path / "data")


def test_train_learns_uint8_images_and_reports_every_epoch():
    images, labels = make_images(500, seed=3)
    model = fastmlp.MLP(784, (32,), 10, seed=0)
    history = train(
        model,
        fastmlp.optim.Adam(lr=3e-3),
        images[:400],
        labels[:400],
        epochs=5,
        batch_size=32,
        x_val=images[400:],
        y_val=labels[400:],
        seed=0,
        progress=False,
        verbose=False,
    )
    assert [row.epoch for row in history.epochs] == [1, 2, 3, 4, 5]
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    assert history.epochs[-1].val_accuracy > 0.95
    assert not history.diverged


def test_uint8_inputs_are_scaled_to_unit_interval_on_the_device():
    backend = fastmlp.get_backend("cpu")
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    scaled = to_device_inputs(backend, images, "float32")
    np.testing.assert_allclose(scaled, [[0.0, 1.0, 0.2, 0.4]], rtol=1e-7)
    assert scaled.dtype == np.float32


def test_train_matches_a_hand_written_loop_step_for_step():
    images, labels = make_images(100, seed=4)
    x = images.reshape(100, -1).astype(np.float32) / 255
    reference = fastmlp.MLP(784, (16,), 10, seed=1)
    optimizer = fastmlp.optim.SGD(lr=0.1)
    for epoch in (1, 2):
        order = np.random.default_rng(epoch_seed(7, epoch)).permutation(100)
        for start in range(0, 100, 30):
            rows = order[start : start + 30]
            reference.loss_and_grad(x[rows], labels[rows].astype(np.int64))
            optimizer.step(reference.params, reference.grads)
    model = fastmlp.MLP(784, (16,), 10, seed=1)
    train(
        model,
        fastmlp.optim.SGD(lr=0.1),
        images,
        labels,
        epochs=2,
        batch_size=30,
        seed=7,
        progress=False,
        verbose=False,
    )
    np.testing.assert_allclose(model.params, reference.params, rtol=1e-6, atol=1e-7)


def test_divergence_stops_training_and_keeps_the_last_finite_weights():
    images, labels = make_images(200, seed=5)
    model = fastmlp.MLP(784, (16,), 10, activation="identity", seed=0)
    history = train(
        model,
        fastmlp.optim.SGD(lr=1e6),
        images,
        labels,
        epochs=5,
        batch_size=20,
        seed=0,
        progress=False,
        verbose=False,
    )
    assert history.diverged_at == 1
    assert np.isfinite(model.params).all()


def test_bad_training_arguments_raise_value_errors():
    images, labels = make_images(20, seed=6)
    model = fastmlp.MLP(784, (8,), 10)
    with pytest.raises(ValueError, match="epochs"):
        train(model, fastmlp.optim.SGD(), images, labels, epochs=0, batch_size=4)
    with pytest.raises(ValueError, match="batch_size"):
        train(model, fastmlp.optim.SGD(), images, labels, epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="labels"):
        train(model, fastmlp.optim.SGD(), images, labels + 20, epochs=1, batch_size=4)


def test_experiment_writes_the_run_directory_as_it_goes(idx_dir, tmp_path):
    epochs_seen = []

    def check_files(metrics):
        run = next((tmp_path / "runs").iterdir())
        lines = (run / "metrics.jsonl").read_text().splitlines()
        epochs_seen.append((metrics.epoch, len(lines), (run / "checkpoint.npz").exists()))

    result = run_experiment(
        {**SMALL, "dataset": "mnist"},
        out=tmp_path / "runs",
        data_dir=idx_dir,
        wandb_mode="disabled",
        progress=False,
        callbacks=[check_files],
        figures=False,
    )
    assert epochs_seen == [(1, 1, True), (2, 2, True), (3, 3, True), (4, 4, True)]
    run = result.run_dir.path
    assert run.name == "hl_1_sz_32_bs_32_ac_relu_o_adam_lr_1e-3_d_mnist_e_4"
    config = json.loads((run / "config.json").read_text())
    assert config["optimizer"] == "adam" and config["hidden_size"] == [32]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["test_accuracy"] > 0.9
    checkpoint = fastmlp.load_checkpoint(run / "checkpoint.npz")
    assert checkpoint.epoch == 4
    assert checkpoint.extra["dataset"] == "mnist"


def test_interrupted_run_resumes_exactly_like_an_uninterrupted_one(idx_dir, tmp_path):
    settings = {**SMALL, "dataset": "mnist", "optimizer": "nadam", "seed": 3}
    common = {"data_dir": idx_dir, "wandb_mode": "disabled", "progress": False, "figures": False}
    full = run_experiment(settings, out=tmp_path / "full", **common)

    def interrupt_after_second_epoch(metrics):
        if metrics.epoch == 2:
            raise KeyboardInterrupt

    cut = run_experiment(
        settings, out=tmp_path / "cut", callbacks=[interrupt_after_second_epoch], **common
    )
    assert cut.status == "interrupted"
    assert len(cut.run_dir.read_metrics()) == 2
    resumed = run_experiment({}, resume=cut.run_dir.path, **common)
    assert resumed.status == "finished"
    assert [row["epoch"] for row in resumed.run_dir.read_metrics()] == [1, 2, 3, 4]
    np.testing.assert_array_equal(resumed.model.params, full.model.params)
    assert resumed.summary["test_accuracy"] == full.summary["test_accuracy"]


def test_resuming_a_finished_run_asks_for_more_epochs(idx_dir, tmp_path):
    common = {"data_dir": idx_dir, "wandb_mode": "disabled", "progress": False, "figures": False}
    done = run_experiment({**SMALL, "epochs": 1, "dataset": "mnist"}, out=tmp_path, **common)
    with pytest.raises(ValueError, match="already finished 1 of 1 epochs"):
        run_experiment({}, resume=done.run_dir.path, **common)
    longer = run_experiment({"epochs": 2}, resume=done.run_dir.path, **common)
    assert [row["epoch"] for row in longer.history] == [1, 2]


def test_diverging_experiment_is_recorded_as_diverged(idx_dir, tmp_path):
    result = run_experiment(
        {
            **SMALL,
            "dataset": "mnist",
            "optimizer": "sgd",
            "learning_rate": 1e7,
            "activation": "identity",
        },
        out=tmp_path,
        data_dir=idx_dir,
        wandb_mode="disabled",
        progress=False,
        figures=False,
    )
    assert result.status == "diverged"
    summary = result.run_dir.read_summary()
    assert summary["diverged_at"] == 1
    assert summary["test_loss"] is None or math.isfinite(summary["test_loss"])


def test_a_callback_can_stop_training_and_the_run_records_why(idx_dir, tmp_path):
    from fastmlp.training import StopTraining

    def prune_after_second_epoch(metrics):
        if metrics.epoch == 2:
            raise StopTraining("pruned", "pruned after epoch 2")

    result = run_experiment(
        {**SMALL, "dataset": "mnist"},
        out=tmp_path,
        data_dir=idx_dir,
        wandb_mode="disabled",
        progress=False,
        verbose=False,
        callbacks=[prune_after_second_epoch],
        figures=False,
    )
    assert result.status == "pruned"
    assert [row["epoch"] for row in result.history] == [1, 2]
    summary = result.run_dir.read_summary()
    assert summary["status"] == "pruned" and summary["stop_reason"] == "pruned after epoch 2"
    assert fastmlp.load_checkpoint(result.run_dir.checkpoint_path).epoch == 2


def test_blas_threads_pins_the_rounding_so_a_run_repeats_exactly(idx_dir, tmp_path):
    """OpenBLAS splits products by thread count, which changes the rounding: a run with
    blas_threads set repeats bit for bit, and config.json records the count used."""
    pytest.importorskip("threadpoolctl")
    common = {"data_dir": idx_dir, "wandb_mode": "disabled", "progress": False, "figures": False}
    settings = {**SMALL, "dataset": "mnist", "hidden_size": 256, "epochs": 1, "blas_threads": 1}
    first = run_experiment(settings, out=tmp_path / "a", **common)
    second = run_experiment(settings, out=tmp_path / "b", **common)
    np.testing.assert_array_equal(first.model.params, second.model.params)
    environment = json.loads(first.run_dir.file("config.json").read_text())["environment"]
    assert environment["blas"]["threads"] == 1
    assert first.summary["environment"]["blas"]["threads"] == 1


def test_the_blas_recorded_is_numpys_when_another_package_loads_its_own(monkeypatch):
    """SciPy's wheels load a second OpenBLAS into the process; the record names NumPy's
    (the one inside its installation), whichever threadpoolctl lists first."""
    from fastmlp.runs import environment

    libs = Path(np.__file__).resolve().parent.with_name("numpy.libs")
    scipy = {
        "user_api": "blas",
        "internal_api": "openblas",
        "version": "0.3.30",
        "num_threads": 2,
        "filepath": "/site-packages/scipy.libs/libscipy_openblas.so",
    }
    numpy = {**scipy, "version": "0.3.31", "num_threads": 1,
             "filepath": str(libs / "libscipy_openblas64_.so")}  # fmt: skip
    monkeypatch.setattr(environment, "_threadpool_info", lambda: [scipy, numpy])
    assert environment.blas_library() == {"name": "openblas", "version": "0.3.31", "threads": 1}
    monkeypatch.setattr(environment, "_threadpool_info", lambda: [scipy])
    assert environment.blas_library()["version"] == "0.3.30"  # the only one loaded
    monkeypatch.setattr(environment, "_threadpool_info", lambda: [scipy, dict(scipy)])
    assert environment.blas_library()["threads"] is None  # unknown: NumPy's configuration


@pytest.mark.parametrize(
    "extra",
    [
        {"dropout": 0.3, "optimizer": "adamw", "weight_decay": 0.05},
        {"dropout": 0.2, "activation": "leaky_relu", "leaky_relu_slope": 0.1},
        {"dropout": 0.25, "activation": "gelu", "optimizer": "nadam"},
    ],
    ids=["dropout-adamw", "dropout-leaky_relu", "dropout-gelu-nadam"],
)
def test_a_run_with_dropout_resumes_bit_identically(idx_dir, tmp_path, extra):
    """The dropout masks are seeded per epoch from the run seed: an interrupted and resumed
    run draws exactly the masks of the uninterrupted one."""
    settings = {**SMALL, "dataset": "mnist", "seed": 4, **extra}
    common = {"data_dir": idx_dir, "wandb_mode": "disabled", "progress": False, "figures": False}
    full = run_experiment(settings, out=tmp_path / "full", **common)

    def interrupt_after_second_epoch(metrics):
        if metrics.epoch == 2:
            raise KeyboardInterrupt

    cut = run_experiment(
        settings, out=tmp_path / "cut", callbacks=[interrupt_after_second_epoch], **common
    )
    resumed = run_experiment({}, resume=cut.run_dir.path, **common)
    np.testing.assert_array_equal(resumed.model.params, full.model.params)
    assert resumed.model.dropout == settings["dropout"]
    other_seed = run_experiment({**settings, "seed": 5}, out=tmp_path / "other", **common)
    assert not np.array_equal(other_seed.model.params, full.model.params)


def test_adamw_runs_decay_weights_only_and_leave_no_l2_term(idx_dir, tmp_path):
    common = {"data_dir": idx_dir, "wandb_mode": "disabled", "progress": False, "figures": False}
    result = run_experiment(
        {**SMALL, "dataset": "mnist", "optimizer": "adamw", "weight_decay": 0.1, "epochs": 1},
        out=tmp_path, **common,
    )  # fmt: skip
    assert result.model.weight_decay == 0.0  # decoupled: no L2 in the gradient
    checkpoint = fastmlp.load_checkpoint(result.run_dir.checkpoint_path)
    groups = checkpoint.optimizer.param_groups
    assert [group.name for group in groups] == ["weights", "biases"]
    assert groups[1].options == {"weight_decay": 0.0}
    assert checkpoint.optimizer.weight_decay == 0.1


def test_subnormal_floats_are_zero_while_training_and_only_then():
    """x86 computes with subnormal floats ~100x slower: train() runs with FTZ and DAZ set
    (fastmlp/backends/denormals.py) and restores the register after, also after an error."""
    from fastmlp.backends import denormals

    if not denormals.supported():
        pytest.skip("FTZ/DAZ is set on Linux with glibc on x86-64 only")
    subnormal = np.array([1e-39], dtype=np.float32)
    assert (subnormal * np.float32(1))[0] != 0
    with denormals.denormals_are_zero():
        assert (subnormal * np.float32(1))[0] == 0  # DAZ: read as zero
        assert (np.array([1e-30], dtype=np.float32) * np.float32(1e-10))[0] == 0  # FTZ
    assert (subnormal * np.float32(1))[0] != 0
    seen = []
    model = fastmlp.MLP(4, (3,), 2, seed=0)
    x, y = np.ones((8, 4), np.float32), np.zeros(8, np.int64)

    def look(metrics):
        seen.append((subnormal * np.float32(1))[0])
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        fastmlp.train(model, fastmlp.optim.create("sgd"), x, y, epochs=1, batch_size=4,
                      progress=False, verbose=False, callbacks=[look])  # fmt: skip
    assert seen == [0]
    assert (subnormal * np.float32(1))[0] != 0
