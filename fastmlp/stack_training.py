"""Training a stack of K models (``MLP(n_models=K)``) together, each with its own fate.

The K models see the same batches in the same order (one shuffling seed: the first layer
is one matrix product for all of them) and every step is the single-model step of
``fastmlp.training`` over the whole stack. What differs is the bookkeeping after each
epoch's one host sync, done model by model:

* a model whose training loss became NaN or infinite **diverged**: its weights go back to
  the start of that epoch and it is frozen, as a single model's run stops there;
* a model that early stopping (or a callback raising :class:`StopTraining`, such as a
  sweep's pruner) ends is **stopped**, with its best epoch's weights when
  ``restore_best`` is on;
* the others go on. A finished model keeps being computed with the stack (the models
  never interact: its columns meet no other model's), and its weights are put back to
  where it finished after every epoch, so what it computes is thrown away; training ends
  when no model is left.

Each model's metrics, best epoch and stop are its own :class:`TrainingHistory`, exactly
the one a single model of its hyperparameters trained alone with the same seed records
(to float rounding). Schedules run once per model (each from its own base rate; the same
kind and settings for all), so reduce-on-plateau watches each model's own metric. Every
epoch's dropout masks come from the run seed, as a single model's do, so models of the
same dropout rate drop the same units.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastmlp.backends.denormals import denormals_are_zero
from fastmlp.monitor import Monitor
from fastmlp.nn.mlp import MLP, check_max_grad_norm
from fastmlp.schedules import Schedule, create
from fastmlp.training import (
    EpochMetrics,
    StopTraining,
    TrainingHistory,
    _diverged_message,
    _prepared,
    _progress_bar,
    _start_schedule,
    _train_epoch,
    base_rate,
    require_validation,
)

# A stack's callback: called with the model's index and its epoch's metrics, for each model
# still training; raising StopTraining stops that model alone.
StackCallback = Callable[[int, EpochMetrics], Any]


@dataclass
class StackHistory:
    """The :class:`TrainingHistory` of each model of a stack (``history[k]``)."""

    models: list[TrainingHistory] = field(default_factory=list)

    def __getitem__(self, k: int) -> TrainingHistory:
        return self.models[k]

    def __len__(self) -> int:
        return len(self.models)

    def __iter__(self) -> Any:
        return iter(self.models)


class _StackSchedule:
    """K schedules of one kind, one per model: each step's rates as a tuple (what a
    stacked optimizer's ``lr`` takes)."""

    def __init__(self, schedules: list[Schedule]) -> None:
        self.schedules = schedules
        self.name = schedules[0].name
        self.monitors = schedules[0].monitors

    def changes_every_step(self, epoch: int) -> bool:
        return any(schedule.changes_every_step(epoch) for schedule in self.schedules)

    def learning_rate(self, step: int) -> tuple[float, ...]:
        return tuple(schedule.learning_rate(step) for schedule in self.schedules)


def train_stack(
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
    callbacks: Sequence[StackCallback] | Iterable[StackCallback] = (),
    start_epoch: int = 0,
    schedule: Schedule | str | Sequence[Schedule] | None = None,
    monitor: str | Sequence[Monitor] = "val_accuracy",
    early_stopping: int = 0,
    min_delta: float = 0.0,
    restore_best: bool | None = None,
    clip_grad_norm: float | None = None,
) -> StackHistory:
    """Train the K models of ``model`` (a stack) together; arguments as
    :func:`fastmlp.train`, except that ``callbacks`` are called as ``callback(k, metrics)``
    for each model k still training (a StopTraining stops model k), ``monitor`` is a
    metric name (each model gets a :class:`Monitor` of its own) or K Monitors (updated in
    place, as a single model's), and ``schedule`` is one kind for all models, started from
    each model's own rate, one with a sequence of K values for some hyperparameter
    (``schedules.create("step", gamma=[0.1, 0.5, ...])``: model k's the k-th), or K
    schedules (not started yet), model k's ``schedule[k]``. ``optimizer`` takes the stack's
    parameter groups (``model.param_groups()``) when its hyperparameters differ per model;
    schedules that differ between the models, or watch a metric (reduce-on-plateau), need
    one ``lr`` per model, since the models' rates part. Returns each model's history
    (see the module docstring)."""
    k_models = model.n_models
    data, seed = _prepared(model, x_train, y_train, x_val, y_val, epochs, batch_size, seed)
    last_epoch = start_epoch + int(epochs)
    trackers = _monitors(monitor, k_models, early_stopping, min_delta)
    if restore_best is None:
        restore_best = early_stopping > 0
    stacked_schedule = _stacked_schedule(
        schedule, optimizer, k_models, trackers[0].mode, last_epoch, data.steps_per_epoch
    )
    require_validation(data, trackers[0].monitor, early_stopping, restore_best, stacked_schedule)
    clip_grad_norm = check_max_grad_norm(clip_grad_norm)
    histories = [TrainingHistory() for _ in range(k_models)]
    backend = model.backend
    # each model's weights where it finished (diverged or stopped), and its best epoch's
    finished = backend.empty(model.params.shape, dtype=model.dtype)
    best_params = backend.empty(model.params.shape, dtype=model.dtype) if restore_best else None
    best_in_memory = [False] * k_models
    active = list(range(k_models))
    done: list[int] = []

    was_training = model.training
    model.train()
    try:
        with denormals_are_zero():
            for epoch in range(start_epoch + 1, last_epoch + 1):
                if not active:
                    break
                started = time.perf_counter()
                data.snapshot[...] = model.params
                bar = _progress_bar(data.steps_per_epoch, epoch, last_epoch, progress)
                _train_epoch(
                    model, optimizer, data, seed, epoch, bar, stacked_schedule, clip_grad_norm
                )
                if data.has_validation:
                    model._evaluation_sums_(data.x_val, data.y_val, data.totals[2:])
                # the epoch's one host sync, every model's numbers together
                loss_sum, correct, val_loss_sum, val_correct = backend.to_numpy(data.totals)
                train_seconds = time.perf_counter() - started
                if bar is not None:
                    bar.close()
                _copy_models(model, model.params, finished, done)  # the finished stay put
                lines = []
                for k in list(active):
                    history = histories[k]
                    train_loss = float(loss_sum[k]) / data.n
                    if not math.isfinite(train_loss):
                        _copy_models(model, model.params, data.snapshot, [k])
                        history.diverged_at = epoch
                        lines.append(f"model {k}: {_diverged_message(epoch, train_loss)}")
                        _finish(model, k, active, done, finished)
                        continue
                    val_loss = val_accuracy = None
                    if data.has_validation:
                        n_val = data.x_val.shape[0]
                        val_loss = float(val_loss_sum[k]) / n_val
                        val_accuracy = int(val_correct[k]) / n_val
                    rates = getattr(optimizer, "lr", None)
                    metrics = EpochMetrics(
                        epoch=epoch,
                        train_loss=train_loss,
                        train_accuracy=int(correct[k]) / data.n,
                        val_loss=val_loss,
                        val_accuracy=val_accuracy,
                        seconds=time.perf_counter() - started,
                        samples_per_second=data.n / train_seconds,
                        learning_rate=rates[k] if isinstance(rates, (list, tuple)) else rates,
                    )
                    tracker = trackers[k]
                    if tracker.update(epoch, metrics.to_dict()):
                        history.best_epoch, history.best_value = tracker.best_epoch, tracker.best
                        if best_params is not None:
                            _copy_models(model, best_params, model.params, [k])
                            best_in_memory[k] = True
                    if isinstance(stacked_schedule, _StackSchedule):
                        value = getattr(metrics, tracker.monitor)
                        stacked_schedule.schedules[k].epoch_ended(epoch - 1, value)
                    history.epochs.append(metrics)
                    history.stopped = _run_callbacks(callbacks, k, metrics)
                    if history.stopped is None and tracker.should_stop:
                        history.stopped = StopTraining("early_stopped", tracker.stop_reason())
                    if history.stopped is not None:
                        _finish(model, k, active, done, finished)
                if verbose:
                    print(_stack_line(histories, epoch, last_epoch, len(active)), flush=True)
                    for line in lines:
                        print(line, flush=True)
            for k, history in enumerate(histories):
                last = history.epochs[-1].epoch if history.epochs else None
                if best_in_memory[k] and history.best_epoch != last:
                    _copy_models(model, model.params, best_params, [k])
                history.restored_best = best_in_memory[k]
    finally:
        model.train(was_training)
    return StackHistory(histories)


def _monitors(
    monitor: str | Sequence[Monitor], k_models: int, patience: int, min_delta: float
) -> list[Monitor]:
    """One Monitor per model: new ones of the metric ``monitor``, or the K given."""
    if isinstance(monitor, str):
        return [Monitor(monitor, patience, min_delta) for _ in range(k_models)]
    if isinstance(monitor, Monitor):
        raise ValueError("a stack's models each get a Monitor: pass the metric's name or K")
    monitors = list(monitor)
    if len(monitors) != k_models or not all(isinstance(one, Monitor) for one in monitors):
        raise ValueError(f"monitor must be a metric name or {k_models} Monitors, one per model")
    if len({one.monitor for one in monitors}) > 1:
        raise ValueError("the Monitors of a stack's models must watch one metric")
    return monitors


def _stacked_schedule(
    schedule: Schedule | str | Sequence[Schedule] | None,
    optimizer: Any,
    k_models: int,
    mode: str,
    last_epoch: int,
    steps: int,
) -> _StackSchedule | Schedule | None:
    """The started schedule(s) of a stack: one per model when the optimizer has one rate per
    model, else one schedule for all (the same rates for every model). ``schedule``: one
    for all models (a fresh copy each), one with per-model values (``Schedule.per_model``)
    or K schedules."""
    if schedule is None:
        return None
    per_model = schedule.per_model() if isinstance(schedule, Schedule) else None
    if per_model is not None:
        given = per_model
    elif isinstance(schedule, (str, Schedule)):  # a fresh copy for each model
        given = [create(copy.deepcopy(schedule)) for _ in range(k_models)]
    else:
        given = [create(one) for one in schedule]
    if len(given) != k_models:
        raise ValueError(
            f"schedule must be one kind, one with {k_models} values per hyperparameter, or "
            f"{k_models} schedules, one per model (got {len(given)})"
        )
    rates = base_rate(optimizer)
    if not isinstance(rates, (list, tuple)):
        if given[0].monitors and k_models > 1:
            raise ValueError(
                f"the {given[0].name} schedule changes each model's rate on its own metric: "
                "give the optimizer one lr per model (lr=[...])"
            )
        if any(one.state_dict() != given[0].state_dict() for one in given[1:]):
            raise ValueError(
                "the models' schedules differ, so each model needs a rate of its own: give "
                "the optimizer one lr per model (lr=[...])"
            )
        return _start_schedule(given[0], rates, mode, last_epoch, steps)
    return _StackSchedule([_start_schedule(one, rate, mode, last_epoch, steps)
                           for one, rate in zip(given, rates)])  # fmt: skip


def _finish(model: MLP, k: int, active: list[int], done: list[int], finished: Any) -> None:
    """Model ``k`` trains no more: its weights now are where it stays."""
    active.remove(k)
    done.append(k)
    _copy_models(model, finished, model.params, [k])


def _copy_models(model: MLP, target: Any, source: Any, models: Sequence[int]) -> None:
    """Copy ``models``' entries of the flat parameter buffer ``source`` into ``target``."""
    if not models:
        return
    pairs = zip(model.parameter_views(target), model.parameter_views(source))
    for target_view, source_view in pairs:
        for k in models:
            target_view[k] = source_view[k]


def _run_callbacks(
    callbacks: Sequence[StackCallback] | Iterable[StackCallback], k: int, metrics: EpochMetrics
) -> StopTraining | None:
    try:
        for callback in callbacks:
            callback(k, metrics)
    except StopTraining as stop:
        return stop
    return None


def _stack_line(histories: list[TrainingHistory], epoch: int, epochs: int, active: int) -> str:
    """One line per epoch for the whole stack: the range of the models' numbers."""
    current = [h.epochs[-1] for h in histories if h.epochs and h.epochs[-1].epoch == epoch]
    line = f"epoch {epoch}/{epochs}  {active}/{len(histories)} models training"
    if current:
        losses = [m.train_loss for m in current]
        line += f"  loss {min(losses):.4f}-{max(losses):.4f}"
        accuracies = [m.val_accuracy for m in current if m.val_accuracy is not None]
        if accuracies:
            line += f"  val_acc {min(accuracies):.4f}-{max(accuracies):.4f}"
        line += f"  {current[0].seconds:.1f}s  {current[0].samples_per_second:,.0f} samples/s"
    return line
