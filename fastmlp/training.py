"""The training loop: device-resident data, on-device metrics, one host sync per epoch.

One epoch, for a model on backend B:

1. draw a permutation of the training set on the device and re-seed the dropout masks
   (both seeded per epoch from the run seed, so a resumed run shuffles and drops exactly
   like an uninterrupted one);
2. for each batch, gather its rows from the device copy of the data into preallocated
   buffers, run ``model.loss_and_grad`` (which also counts correct predictions), add the
   0-d loss to an on-device accumulator, and apply ``optimizer.step``;
3. synchronise once: read the accumulated loss and accuracy; stop if the loss is not
   finite (the weights are put back to where the epoch started);
4. evaluate on the validation set; update the monitored metric's best epoch, the
   schedule (reduce-on-plateau watches the metric) and early stopping; report, and call
   the callbacks.

The learning rate, when a schedule sets it (``fastmlp.schedules``), is the optimizer's
host scalar ``lr``, set before each step (or once per epoch when it is constant within
the epoch); the fused update kernel takes it as an argument, so nothing is recompiled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fastmlp.backends.denormals import denormals_are_zero
from fastmlp.monitor import Monitor
from fastmlp.nn.inputs import to_device_inputs, to_device_labels
from fastmlp.nn.mlp import MLP, check_max_grad_norm
from fastmlp.schedules import Schedule, create


@dataclass
class EpochMetrics:
    """What one epoch measured. Losses are mean data losses; accuracies in [0, 1].

    ``train_accuracy`` counts the predictions made during the epoch's forward passes
    (as the weights changed), ``val_*`` are measured after the epoch, ``seconds`` is the
    wall time of the whole epoch including validation, ``learning_rate`` the optimizer's
    at the epoch's last step.
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    samples_per_second: float
    learning_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StopTraining(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a callback to end training after the current epoch (e.g. by a pruner).

    ``status`` says why in one word ("pruned"); the message says more.
    """

    def __init__(self, status: str, message: str = "") -> None:
        super().__init__(message or status)
        self.status = status


@dataclass
class TrainingHistory:
    """Per-epoch metrics; the epoch at which the loss stopped being finite, if it did; the
    :class:`StopTraining` that ended training early, if any (a callback's, or early
    stopping's with status "early_stopped"); the best epoch of the monitored metric and its
    value (None without validation); whether the weights are the best epoch's
    (``restored_best``)."""

    epochs: list[EpochMetrics] = field(default_factory=list)
    diverged_at: int | None = None
    stopped: StopTraining | None = None
    best_epoch: int | None = None
    best_value: float | None = None
    restored_best: bool = False

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    def __getitem__(self, index: int) -> EpochMetrics:
        return self.epochs[index]

    def __len__(self) -> int:
        return len(self.epochs)


Callback = Callable[[EpochMetrics], Any]


# Streams of per-epoch random numbers derived from the run seed.
SHUFFLE, DROPOUT = 0, 1


def epoch_seed(seed: int, epoch: int, stream: int = SHUFFLE) -> int:
    """The seed of one epoch's shuffling (``stream`` SHUFFLE) or dropout masks (DROPOUT),
    derived from the run seed: the same for a resumed run as for an uninterrupted one."""
    entropy = [seed, epoch] if stream == SHUFFLE else [seed, epoch, stream]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _progress_bar(total: int, epoch: int, epochs: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False)


def format_epoch(metrics: EpochMetrics, epochs: int) -> str:
    """A one-line summary of an epoch."""
    line = (
        f"epoch {metrics.epoch}/{epochs}  loss {metrics.train_loss:.4f}  "
        f"acc {metrics.train_accuracy:.4f}"
    )
    if metrics.val_loss is not None:
        line += f"  val_loss {metrics.val_loss:.4f}  val_acc {metrics.val_accuracy:.4f}"
    return line + f"  {metrics.seconds:.1f}s  {metrics.samples_per_second:,.0f} samples/s"


def train(
    model: MLP,
    optimizer: Any,
    x_train: Any,
    y_train: Any,
    *,
    epochs: int,
    batch_size: int,
    x_val: Any = None,
    y_val: Any = None,
    seed: int | None = None,
    progress: bool = True,
    verbose: bool = True,
    callbacks: Sequence[Callback] | Iterable[Callback] = (),
    start_epoch: int = 0,
    schedule: Schedule | str | None = None,
    monitor: str | Monitor = "val_accuracy",
    early_stopping: int = 0,
    min_delta: float = 0.0,
    restore_best: bool | None = None,
    clip_grad_norm: float | None = None,
) -> TrainingHistory:
    """Train ``model`` with ``optimizer`` for ``epochs`` epochs of shuffled mini-batches.

    Args:
        model: the network; its backend decides where everything runs.
        optimizer: a ``fastmlp.optim`` optimizer.
        x_train: (N, H, W) uint8 images (scaled to [0, 1] on the device) or (N, features)
            floats. y_train: (N,) integer labels.
        epochs: epochs to run (counting from ``start_epoch``); batch_size: samples per step
            (the last batch of an epoch may be smaller).
        x_val, y_val: optional validation set, evaluated after every epoch.
        seed: shuffling seed (None: fresh entropy); epoch k always shuffles with
            ``epoch_seed(seed, k)``, so resuming at ``start_epoch`` repeats the same order.
        progress: show a progress bar during each epoch (needs tqdm).
        verbose: print a one-line summary after each epoch.
        callbacks: called with each epoch's :class:`EpochMetrics` after it ends; one may
            raise :class:`StopTraining` to end training there.
        start_epoch: epochs already completed (when resuming from a checkpoint).
        schedule: a learning-rate schedule (``fastmlp.schedules.create("cosine", ...)``)
            or its name; it spans epochs 1 to ``start_epoch + epochs`` from the optimizer's
            ``lr`` (or the base rate it holds already, when resumed). None: constant.
        monitor: the validation metric that decides the best epoch, early stopping and
            reduce-on-plateau: "val_accuracy" or "val_loss", or a :class:`Monitor` that
            goes on from an earlier part of the run (then ``early_stopping`` and
            ``min_delta`` are its own).
        early_stopping: stop after this many epochs in a row without an improvement of
            more than ``min_delta`` (0: never). Needs a validation set.
        restore_best: at the end, put back the weights of the best epoch of this call
            (default: when early stopping is on). Needs a validation set.
        clip_grad_norm: scale each step's gradient so that its L2 norm over all
            parameters is at most this (``torch.nn.utils.clip_grad_norm_``), before any
            L2 weight-decay term is added. None: no clipping.

    Returns:
        The history. If the loss became NaN or infinite in epoch k, training stops,
        ``history.diverged_at == k`` and the weights are those from before epoch k.

    A stack of models (``MLP(n_models=K)``) trains all K on the same batches: see
    :func:`fastmlp.stack_training.train_stack`, which takes the same arguments and
    returns a :class:`~fastmlp.stack_training.StackHistory`.
    """
    if model.n_models > 1:
        from fastmlp.stack_training import train_stack

        return train_stack(  # type: ignore[return-value]
            model, optimizer, x_train, y_train, epochs=epochs, batch_size=batch_size,
            x_val=x_val, y_val=y_val, seed=seed, progress=progress, verbose=verbose,
            callbacks=callbacks, start_epoch=start_epoch, schedule=schedule, monitor=monitor,
            early_stopping=early_stopping, min_delta=min_delta, restore_best=restore_best,
            clip_grad_norm=clip_grad_norm,
        )  # fmt: skip
    data, seed = _prepared(model, x_train, y_train, x_val, y_val, epochs, batch_size, seed)
    last_epoch = start_epoch + int(epochs)
    tracker = _monitor(monitor, early_stopping, min_delta)
    if restore_best is None:
        restore_best = tracker.patience > 0
    if schedule is not None:
        schedule = _start_schedule(
            create(schedule), base_rate(optimizer), tracker.mode, last_epoch, data.steps_per_epoch
        )
    require_validation(data, tracker.monitor, tracker.patience, restore_best, schedule)
    clip_grad_norm = check_max_grad_norm(clip_grad_norm)
    history = TrainingHistory(best_epoch=tracker.best_epoch, best_value=tracker.best)
    best_params = (
        model.backend.empty(model.params.shape, dtype=model.dtype) if restore_best else None
    )
    best_in_memory = False

    was_training = model.training
    model.train()
    try:
        # subnormal floats computed as zero while training (fastmlp/backends/denormals.py)
        with denormals_are_zero():
            for epoch in range(start_epoch + 1, last_epoch + 1):
                started = time.perf_counter()
                data.snapshot[...] = model.params
                bar = _progress_bar(data.steps_per_epoch, epoch, last_epoch, progress)
                _train_epoch(model, optimizer, data, seed, epoch, bar, schedule, clip_grad_norm)
                if data.has_validation:  # evaluation never drops units
                    model._evaluation_sums_(data.x_val, data.y_val, data.totals[2:])
                # the epoch's one host sync: training and validation numbers together
                loss_sum, correct, val_loss_sum, val_correct = model.backend.to_numpy(data.totals)
                train_loss, train_accuracy = float(loss_sum) / data.n, int(correct) / data.n
                train_seconds = time.perf_counter() - started
                if bar is not None:
                    bar.close()
                if not math.isfinite(train_loss):
                    model.params[...] = data.snapshot
                    history.diverged_at = epoch
                    if verbose:
                        print(_diverged_message(epoch, train_loss), flush=True)
                    break
                val_loss = val_accuracy = None
                if data.has_validation:
                    n_val = data.x_val.shape[0]
                    val_loss, val_accuracy = float(val_loss_sum) / n_val, int(val_correct) / n_val
                metrics = EpochMetrics(
                    epoch=epoch,
                    train_loss=train_loss,
                    train_accuracy=train_accuracy,
                    val_loss=val_loss,
                    val_accuracy=val_accuracy,
                    seconds=time.perf_counter() - started,
                    samples_per_second=data.n / train_seconds,
                    learning_rate=getattr(optimizer, "lr", None),
                )
                if tracker.update(epoch, metrics.to_dict()):
                    history.best_epoch, history.best_value = tracker.best_epoch, tracker.best
                    if best_params is not None:
                        best_params[...] = model.params
                        best_in_memory = True
                if schedule is not None:
                    schedule.epoch_ended(epoch - 1, getattr(metrics, tracker.monitor))
                history.epochs.append(metrics)
                if verbose:
                    print(format_epoch(metrics, last_epoch), flush=True)
                history.stopped = _run_callbacks(callbacks, metrics)
                if history.stopped is None and tracker.should_stop:
                    history.stopped = StopTraining("early_stopped", tracker.stop_reason())
                if history.stopped is not None:
                    break
            last = history.epochs[-1].epoch if history.epochs else None
            if best_in_memory and history.best_epoch != last:
                model.params[...] = best_params
            history.restored_best = best_in_memory
    finally:
        model.train(was_training)
    return history


def _monitor(monitor: str | Monitor, early_stopping: int, min_delta: float) -> Monitor:
    """The monitor of a training call: the one given, or a new one."""
    if isinstance(monitor, Monitor):
        if early_stopping or min_delta:
            raise ValueError("pass early_stopping and min_delta to the Monitor itself")
        return monitor
    return Monitor(monitor, early_stopping, min_delta)


def _prepared(
    model: MLP,
    x_train: Any,
    y_train: Any,
    x_val: Any,
    y_val: Any,
    epochs: int,
    batch_size: int,
    seed: int | None,
) -> tuple[_DeviceData, int]:
    """A training call's checked counts, its data on the device, and its seed (fresh
    entropy for None)."""
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    data = _DeviceData(model, x_train, y_train, x_val, y_val, int(batch_size))
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    return data, seed


def base_rate(optimizer: Any) -> Any:
    """The learning rate a schedule starts from (a stack's: one per model); a ValueError for
    an optimizer without one."""
    if not hasattr(optimizer, "lr"):
        raise ValueError(
            f"a learning-rate schedule needs an optimizer with lr; {optimizer!r} has none"
        )
    return optimizer.lr


def _start_schedule(
    schedule: Schedule, rate: float, mode: str, epochs: int, steps: int
) -> Schedule:
    """``schedule`` fitted to a run of ``epochs`` epochs of ``steps`` steps from ``rate``,
    reduce-on-plateau in the monitor's ``mode``."""
    schedule.set_mode(mode)
    schedule.start(rate, epochs, steps)
    return schedule


def require_validation(
    data: _DeviceData, monitor: str, patience: int, restore_best: bool, schedule: Any
) -> None:
    """A ValueError when something watches the monitored metric without a validation set:
    early stopping (``patience``), ``restore_best`` or a schedule that monitors it."""
    watchers = ["early stopping"] if patience > 0 else []
    watchers += ["restore_best"] if restore_best else []
    watchers += [f"the {schedule.name} schedule"] if schedule and schedule.monitors else []
    if watchers and not data.has_validation:
        raise ValueError(
            f"{watchers[0]} watches {monitor}, which needs a validation set: pass x_val and y_val"
        )


class _DeviceData:
    """The training (and validation) set on the model's device, checked once, and the
    buffers every step reuses: one batch of inputs and labels, and a copy of the
    parameters from the start of the epoch (restored if the loss diverges)."""

    def __init__(
        self, model: MLP, x_train: Any, y_train: Any, x_val: Any, y_val: Any, batch_size: int
    ) -> None:
        backend = model.backend
        self.x = to_device_inputs(backend, x_train, model.dtype, features=model.input_size)
        self.y = to_device_labels(backend, y_train, model.output_size)
        self.n = self.x.shape[0]
        if self.n == 0 or self.y.shape[0] != self.n:
            raise ValueError(
                f"need as many labels as inputs (and at least one), got {self.n} and "
                f"{self.y.shape[0]}"
            )
        self.has_validation = x_val is not None and y_val is not None and len(y_val) > 0
        if self.has_validation:
            self.x_val = to_device_inputs(backend, x_val, model.dtype, features=model.input_size)
            self.y_val = to_device_labels(backend, y_val, model.output_size)
        self.batch_size = min(batch_size, self.n)
        self.steps_per_epoch = math.ceil(self.n / self.batch_size)
        self.batch_x = backend.empty((self.batch_size, self.x.shape[1]), dtype=model.dtype)
        self.batch_y = backend.empty((self.batch_size,), dtype="int64")
        self.snapshot = backend.empty(model.params.shape, dtype=model.dtype)
        # an epoch's numbers, read by the host in one transfer: the training loss sum and
        # number correct, then the validation set's (a stack's: one column per model)
        self.per_model = () if model.n_models == 1 else (model.n_models,)
        self.totals = backend.zeros((4, *self.per_model), dtype="float64")


def _train_epoch(
    model: MLP,
    optimizer: Any,
    data: _DeviceData,
    seed: int,
    epoch: int,
    bar: Any,
    schedule: Schedule | None = None,
    clip_grad_norm: float | None = None,
) -> None:
    """One pass over the shuffled training set, a step per batch; leaves the training loss
    sum and the number classified correctly in ``data.totals[:2]`` (no host sync)."""
    backend = model.backend
    order = backend.rng(epoch_seed(seed, epoch)).permutation(data.n)
    model.reseed(epoch_seed(seed, epoch, DROPOUT))
    total_loss = backend.zeros(data.per_model, dtype="float64")
    correct = backend.zeros(data.per_model, dtype="int64")
    first_step = (epoch - 1) * data.steps_per_epoch
    per_step = schedule is not None and schedule.changes_every_step(epoch - 1)
    if schedule is not None:
        optimizer.lr = schedule.learning_rate(first_step)
    # A diverging run overflows; that is detected from the loss, not warned about.
    with np.errstate(over="ignore", invalid="ignore"):
        for step, start in enumerate(range(0, data.n, data.batch_size), first_step):
            rows = order[start : start + data.batch_size]
            xb = data.batch_x[: rows.shape[0]]
            yb = data.batch_y[: rows.shape[0]]
            backend.gather_(xb, data.x, rows)
            backend.gather_(yb, data.y, rows)
            loss = model._loss_and_grad(xb, yb, correct=correct, max_grad_norm=clip_grad_norm)
            # total_loss = total_loss + batch mean loss * batch size
            total_loss += loss * rows.shape[0]
            if per_step:
                optimizer.lr = schedule.learning_rate(step)
            optimizer.step(model.params, model.grads, backend)
            if bar is not None:
                bar.update(1)
    data.totals[0] = total_loss
    data.totals[1] = correct


def _diverged_message(epoch: int, train_loss: float) -> str:
    return (
        f"diverged at epoch {epoch}: the training loss became {train_loss}; weights restored "
        "to the end of the previous epoch (try a smaller learning rate)"
    )


def _run_callbacks(
    callbacks: Sequence[Callback] | Iterable[Callback], metrics: EpochMetrics
) -> StopTraining | None:
    """Call each callback with the epoch's metrics; the StopTraining one raised, if any."""
    try:
        for callback in callbacks:
            callback(metrics)
    except StopTraining as stop:
        return stop
    return None
