"""One complete run: data, model, optimizer, tracking, training, test evaluation, figures.

``run_experiment`` is what ``fastmlp train`` and every sweep trial execute. Each epoch's
metrics and checkpoint are on disk before the next epoch starts; an interrupted run can be
continued with ``resume=RUN_DIR`` and then follows exactly the path the uninterrupted run
would have taken (same weights, optimizer state and shuffling order from that epoch on).
"""

from __future__ import annotations

import datetime
import math
import platform
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

import fastmlp
from fastmlp import data as datasets
from fastmlp import optim
from fastmlp.backends import Backend, get_backend
from fastmlp.config import DEFAULTS, normalize_config, optimizer_hyperparameters
from fastmlp.nn.checkpoint import load_checkpoint
from fastmlp.nn.inputs import to_device_inputs
from fastmlp.nn.mlp import MLP
from fastmlp.tracking import RunDirectory, WandbRun, resolve_wandb_mode, run_name, warn_once
from fastmlp.training import EpochMetrics, train


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so an epoch's checkpoint and metrics line are
    written together or not at all (a resumed run then never repeats or skips an epoch)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


@dataclass
class ExperimentResult:
    """How a run ended. ``status`` is "finished", "diverged", "interrupted", or the status of
    a callback's :class:`~fastmlp.training.StopTraining` (e.g. "pruned")."""

    run_dir: RunDirectory
    status: str
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    model: MLP | None = None


def _figures_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        warn_once('figures need matplotlib; skipping them (pip install "fastmlp[plot]")')
        return False
    return True


def plot_test_figures(
    dataset: Any, probabilities: np.ndarray, directory: Path, title: str
) -> dict[str, Path]:
    """The test set's confusion matrix and most confident mistakes, as PNGs in ``directory``.

    probabilities: (N_test, classes) host array of the model's class probabilities.
    """
    from fastmlp import figures

    predictions = probabilities.argmax(axis=1)
    confusion = figures.confusion_matrix(dataset.y_test, predictions, len(dataset.class_names))
    return {
        "confusion_matrix": figures.plot_confusion_matrix(
            confusion, dataset.class_names, directory / "confusion_matrix.png", title=title
        ),
        "confident_mistakes": figures.plot_confident_mistakes(
            dataset.x_test,
            dataset.y_test,
            predictions,
            probabilities.max(axis=1),
            dataset.class_names,
            directory / "confident_mistakes.png",
        ),
    }


def _write_figures(
    run_dir: RunDirectory,
    model: MLP,
    dataset: Any,
    x_test: Any,
    history: list[dict[str, Any]],
    wandb_run: WandbRun | None,
) -> None:
    """Test-set figures and training curves in the run directory (and W&B)."""
    probabilities = model.backend.to_numpy(model.forward(x_test))
    if wandb_run is not None:
        predictions = probabilities.argmax(axis=1)
        wandb_run.log_confusion_matrix(dataset.y_test, predictions, dataset.class_names)
    if not _figures_available():
        return
    from fastmlp import figures

    paths = plot_test_figures(
        dataset, probabilities, run_dir.path, title=f"{run_dir.name} on {dataset.name} test"
    )
    if history:
        paths["training_curves"] = figures.plot_training_curves(
            history, run_dir.file("training_curves.png")
        )
    if wandb_run is not None:
        for key, path in paths.items():
            wandb_run.log_image(key, path)


def build_model_and_optimizer(
    config: dict[str, Any], backend: Backend, dataset: Any
) -> tuple[MLP, optim.Optimizer]:
    """The network and optimizer a normalised configuration describes, sized for ``dataset``."""
    model = MLP(
        input_size=int(np.prod(dataset.x_train.shape[1:])),
        hidden_sizes=config["hidden_size"],
        output_size=len(dataset.class_names),
        activation=config["activation"],
        weight_init=config["weight_init"],
        loss=config["loss"],
        weight_decay=config["weight_decay"],
        device=backend,
        dtype=config["dtype"],
        seed=config["seed"],
    )
    optimizer = optim.create(config["optimizer"], **optimizer_hyperparameters(config))
    return model, optimizer


def run_experiment(
    settings: dict[str, Any] | None = None,
    *,
    out: str | PathLike[str] = "runs",
    data_dir: str | PathLike[str] | None = None,
    wandb_mode: str | None = None,
    progress: bool = True,
    verbose: bool = True,
    resume: str | PathLike[str] | None = None,
    group: str | None = None,
    name: str | None = None,
    callbacks: Sequence[Callable[[EpochMetrics], Any]] = (),
    figures: bool = True,
) -> ExperimentResult:
    """Train and evaluate one configuration, tracking everything under ``out/<run-name>/``.

    Args:
        settings: configuration keyed by long flag names (see ``fastmlp.config.DEFAULTS``);
            missing keys take the defaults. With ``resume``, the stored configuration is
            used and ``settings`` overrides it (the CLI allows ``epochs``, the new total,
            and ``device``).
        out: parent directory of run directories.
        data_dir: where to look for the dataset files first.
        wandb_mode: online / offline / disabled; None resolves it (see ``fastmlp.tracking``).
        progress: progress bars on the terminal; verbose: a summary line per epoch.
        resume: a run directory whose checkpoint to continue from.
        group: W&B group (sweeps group their trials); name: run name override.
        callbacks: extra per-epoch callbacks (after the run's own tracking).
        figures: write figures at the end (needs matplotlib).

    Raises:
        ConfigError, DataError, CheckpointError, DeviceUnavailableError: bad input, with
        a one-line message.
    """
    settings = dict(settings or {})
    start_epoch = 0
    if resume is not None:
        run_dir = RunDirectory(resume)
        if not run_dir.file(RunDirectory.CONFIG).exists():
            raise FileNotFoundError(f"{resume} is not a run directory (no {RunDirectory.CONFIG})")
        stored = {key: value for key, value in run_dir.read_config().items() if key in DEFAULTS}
        overrides = {key: value for key, value in settings.items() if value is not None}
        config = normalize_config({**stored, **overrides})
    else:
        config = normalize_config(settings)

    if config["seed"] is None:
        config["seed"] = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    backend = get_backend(config["device"])
    # The validation split is the same for every run (data.load's fixed split seed), so
    # validation accuracies of different runs and sweep trials are comparable.
    dataset = datasets.load(
        config["dataset"], data_dir=data_dir, val_fraction=config["val_fraction"]
    )

    if resume is not None:
        checkpoint = load_checkpoint(run_dir.checkpoint_path, device=backend)
        model, optimizer = checkpoint.model, checkpoint.optimizer
        start_epoch = checkpoint.epoch or 0
        if start_epoch >= config["epochs"]:
            raise ValueError(
                f"{resume} already finished {start_epoch} of {config['epochs']} epochs; "
                f"pass --epochs N with N > {start_epoch} to train further"
            )
        run_dir.truncate_metrics(start_epoch)
    else:
        model, optimizer = build_model_and_optimizer(config, backend, dataset)
        run_dir = RunDirectory.create(out, name or run_name(config))
    config["run_name"] = run_dir.name
    config["device_used"] = backend.device
    run_dir.write_config(config)

    mode = resolve_wandb_mode(wandb_mode)
    wandb_run = WandbRun.start(
        mode=mode,
        project=config["wandb_project"],
        entity=config["wandb_entity"],
        name=run_dir.name,
        config=config,
        directory=run_dir.path,
        group=group,
        job_type="resume" if resume is not None else "train",
    )
    history = run_dir.read_metrics()

    def track(metrics: EpochMetrics) -> None:
        row = metrics.to_dict()
        history.append(row)
        with interrupts_deferred():
            model.save(
                run_dir.checkpoint_path,
                optimizer=optimizer,
                epoch=metrics.epoch,
                extra={"dataset": dataset.name, "class_names": list(dataset.class_names)},
            )
            run_dir.append_metrics(row)
        if wandb_run is not None:
            wandb_run.log(row, step=metrics.epoch)

    started = time.perf_counter()
    status = "finished"
    diverged_at = None
    stop_reason = None
    try:
        result = train(
            model,
            optimizer,
            dataset.x_train,
            dataset.y_train,
            epochs=config["epochs"] - start_epoch,
            batch_size=config["batch_size"],
            x_val=dataset.x_val,
            y_val=dataset.y_val,
            seed=config["seed"],
            progress=progress,
            verbose=verbose,
            callbacks=[track, *callbacks],
            start_epoch=start_epoch,
        )
        if result.diverged:
            status, diverged_at = "diverged", result.diverged_at
        elif result.stopped is not None:
            status = result.stopped.status
            stop_reason = str(result.stopped)
    except KeyboardInterrupt:
        status = "interrupted"
    train_seconds = time.perf_counter() - started

    summary: dict[str, Any] = {
        "status": status,
        "run_dir": str(run_dir.path),
        "epochs_completed": history[-1]["epoch"] if history else start_epoch,
        "train_seconds": round(train_seconds, 3),
        "device": backend.device,
        "fastmlp_version": fastmlp.__version__,
        "python": platform.python_version(),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if diverged_at is not None:
        summary["diverged_at"] = diverged_at
    if stop_reason is not None:
        summary["stop_reason"] = stop_reason
    val_accuracies = [row["val_accuracy"] for row in history if row.get("val_accuracy") is not None]
    if val_accuracies:
        summary["best_val_accuracy"] = max(val_accuracies)
        summary["val_accuracy"] = val_accuracies[-1]
    if status in ("finished", "diverged"):
        x_test = to_device_inputs(backend, dataset.x_test, model.dtype)
        test_loss, test_accuracy = model.evaluate(x_test, dataset.y_test.astype(np.int64))
        summary["test_loss"] = test_loss if math.isfinite(test_loss) else None
        summary["test_accuracy"] = test_accuracy
        if figures:
            _write_figures(run_dir, model, dataset, x_test, history, wandb_run)
    run_dir.write_summary(summary)
    if wandb_run is not None:
        wandb_run.update_summary(summary)
        wandb_run.finish(exit_code=0 if status == "finished" else 1)
        summary["wandb_dir"] = wandb_run.directory
    return ExperimentResult(
        run_dir=run_dir, status=status, history=history, summary=summary, model=model
    )
