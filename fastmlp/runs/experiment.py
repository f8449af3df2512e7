"""One complete run: data, model, optimizer, tracking, training, test evaluation, figures.

``run_experiment`` is what ``fastmlp train`` and every sweep trial execute, in four steps:

1. **settings**: the configuration checked (and, when resuming, the stored one with the
   allowed overrides), the W&B mode resolved, the data loaded, the memory checked: nothing
   is created on disk before all of that succeeded;
2. **start**: a new run directory, or the resumed one repaired (see below); its lock held
   for the rest of the run; ``config.json`` with the environment the numbers depend on;
3. **train**: after every epoch the metrics line, the W&B step and then the checkpoint are
   written, with interrupts held, and only then the epoch's line printed;
4. **finish**: the best epoch's weights put back (``restore_best``), test evaluation,
   figures, ``summary.json`` (written last), W&B summary.

After an epoch that improves the monitored validation metric, ``best.npz`` (the model and
its epoch) is written after the checkpoint; a kill in between leaves a ``best.npz`` one
improvement behind, which resume rewrites from the checkpoint (the same weights).

Resuming repairs whatever a kill left: a torn last metrics line or a line beyond the
checkpoint is dropped and that epoch trained again (exactly as before: seeded shuffling,
restored optimizer state), a run killed after its last epoch gets its missing test
evaluation, figures and summary. SIGTERM and SIGHUP stop a run as Ctrl-C does (see
:mod:`fastmlp.interrupts`); the W&B run is continued under the same id.
"""

from __future__ import annotations

import datetime
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

import fastmlp
from fastmlp import data as datasets
from fastmlp import optim, schedules
from fastmlp.backends import Backend, get_backend
from fastmlp.errors import UserError, describe, one_line
from fastmlp.interrupts import exit_status, interrupts_deferred
from fastmlp.monitor import Monitor
from fastmlp.nn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fastmlp.nn.inputs import to_device_inputs
from fastmlp.nn.losses import chance_loss
from fastmlp.nn.memory import check_memory, describe_sizes, parameter_count, training_bytes
from fastmlp.nn.mlp import MLP
from fastmlp.runs import (
    RunDirectory,
    RunDirectoryError,
    WandbRun,
    new_run_id,
    resolve_wandb_mode,
    run_name,
    warn_once,
)
from fastmlp.runs.config import ConfigError, TrainConfig, settings, validation_watchers
from fastmlp.runs.environment import blas_thread_limit, describe_environment
from fastmlp.runs.metrics import confusion_matrix
from fastmlp.training import EpochMetrics, format_epoch, train

# A training loss this many times the chance-level loss means the run is diverging.
EXPLODING_LOSS_FACTOR = 10.0

# Settings a checkpoint records because a resumed run must keep them to end where the
# uninterrupted one would (the model's and optimizer's own are in the checkpoint already).
FIXED_ON_RESUME = ("seed", "batch_size", "val_fraction", "monitor", "early_stopping",
                   "min_delta", "restore_best", "clip_grad_norm")  # fmt: skip

# Summary statuses after which a run has nothing left to do.
COMPLETE = ("finished", "diverged", "early_stopped")


@dataclass
class ExperimentResult:
    """How a run ended. ``status`` is "finished", "diverged", "early_stopped",
    "interrupted", or the status of a callback's :class:`~fastmlp.training.StopTraining`
    (e.g. "pruned"); ``interrupt`` is
    the KeyboardInterrupt (or :class:`~fastmlp.interrupts.Terminated`) that stopped it."""

    run_dir: RunDirectory
    status: str
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    model: MLP | None = None
    interrupt: KeyboardInterrupt | None = None

    @property
    def exit_status(self) -> int:
        """The command line's exit status for this ending."""
        if self.interrupt is not None:
            return exit_status(self.interrupt)
        return 1 if self.status == "diverged" else 0


@dataclass
class _Run:
    """A started run: its files, model, optimizer and schedule (None: constant rate), the
    monitored metric's best epoch so far, and where it stands."""

    run_dir: RunDirectory
    config: dict[str, Any]
    model: MLP
    optimizer: optim.Optimizer
    start_epoch: int
    history: list[dict[str, Any]]
    schedule: schedules.Schedule
    monitor: Monitor

    @property
    def restore_best(self) -> bool:
        """Whether the best epoch's weights are what the run ends with."""
        wanted = self.config["restore_best"]
        return bool(self.config["early_stopping"]) if wanted is None else wanted

    def checkpoint_extra(self, dataset: Any) -> dict[str, Any]:
        """What a checkpoint of this run holds beside the model and the optimizer."""
        return {
            "dataset": dataset.name,
            "class_names": list(dataset.class_names),
            "schedule": self.schedule.state_dict(),
            "settings": {key: self.config[key] for key in FIXED_ON_RESUME},
        }


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
    title: both figures' first title line, e.g. ``figure_title(run name, dataset)``.
    """
    from fastmlp.runs import figures

    predictions = probabilities.argmax(axis=1)
    confusion = confusion_matrix(dataset.y_test, predictions, len(dataset.class_names))
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
            title=title,
        ),
    }


def figure_title(name: str, dataset: Any) -> str:
    """The title of the figures of ``name`` (a run, a checkpoint) on ``dataset``'s test set,
    naming the data set as people write it: "run_name on Fashion-MNIST test set"."""
    from fastmlp.runs.figures import dataset_title

    return f"{name} on {dataset_title(dataset.name)} test set"


def network_arguments(config: TrainConfig, dataset: Any) -> dict[str, Any]:
    """The ``MLP`` arguments of a configuration's network sized for ``dataset``: all but
    the weight decay, dropout, seed and device (which a stack holds per model, or shares)."""
    return {
        "input_size": int(np.prod(dataset.x_train.shape[1:])),
        "hidden_sizes": config.hidden_size,
        "output_size": len(dataset.class_names),
        "activation": config.activation,
        "activation_options": config.activation_options(),
        "weight_init": config.weight_init,
        "loss": config.loss,
        "label_smoothing": config.label_smoothing,
        "dtype": config.dtype,
    }


def build_model_and_optimizer(
    config: Mapping[str, Any], backend: Backend, dataset: Any
) -> tuple[MLP, optim.Optimizer]:
    """The network and optimizer a configuration describes, sized for ``dataset``.

    An optimizer with decoupled weight decay (AdamW) takes ``weight_decay`` itself, for the
    weights only (the biases are a parameter group without it), and the model has no L2
    term; every other optimizer gets the L2 term in the model's gradient.
    """
    config = TrainConfig.from_settings(config)
    decoupled = optim.optimizer_class(config.optimizer).decoupled_weight_decay
    model = MLP(
        **network_arguments(config, dataset),
        weight_decay=0.0 if decoupled else config.weight_decay,
        dropout=config.dropout,
        device=backend,
        seed=config.seed,
    )
    optimizer = optim.create(
        config.optimizer,
        param_groups=model.param_groups() if decoupled else (),
        **config.optimizer_hyperparameters(),
    )
    return model, optimizer


def build_schedule(config: Mapping[str, Any]) -> schedules.Schedule:
    """The learning-rate schedule a configuration describes (not started yet)."""
    config = TrainConfig.from_settings(config)
    return schedules.create(config.lr_schedule, **config.schedule_hyperparameters())


def build_monitor(config: Mapping[str, Any]) -> Monitor:
    """The monitored validation metric of a configuration, with its early stopping."""
    return Monitor(config["monitor"], config["early_stopping"], config["min_delta"])


# ----------------------------------------------------------------- 1. settings


def _resumed_config(run_dir: RunDirectory, overrides_given: dict[str, Any]) -> dict[str, Any]:
    """The stored configuration of a run with ``settings`` on top, checked."""
    stored = run_dir.read_config()
    kept = {key: value for key, value in stored.items() if key in settings()}
    overrides = {key: value for key, value in overrides_given.items() if value is not None}
    try:
        return TrainConfig.from_settings({**kept, **overrides}).to_dict()
    except ConfigError as error:
        raise ConfigError(f"{run_dir.file(RunDirectory.CONFIG)}: {error}") from None


def _check_training_memory(
    config: dict[str, Any], backend: Backend, dataset: Any, n_models: int = 1
) -> None:
    """Raise before anything is written when training ``n_models`` networks of ``config``
    at once (a stack) would not fit in the device's memory."""
    features = int(np.prod(dataset.x_train.shape[1:]))
    sizes = (features, *config["hidden_size"], len(dataset.class_names))
    samples = len(dataset.y_train) + len(dataset.y_val) + len(dataset.y_test)
    buffers = len(optim.optimizer_class(config["optimizer"]).buffers)
    count = parameter_count(sizes) * n_models
    networks = f"a {describe_sizes(sizes)} network" if n_models == 1 else (
        f"a stack of {n_models} {describe_sizes(sizes)} networks")  # fmt: skip
    check_memory(
        backend,
        training_bytes(
            count, np.dtype(config["dtype"]).itemsize, buffers, samples * features, len(sizes) - 1
        ),
        f"training {networks} with {config['optimizer']} ({count:,} {config['dtype']} parameters)",
        "use smaller or fewer hidden layers (-sz, -nhl)"
        + ("" if n_models == 1 else ", or fewer models per stack (--stack)"),
    )


def _check_fits_the_data(config: dict[str, Any], dataset: Any) -> None:
    """Raise before anything is written when the settings cannot run on this data: a
    validation split too small to hold a sample for what watches it, or a schedule that
    needs more steps than the run has."""
    watchers = validation_watchers(config)
    if watchers and len(dataset.y_val) == 0:
        raise ConfigError(
            f"{watchers[0]} watches {config['monitor']}, but val_fraction "
            f"{config['val_fraction']:g} of {len(dataset.y_train)} training images leaves no "
            "validation image: use a larger val_fraction"
        )
    steps = math.ceil(len(dataset.y_train) / min(config["batch_size"], len(dataset.y_train)))
    try:
        build_schedule(config).start(config["learning_rate"], config["epochs"], steps)
    except ValueError as error:
        raise ConfigError(str(error)) from None


# -------------------------------------------------------------------- 2. start


def _note(message: str) -> None:
    print(f"fastmlp: {message}", file=sys.stderr, flush=True)


def _check_checkpoint_matches(
    run_dir: RunDirectory, config: dict[str, Any], checkpoint: Any, dataset: Any
) -> None:
    """Raise if the checkpoint is not the run ``config.json`` describes (edited config)."""
    model, saved = checkpoint.model, checkpoint.model.config
    built = TrainConfig.from_settings(config)
    decoupled = optim.optimizer_class(built.optimizer).decoupled_weight_decay
    expected = {
        "hidden_size": (list(built.hidden_size), saved["hidden_sizes"]),
        "activation": (built.activation, saved["activation"]),
        "activation options": (built.activation_options(), saved["activation_options"]),
        "weight_init": (built.weight_init, saved["weight_init"]),
        "loss": (built.loss, saved["loss"]),
        "L2 weight decay": (0.0 if decoupled else built.weight_decay, saved["weight_decay"]),
        "dropout": (built.dropout, saved["dropout"]),
        "label_smoothing": (built.label_smoothing, saved.get("label_smoothing", 0.0)),
        "dtype": (built.dtype, saved["dtype"]),
        "dataset": (dataset.name, checkpoint.extra.get("dataset", dataset.name)),
        "input size": (int(np.prod(dataset.x_train.shape[1:])), model.input_size),
        "classes": (len(dataset.class_names), model.output_size),
    }
    fresh = optim.create(built.optimizer, **built.optimizer_hyperparameters())
    expected["optimizer"] = (
        (fresh.name, fresh.hyperparameter_values()),
        (checkpoint.optimizer.name, checkpoint.optimizer.hyperparameter_values()),
    )
    recorded = checkpoint.extra.get("settings")
    if isinstance(recorded, dict):  # older checkpoints do not record them
        for key in FIXED_ON_RESUME:
            if key in recorded:
                expected[key] = (config[key], recorded[key])
    schedule_state = checkpoint.extra.get("schedule")
    if isinstance(schedule_state, dict) and "hyperparameters" in schedule_state:
        fresh_schedule = build_schedule(config)
        expected["lr_schedule"] = (
            (fresh_schedule.name, fresh_schedule.hyperparameter_values()),
            (schedule_state.get("name"), schedule_state["hyperparameters"]),
        )
    for setting, (wanted, held) in expected.items():
        if wanted != held:
            raise RunDirectoryError(
                f"{run_dir.file(RunDirectory.CONFIG)} says {setting} {wanted} but "
                f"{run_dir.checkpoint_path.name} holds {held}: the configuration was changed "
                "after the run started; put it back, or start a new run"
            )


def _resume(run_dir: RunDirectory, config: dict[str, Any], backend: Backend, dataset: Any) -> _Run:
    """Open a run to continue it, repairing what a kill left (the run's lock is held)."""
    metrics = run_dir.parse_metrics()
    if metrics.torn:
        _note(
            f"{run_dir.file(RunDirectory.METRICS)}: dropped its torn last line (what a kill or "
            "a full disk leaves); that epoch is trained again"
        )
    if run_dir.checkpoint_path.exists():
        checkpoint = load_checkpoint(run_dir.checkpoint_path, device=backend)
        if checkpoint.optimizer is None or checkpoint.epoch is None:
            raise CheckpointError(
                f"{run_dir.checkpoint_path} holds no optimizer state or epoch (saved by "
                "model.save without them?): it can be evaluated but not resumed"
            )
        schedule = _stored_schedule(run_dir, config, checkpoint)
        if schedule.base_lr is not None:  # the optimizer holds the scheduled rate
            checkpoint.optimizer.lr = schedule.base_lr
        _check_checkpoint_matches(run_dir, config, checkpoint, dataset)
        model, optimizer, epoch = checkpoint.model, checkpoint.optimizer, checkpoint.epoch
    else:
        model, optimizer = build_model_and_optimizer(config, backend, dataset)
        schedule, epoch = build_schedule(config), 0
    _check_resumable(run_dir, config, epoch)
    rows = [row for row in metrics.rows if row["epoch"] <= epoch]
    beyond = [row["epoch"] for row in metrics.rows if row["epoch"] > epoch]
    if beyond:
        _note(
            f"{run_dir.name}: dropped the metrics of epoch {beyond[0]}, which has no "
            "checkpoint yet; it is trained again"
        )
    if beyond or metrics.torn:
        run_dir.rewrite_metrics(rows)
    missing = sorted(set(range(1, epoch + 1)) - {row["epoch"] for row in rows})
    if missing:
        _note(
            f"{run_dir.file(RunDirectory.METRICS)} has no line for epoch(s) "
            f"{', '.join(map(str, missing))}; their metrics are lost (the weights are not)"
        )
    run = _Run(run_dir, config, model, optimizer, epoch, rows, schedule,
               build_monitor(config).replay(rows))  # fmt: skip
    _repair_best(run, backend, dataset)
    return run


def _stored_schedule(run_dir: RunDirectory, config: dict[str, Any], checkpoint: Any) -> Any:
    """The run's schedule with the state its checkpoint holds (none: a fresh one)."""
    schedule = build_schedule(config)
    state = checkpoint.extra.get("schedule")
    if state is None:
        return schedule
    try:
        if not isinstance(state, dict):
            raise ValueError(f"schedule state must be a mapping, got {type(state).__name__}")
        schedule.load_state_dict(state)
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        raise CheckpointError(
            f"{run_dir.checkpoint_path}: its learning-rate schedule state does not fit "
            f"{config['lr_schedule']} ({one_line(error)}): the configuration was changed "
            "after the run started; put it back, or start a new run"
        ) from None
    return schedule


def _repair_best(run: _Run, backend: Backend, dataset: Any) -> None:
    """Make ``best.npz`` hold the best epoch so far; a kill after the checkpoint of a new
    best epoch but before ``best.npz`` leaves it one improvement behind. An unreadable one
    (corrupt, a folder) is moved aside to ``best.npz.bad``."""
    best_epoch = run.monitor.best_epoch
    path = run.run_dir.best_path
    held = None
    if path.exists() or path.is_symlink():
        try:
            held = load_checkpoint(path, device=backend).epoch
        except (CheckpointError, OSError) as error:
            aside = path.with_name(path.name + ".bad")
            _note(f"{path}: {one_line(error)}; moved aside to {aside.name}")
            os.replace(path, aside)
    if held == best_epoch:
        return
    if best_epoch is not None and best_epoch == run.start_epoch:
        _note(f"{path}: rewritten from the checkpoint of epoch {best_epoch}, the best so far")
        _save_best(run, best_epoch, dataset)
    elif best_epoch is not None:
        holds = f"holds epoch {held}" if held is not None else "is missing"
        _note(
            f"{path} {holds}, not the best epoch {best_epoch}, whose weights are lost: the run "
            "keeps the best of the epochs still to come (or evaluates the last one)"
        )


def _save_best(run: _Run, epoch: int, dataset: Any) -> None:
    """``best.npz``: the model of ``epoch``, which the monitor says is the best so far."""
    extra = {**run.checkpoint_extra(dataset), "monitor": run.monitor.monitor,
             "best": run.monitor.best}  # fmt: skip
    save_checkpoint(run.run_dir.best_path, run.model, epoch=epoch, extra=extra,
                    make_parents=False)  # fmt: skip


def _check_resumable(run_dir: RunDirectory, config: dict[str, Any], epoch: int) -> None:
    """Raise unless resuming at ``epoch`` has something to do."""
    try:
        summary = run_dir.read_summary()
    except RunDirectoryError:
        summary = {}  # rewritten at the end of this run
    status = summary.get("status")
    if status == "early_stopped":
        raise UserError(
            f"{run_dir.path} stopped early at epoch {summary.get('epochs_completed')}: "
            f"{config['monitor']} had stopped improving; start a new run to train longer"
        )
    if status == "diverged":
        raise UserError(
            f"{run_dir.path} diverged at epoch {summary.get('diverged_at')}; resuming would "
            "diverge again: start a new run with a smaller learning rate"
        )
    if epoch > config["epochs"]:
        raise UserError(
            f"{run_dir.path} has already trained {epoch} epochs, more than the "
            f"{config['epochs']} asked for; pass --epochs N with N > {epoch} to train further"
        )
    if epoch == config["epochs"] and status in COMPLETE:
        raise UserError(
            f"{run_dir.path} already finished {epoch} of {config['epochs']} epochs; "
            f"pass --epochs N with N > {epoch} to train further"
        )


def _start(
    config: dict[str, Any],
    backend: Backend,
    dataset: Any,
    out: str | PathLike[str],
    name: str | None,
    resume_dir: RunDirectory | None,
    stack: ExitStack,
) -> _Run:
    """A new run directory (locked), or the resumed one (locked, repaired)."""
    if resume_dir is not None:
        stack.enter_context(resume_dir.lock())
        return _resume(resume_dir, config, backend, dataset)
    model, optimizer = build_model_and_optimizer(config, backend, dataset)
    run_dir = RunDirectory.create(out, name or run_name(config))
    stack.callback(run_dir.release)
    return _Run(run_dir, config, model, optimizer, 0, [], build_schedule(config),
                build_monitor(config))  # fmt: skip


# -------------------------------------------------------------------- 3. train


def _tracker(
    run: _Run, dataset: Any, wandb_run: WandbRun | None, verbose: bool, warnings: list[str]
) -> Callable[[EpochMetrics], None]:
    """The per-epoch callback that saves an epoch: metrics line, W&B step, checkpoint (in
    that order, with interrupts held), then the epoch's printed line."""
    chance = chance_loss(run.model.loss, run.model.output_size)

    def track(metrics: EpochMetrics) -> None:
        row = metrics.to_dict()
        with interrupts_deferred():
            run.run_dir.append_metrics(row)
            if wandb_run is not None:
                wandb_run.log(row, step=metrics.epoch)
            save_checkpoint(
                run.run_dir.checkpoint_path,
                run.model,
                optimizer=run.optimizer,
                epoch=metrics.epoch,
                extra=run.checkpoint_extra(dataset),
                make_parents=False,
            )
            if run.monitor.best_epoch == metrics.epoch:
                _save_best(run, metrics.epoch, dataset)
            run.history.append(row)
            if verbose:
                print(format_epoch(metrics, run.config["epochs"]), flush=True)
        if metrics.train_loss > EXPLODING_LOSS_FACTOR * chance and not warnings:
            warnings.append(
                f"epoch {metrics.epoch}: the training loss {metrics.train_loss:.3g} is far above "
                f"chance level ({chance:.3g} for {run.model.output_size} classes): the run is "
                "diverging; try a smaller learning rate"
            )
            warn_once(f"warning: {warnings[-1]}")

    return track


# ------------------------------------------------------------------- 4. finish


def _write_figures(run: _Run, dataset: Any, x_test: Any, wandb_run: WandbRun | None) -> None:
    """Test-set figures and training curves in the run directory (and W&B)."""
    model, run_dir = run.model, run.run_dir
    probabilities = model.backend.to_numpy(model.forward(x_test))
    if not np.isfinite(probabilities).all():
        warn_once(f"{run_dir.name}: the model's outputs are not finite; no test figures")
        return
    if wandb_run is not None:
        predictions = probabilities.argmax(axis=1)
        wandb_run.log_confusion_matrix(dataset.y_test, predictions, dataset.class_names)
    if not _figures_available():
        return
    from fastmlp.runs import figures

    paths = plot_test_figures(
        dataset, probabilities, run_dir.path, title=figure_title(run_dir.name, dataset)
    )
    if run.history:
        paths["training_curves"] = figures.plot_training_curves(
            run.history,
            run_dir.file("training_curves.png"),
            loss_name=run.config["loss"],
            title=f"{run_dir.name}: training on {figures.dataset_title(dataset.name)}",
        )
    if wandb_run is not None:
        for key, path in paths.items():
            wandb_run.log_image(key, path)


def _summary(run: _Run, status: str, seconds: float, environment: dict[str, Any]) -> dict:
    history = run.history
    summary: dict[str, Any] = {
        "status": status,
        "run_dir": str(run.run_dir.path),
        "epochs_completed": max(history[-1]["epoch"] if history else 0, run.start_epoch),
        "train_seconds": round(seconds, 3),
        "device": run.model.backend.device,
        "fastmlp_version": fastmlp.__version__,
        "python": environment["python"],
        "environment": environment,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if run.start_epoch:
        summary["resumed_from_epoch"] = run.start_epoch
    val_accuracies = [row["val_accuracy"] for row in history if row.get("val_accuracy") is not None]
    if val_accuracies:
        summary["best_val_accuracy"] = max(val_accuracies)
        summary["val_accuracy"] = val_accuracies[-1]
    best = next((row for row in history if row["epoch"] == run.monitor.best_epoch), None)
    if best is not None:
        summary["monitor"] = run.monitor.monitor
        summary["best_epoch"] = best["epoch"]
        summary["best_epoch_val_accuracy"] = best.get("val_accuracy")
        summary["best_epoch_val_loss"] = best.get("val_loss")
        summary["restore_best"] = run.restore_best
    return summary


def _restore_best(run: _Run, summary: dict[str, Any]) -> int:
    """Put the best epoch's weights (``best.npz``) into the model when the run restores
    them; the epoch the model then holds."""
    last = summary["epochs_completed"]
    best = run.monitor.best_epoch
    if not run.restore_best or best is None or best == last:
        return last
    if not run.run_dir.best_path.exists():
        warn_once(f"{run.run_dir.name}: best.npz is missing; evaluating the last epoch")
        return last
    try:
        checkpoint = load_checkpoint(run.run_dir.best_path, device=run.model.backend)
    except (CheckpointError, OSError) as error:
        warn_once(f"{run.run_dir.best_path}: {one_line(error)}; evaluating the last epoch")
        return last
    if checkpoint.epoch != best or checkpoint.model.params.shape != run.model.params.shape:
        warn_once(
            f"{run.run_dir.best_path} holds epoch {checkpoint.epoch}, not the best epoch "
            f"{best}; evaluating the last epoch"
        )
        return last
    run.model.params[...] = checkpoint.model.params
    return best


def _evaluate_test_set(
    run: _Run, dataset: Any, summary: dict[str, Any], wandb_run: WandbRun | None, figures: bool
) -> None:
    model = run.model
    x_test = to_device_inputs(model.backend, dataset.x_test, model.dtype)
    test_loss, test_accuracy = model.evaluate(x_test, dataset.y_test)
    summary["test_loss"] = test_loss if math.isfinite(test_loss) else None
    summary["test_accuracy"] = test_accuracy
    if figures:
        _write_figures(run, dataset, x_test, wandb_run)


# ------------------------------------------------------------------- the run


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
        settings: configuration keyed by long flag names (see ``fastmlp.runs.config``);
            missing keys take the defaults. With ``resume``, the stored configuration is
            used and ``settings`` overrides it (the CLI allows ``epochs``, the new total,
            and ``device``).
        out: parent directory of run directories.
        data_dir: where to look for the dataset files first.
        wandb_mode: online / offline / disabled; None resolves it (see ``fastmlp.runs``).
        progress: progress bars on the terminal; verbose: a summary line per epoch.
        resume: a run directory to continue (or finish) from its checkpoint.
        group: W&B group (sweeps group their trials); name: run name override.
        callbacks: extra per-epoch callbacks (after the run's own tracking).
        figures: write figures at the end (needs matplotlib).

    Raises:
        UserError (ConfigError, DataError, CheckpointError, RunDirectoryError, ...),
        DeviceUnavailableError, InsufficientMemoryError: bad input, with a one-line message.
        An unexpected error is re-raised after the summary records it as failed.
    """
    mode = resolve_wandb_mode(wandb_mode)
    config, stored, resume_dir = _settings(dict(settings or {}), resume)
    backend, dataset = _device_and_data(config, data_dir)

    with ExitStack() as stack:
        stack.enter_context(blas_thread_limit(config["blas_threads"]))
        run = _start(config, backend, dataset, out, name, resume_dir, stack)
        environment = describe_environment(backend, config["dtype"], config["seed"])
        _write_config(run, backend, stored, environment)
        wandb_run = _start_wandb(run, mode, group, resumed=resume is not None)
        return _train_and_finish(
            run, dataset, wandb_run, environment, progress, verbose, callbacks, figures
        )


def _device_and_data(
    config: dict[str, Any], data_dir: str | PathLike[str] | None, n_models: int = 1
) -> tuple[Backend, Any]:
    """Step 1's backend and dataset of ``config``, checked to fit the device's memory (for
    ``n_models`` networks at once) and the settings to fit the data."""
    backend = get_backend(config["device"])
    # The validation split is the same for every run (data.load's fixed split seed), so
    # validation accuracies of different runs and sweep trials are comparable.
    dataset = datasets.load(
        config["dataset"], data_dir=data_dir, val_fraction=config["val_fraction"]
    )
    _check_training_memory(config, backend, dataset, n_models)
    _check_fits_the_data(config, dataset)
    return backend, dataset


def _start_wandb(run: _Run, mode: str, group: str | None, resumed: bool) -> WandbRun | None:
    """The run's W&B run (None: W&B is off), under the id ``config.json`` keeps."""
    return WandbRun.start(
        mode=mode,
        project=run.config["wandb_project"],
        entity=run.config["wandb_entity"],
        name=run.run_dir.name,
        config={key: value for key, value in run.config.items() if key != "environment"},
        directory=run.run_dir.path,
        group=group,
        job_type="resume" if resumed else "train",
        run_id=run.config["wandb_run_id"],
        resume=resumed,
        tags=run.config["tags"],
    )


def _settings(
    settings: dict[str, Any], resume: str | PathLike[str] | None
) -> tuple[dict[str, Any], dict[str, Any], RunDirectory | None]:
    """Step 1: the checked configuration (a resumed run's own, with the allowed overrides),
    its seed drawn if it has none; the stored configuration; the run directory to resume."""
    resume_dir = None
    stored: dict[str, Any] = {}
    if resume is not None:
        resume_dir = RunDirectory(resume)
        resume_dir.require()
        stored = resume_dir.read_config()
        config = _resumed_config(resume_dir, settings)
    else:
        config = TrainConfig.from_settings(settings).to_dict()
    if config["seed"] is None:
        config["seed"] = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    return config, stored, resume_dir


def _write_config(
    run: _Run, backend: Backend, stored: dict[str, Any], environment: dict[str, Any]
) -> None:
    """``config.json``: the settings, the run's name, device and W&B id (kept on resume),
    and the environment the numbers depend on."""
    config = run.config
    config["run_name"] = run.run_dir.name
    config["device_used"] = backend.device
    config["wandb_run_id"] = stored.get("wandb_run_id") or new_run_id()
    config["environment"] = environment
    run.run_dir.write_config(config)


@dataclass
class _Ending:
    """How a run's training ended: its status, the reason of a stop, the summary entries
    it adds (``diverged_at``), and the interrupt that stopped it."""

    status: str
    stopped: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    interrupt: KeyboardInterrupt | None = None


def _ending_of(history: Any) -> _Ending:
    """The ending of a run from its :class:`~fastmlp.training.TrainingHistory`."""
    if history.diverged:
        return _Ending("diverged", summary={"diverged_at": history.diverged_at})
    if history.stopped is not None:
        return _Ending(history.stopped.status, str(history.stopped))
    return _Ending("finished")


def _train_and_finish(
    run: _Run,
    dataset: Any,
    wandb_run: WandbRun | None,
    environment: dict[str, Any],
    progress: bool,
    verbose: bool,
    callbacks: Sequence[Callable[[EpochMetrics], Any]],
    figures: bool,
) -> ExperimentResult:
    """Steps 3 and 4: train what is left, then evaluate, draw, summarise and close W&B."""
    warnings: list[str] = []
    started = time.perf_counter()
    ending = _Ending("finished")
    try:
        remaining = run.config["epochs"] - run.start_epoch
        if run.monitor.should_stop:  # killed after it stopped early, before its summary
            ending = _Ending("early_stopped", run.monitor.stop_reason())
            remaining = 0
        if remaining > 0:
            result = train(
                run.model,
                run.optimizer,
                dataset.x_train,
                dataset.y_train,
                epochs=remaining,
                batch_size=run.config["batch_size"],
                x_val=dataset.x_val,
                y_val=dataset.y_val,
                seed=run.config["seed"],
                progress=progress,
                verbose=False,
                callbacks=[_tracker(run, dataset, wandb_run, verbose, warnings), *callbacks],
                start_epoch=run.start_epoch,
                schedule=run.schedule,
                monitor=run.monitor,
                restore_best=False,  # from best.npz below, which a resumed run has too
                clip_grad_norm=run.config["clip_grad_norm"],
            )
            ending = _ending_of(result)
    except KeyboardInterrupt as error:
        ending = _Ending("interrupted", interrupt=error)
    except Exception as error:
        _close_failed(run, error, time.perf_counter() - started, environment, wandb_run, warnings)
        raise
    return _conclude(run, dataset, wandb_run, environment, figures, warnings,
                     time.perf_counter() - started, ending)  # fmt: skip


def _conclude(
    run: _Run,
    dataset: Any,
    wandb_run: WandbRun | None,
    environment: dict[str, Any],
    figures: bool,
    warnings: list[str],
    seconds: float,
    ending: _Ending,
) -> ExperimentResult:
    """Step 4 for a run whose training ended as ``ending`` after ``seconds``: the best
    epoch's weights back, test evaluation and figures (a complete run), the summary, W&B
    closed. An unexpected error is re-raised after the summary records it as failed."""
    status, interrupt = ending.status, ending.interrupt
    try:
        summary = {**_summary(run, status, seconds, environment), **ending.summary}
        if ending.stopped is not None:
            summary["stop_reason"] = ending.stopped
        if status in COMPLETE:
            summary["evaluated_epoch"] = _restore_best(run, summary)
            _evaluate_test_set(run, dataset, summary, wandb_run, figures)
    except KeyboardInterrupt as error:
        status, interrupt = "interrupted", error
        summary = {**_summary(run, status, seconds, environment), **ending.summary}
    except Exception as error:
        _close_failed(run, error, seconds, environment, wandb_run, warnings)
        raise
    _close(run, summary, wandb_run, warnings, interrupt=interrupt)
    if wandb_run is not None:
        summary["wandb_dir"] = wandb_run.directory
    return ExperimentResult(
        run_dir=run.run_dir,
        status=status,
        history=run.history,
        summary=summary,
        model=run.model,
        interrupt=interrupt,
    )


def _close_failed(
    run: _Run,
    error: Exception,
    seconds: float,
    environment: dict[str, Any],
    wandb_run: WandbRun | None,
    warnings: list[str],
) -> None:
    """Record a run that ``error`` stopped: its summary says failed, and why."""
    summary = _summary(run, "failed", seconds, environment)
    summary["error"] = f"{type(error).__name__}: {one_line(error)}"
    _close(run, summary, wandb_run, warnings, exit_code=1)


def _close(
    run: _Run,
    summary: dict[str, Any],
    wandb_run: WandbRun | None,
    warnings: list[str],
    exit_code: int | None = None,
    interrupt: KeyboardInterrupt | None = None,
) -> None:
    """Write ``summary.json`` (last of all the run's files) and end the W&B run."""
    if warnings:
        summary["warnings"] = warnings
    try:
        with interrupts_deferred():
            run.run_dir.write_summary(summary)
    except OSError as error:
        if exit_code is None:
            raise
        # the run failed already (a full disk, its directory deleted): keep its error, and
        # say that the summary is missing too unless the whole directory is gone
        if run.run_dir.path.is_dir():
            warn_once(f"{run.run_dir.name}: could not write summary.json ({describe(error)})")
    if wandb_run is None:
        return
    wandb_run.update_summary(summary)
    if interrupt is not None:
        wandb_run.finish(exit_code=exit_status(interrupt), preempted=True)
    else:
        failed = summary["status"] in ("diverged", "failed")
        wandb_run.finish(exit_code=exit_code if exit_code is not None else int(failed))
