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
4. evaluate on the validation set, report, and call the callbacks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fastmlp.nn.inputs import to_device_inputs, to_device_labels
from fastmlp.nn.mlp import MLP


@dataclass
class EpochMetrics:
    """What one epoch measured. Losses are mean data losses; accuracies in [0, 1].

    ``train_accuracy`` counts the predictions made during the epoch's forward passes
    (as the weights changed), ``val_*`` are measured after the epoch, ``seconds`` is the
    wall time of the whole epoch including validation.
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    samples_per_second: float

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
    """Per-epoch metrics; the epoch at which the loss stopped being finite, if it did; and
    the :class:`StopTraining` a callback raised, if one did."""

    epochs: list[EpochMetrics] = field(default_factory=list)
    diverged_at: int | None = None
    stopped: StopTraining | None = None

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

    Returns:
        The history. If the loss became NaN or infinite in epoch k, training stops,
        ``history.diverged_at == k`` and the weights are those from before epoch k.
    """
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    data = _DeviceData(model, x_train, y_train, x_val, y_val, int(batch_size))
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    last_epoch = start_epoch + int(epochs)
    history = TrainingHistory()

    was_training = model.training
    model.train()
    try:
        for epoch in range(start_epoch + 1, last_epoch + 1):
            started = time.perf_counter()
            data.snapshot[...] = model.params
            bar = _progress_bar(data.steps_per_epoch, epoch, last_epoch, progress)
            train_loss, train_accuracy = _train_epoch(model, optimizer, data, seed, epoch, bar)
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
                val_loss, val_accuracy = model.evaluate(data.x_val, data.y_val)
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=train_loss,
                train_accuracy=train_accuracy,
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                seconds=time.perf_counter() - started,
                samples_per_second=data.n / train_seconds,
            )
            history.epochs.append(metrics)
            if verbose:
                print(format_epoch(metrics, last_epoch), flush=True)
            history.stopped = _run_callbacks(callbacks, metrics)
            if history.stopped is not None:
                break
    finally:
        model.train(was_training)
    return history


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


def _train_epoch(
    model: MLP, optimizer: Any, data: _DeviceData, seed: int, epoch: int, bar: Any
) -> tuple[float, float]:
    """One pass over the shuffled training set, a step per batch; returns the mean training
    loss and accuracy (the epoch's one host sync)."""
    backend = model.backend
    order = backend.rng(epoch_seed(seed, epoch)).permutation(data.n)
    model.reseed(epoch_seed(seed, epoch, DROPOUT))
    total_loss = backend.zeros((), dtype="float64")
    correct = backend.zeros((), dtype="int64")
    # A diverging run overflows; that is detected from the loss, not warned about.
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, data.n, data.batch_size):
            rows = order[start : start + data.batch_size]
            xb = data.batch_x[: rows.shape[0]]
            yb = data.batch_y[: rows.shape[0]]
            backend.gather_(xb, data.x, rows)
            backend.gather_(yb, data.y, rows)
            loss = model._loss_and_grad(xb, yb, correct=correct)
            # total_loss = total_loss + batch mean loss * batch size
            total_loss += loss * rows.shape[0]
            optimizer.step(model.params, model.grads, backend)
            if bar is not None:
                bar.update(1)
    return float(total_loss) / data.n, int(correct) / data.n


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
