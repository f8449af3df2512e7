"""Seconds from start to a target test accuracy with the default ``fastmlp train`` settings.

The clock starts before the data is loaded and stops at the end of the first epoch whose
model reaches the target on the test set. The test evaluation after each epoch is the
measurement itself, so its time is not counted; everything ``fastmlp train`` does per epoch
(shuffling, training, validation) is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

import fastmlp
from fastmlp.runs.config import normalize_config
from fastmlp.runs.experiment import build_model_and_optimizer
from fastmlp.training import EpochMetrics, to_device_inputs


class _TargetReached(Exception):
    """Raised by the per-epoch callback to stop training once the target is met."""


@dataclass
class TimeToAccuracy:
    target: float
    reached: bool
    epochs: int
    seconds: float
    load_seconds: float
    test_accuracy: float
    device: str


def time_to_accuracy(
    target: float = 0.88, device: str = "cpu", max_epochs: int = 50, data_dir: str | None = None
) -> TimeToAccuracy:
    """Train the default configuration on Fashion-MNIST until test accuracy >= ``target``."""
    config = normalize_config({"device": device, "epochs": max_epochs})
    started = time.perf_counter()
    backend = fastmlp.get_backend(config["device"])
    dataset = fastmlp.data.load(
        config["dataset"], data_dir=data_dir, val_fraction=config["val_fraction"]
    )
    load_seconds = time.perf_counter() - started
    model, optimizer = build_model_and_optimizer(config, backend, dataset)
    x_test = to_device_inputs(backend, dataset.x_test, model.dtype)
    y_test = backend.asarray(dataset.y_test.astype(np.int64))
    excluded = 0.0
    progress = {"epochs": 0, "accuracy": 0.0}

    def check(metrics: EpochMetrics) -> None:
        nonlocal excluded
        paused = time.perf_counter()
        progress["epochs"] = metrics.epoch
        progress["accuracy"] = model.evaluate(x_test, y_test)[1]
        excluded += time.perf_counter() - paused
        if progress["accuracy"] >= target:
            raise _TargetReached

    reached = False
    try:
        fastmlp.train(
            model,
            optimizer,
            dataset.x_train,
            dataset.y_train,
            epochs=config["epochs"],
            batch_size=config["batch_size"],
            x_val=dataset.x_val,
            y_val=dataset.y_val,
            seed=config["seed"],
            progress=False,
            verbose=False,
            callbacks=[check],
        )
    except _TargetReached:
        reached = True
    seconds = time.perf_counter() - started - excluded
    return TimeToAccuracy(
        target=target,
        reached=reached,
        epochs=progress["epochs"],
        seconds=seconds,
        load_seconds=load_seconds,
        test_accuracy=progress["accuracy"],
        device=backend.device,
    )
