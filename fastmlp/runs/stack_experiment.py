"""K runs trained together as one stack (``MLP(n_models=K)``), each a complete run of its own.

``run_stacked_experiments`` is what a sweep runs for trials that share every setting but
those a stack keeps per model (:data:`PER_MODEL_SETTINGS`: the optimizer's and the
schedule's hyperparameters, weight decay, dropout, and the run's name and tags). Each of the K runs
gets what ``run_experiment`` gives one run: its own run directory (``config.json``,
``metrics.jsonl``, ``checkpoint.npz`` and ``best.npz`` of a single model, figures,
``summary.json``), its own W&B run and its own per-epoch callbacks. Only the training is
shared: :func:`fastmlp.stack_training.train_stack` on the K models, after whose every
epoch each model still training is copied out (``MLP.select``, ``Optimizer.select``)
and saved exactly as a single run saves its epoch. So every run directory is an
ordinary one: ``fastmlp evaluate``, ``fastmlp runs`` and ``fastmlp train --resume`` treat
it as a run trained alone (which, with the same seed and settings, computes the same
numbers to float rounding).

A model that diverges, stops early or is stopped by its callback (a sweep's pruner) ends
its run there; the others go on. Ctrl-C (or SIGTERM) stops the stack and every run not yet
concluded is recorded as interrupted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from os import PathLike
from typing import Any

import numpy as np

from fastmlp import optim, schedules
from fastmlp.backends import Backend
from fastmlp.nn.mlp import MLP
from fastmlp.runs import WandbRun, resolve_wandb_mode
from fastmlp.runs.config import ConfigError, TrainConfig
from fastmlp.runs.environment import blas_thread_limit, describe_environment
from fastmlp.runs.experiment import (
    ExperimentResult,
    _close_failed,
    _conclude,
    _device_and_data,
    _Ending,
    _ending_of,
    _Run,
    _start,
    _start_wandb,
    _tracker,
    _write_config,
    network_arguments,
)
from fastmlp.stack_training import train_stack
from fastmlp.training import EpochMetrics

# Settings that may differ between the runs of one stack: each model of a stack has its own
# optimizer hyperparameters (every registered one), schedule hyperparameters (of one kind of
# schedule: lr_schedule is shared), weight decay and dropout; the name and tags are the run's.
PER_MODEL_SETTINGS = frozenset(
    {parameter.setting_name for cls in optim.OPTIMIZERS.entries.values()
     for parameter in cls.hyperparameters}
    | {parameter.setting_name for cls in schedules.SCHEDULES.entries.values()
       for parameter in cls.all_hyperparameters()}
    | {"weight_decay", "dropout", "name", "tags", "wandb_project", "wandb_entity"}
)  # fmt: skip


def _shared(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a checked configuration that the runs of one stack must share."""
    return {key: value for key, value in config.items() if key not in PER_MODEL_SETTINGS}


def stack_key(settings: Mapping[str, Any]) -> str:
    """What runs of one stack must share: the checked configuration of ``settings`` without
    its :data:`PER_MODEL_SETTINGS`, as JSON text (equal texts: the runs can be stacked)."""
    shared = _shared(TrainConfig.from_settings(settings).to_dict())
    return json.dumps(shared, sort_keys=True, default=str)


def _checked_configs(settings: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The runs' checked configurations; a ConfigError unless they can share one stack."""
    configs = [TrainConfig.from_settings(one).to_dict() for one in settings]
    first = configs[0]
    for config in configs[1:]:
        differ = sorted(key for key, value in _shared(first).items() if config[key] != value)
        if differ:
            raise ConfigError(
                f"runs of one stack must share every setting but the optimizer's and the "
                f"schedule's hyperparameters, weight_decay and dropout; these differ: "
                f"{', '.join(differ)}"
            )
    if first["seed"] is None:  # one seed for all: the stack shares its shuffling order
        seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        for config in configs:
            config["seed"] = seed
    return configs


def build_stack(
    configs: Sequence[Mapping[str, Any]], backend: Backend, dataset: Any
) -> tuple[MLP, optim.Optimizer]:
    """The stack of the K networks that ``configs`` (stackable) describe, model k initialised
    as ``build_model_and_optimizer(configs[k])``'s, and one optimizer for all of them with
    each model's hyperparameters (the learning rates always per model, so that each
    model's schedule sets its own)."""
    built = [TrainConfig.from_settings(config) for config in configs]
    first = built[0]
    decoupled = optim.optimizer_class(first.optimizer).decoupled_weight_decay
    model = MLP(
        **network_arguments(first, dataset),
        weight_decay=[0.0 if decoupled else config.weight_decay for config in built],
        dropout=[config.dropout for config in built],
        device=backend,
        seed=[config.seed for config in built],
        n_models=len(built),
    )
    per_model = [config.optimizer_hyperparameters() for config in built]
    values = {}
    for key, value in per_model[0].items():
        column = [one[key] for one in per_model]
        values[key] = column if key == "lr" or len(set(column)) > 1 else value
    optimizer = optim.create(first.optimizer, param_groups=model.param_groups(), **values)
    return model, optimizer


def run_stacked_experiments(
    settings: Sequence[Mapping[str, Any]],
    *,
    out: str | PathLike[str] = "runs",
    names: Sequence[str | None] | None = None,
    data_dir: str | PathLike[str] | None = None,
    wandb_mode: str | None = None,
    progress: bool = False,
    verbose: bool = False,
    group: str | None = None,
    callbacks: Sequence[Sequence[Callable[[EpochMetrics], Any]]] | None = None,
    figures: bool = True,
) -> list[ExperimentResult]:
    """Train and evaluate K configurations as one stack, each tracked under
    ``out/<its run name>/`` as ``run_experiment`` tracks one (see the module docstring).

    Args:
        settings: K configurations keyed by long flag names; they may differ only in
            :data:`PER_MODEL_SETTINGS` (a ConfigError says which others differ).
        names: each run's name (None: from its settings).
        callbacks: each run's extra per-epoch callbacks (a StopTraining stops that run).
        out, data_dir, wandb_mode, progress, verbose, group, figures: as ``run_experiment``.

    Returns:
        The K runs' results, in the order of ``settings``.

    Raises:
        As ``run_experiment``; an unexpected error is re-raised after every run's summary
        records it as failed.
    """
    k_models = len(settings)
    if k_models < 1:
        raise ValueError("a stack needs at least one run's settings")
    names = list(names) if names is not None else [None] * k_models
    callbacks = list(callbacks) if callbacks is not None else [()] * k_models
    if len(names) != k_models or len(callbacks) != k_models:
        raise ValueError(f"give one name and one list of callbacks per run ({k_models})")
    mode = resolve_wandb_mode(wandb_mode)
    configs = _checked_configs(settings)
    first = configs[0]
    backend, dataset = _device_and_data(first, data_dir, n_models=k_models)
    model, optimizer = build_stack(configs, backend, dataset)

    with ExitStack() as stack:
        stack.enter_context(blas_thread_limit(first["blas_threads"]))
        runs = [_start(config, backend, dataset, out, name, None, stack)
                for config, name in zip(configs, names)]  # fmt: skip
        environment = describe_environment(backend, first["dtype"], first["seed"])
        wandb_runs = []
        for run in runs:
            _write_config(run, backend, {}, environment)
            wandb_runs.append(_start_wandb(run, mode, group, resumed=False))
        return _train_and_finish_stack(
            model, optimizer, runs, dataset, wandb_runs, environment, progress, verbose,
            callbacks, figures,
        )  # fmt: skip


def _train_and_finish_stack(
    model: MLP,
    optimizer: optim.Optimizer,
    runs: list[_Run],
    dataset: Any,
    wandb_runs: list[WandbRun | None],
    environment: dict[str, Any],
    progress: bool,
    verbose: bool,
    callbacks: Sequence[Sequence[Callable[[EpochMetrics], Any]]],
    figures: bool,
) -> list[ExperimentResult]:
    """Train the stack of ``runs``' models, then conclude each run as a single run is."""
    warnings: list[list[str]] = [[] for _ in runs]
    first = runs[0].config
    started = time.perf_counter()
    trackers = [_tracker(run, dataset, wandb_run, False, run_warnings)
                for run, wandb_run, run_warnings in zip(runs, wandb_runs, warnings)]  # fmt: skip

    def copy_out(k: int) -> None:
        """Run k's model and optimizer (built by ``_start`` as the run's own): model k of
        the stack where it is now."""
        single = runs[k].model
        model.copy_model_entries(model.params, k, single, single.params)

        def model_entries(buffer: Any) -> Any:
            out = single.backend.empty(single.params.shape, dtype=buffer.dtype)
            return model.copy_model_entries(buffer, k, single, out)

        runs[k].optimizer = optimizer.select(k, model_entries, runs[k].optimizer.param_groups)

    def track(k: int, metrics: EpochMetrics) -> None:
        copy_out(k)
        trackers[k](metrics)
        for callback in callbacks[k]:
            callback(metrics)

    try:
        histories = train_stack(
            model,
            optimizer,
            dataset.x_train,
            dataset.y_train,
            epochs=first["epochs"],
            batch_size=first["batch_size"],
            x_val=dataset.x_val,
            y_val=dataset.y_val,
            seed=first["seed"],
            progress=progress,
            verbose=verbose,
            callbacks=[track],
            schedule=[run.schedule for run in runs],
            monitor=[run.monitor for run in runs],
            early_stopping=first["early_stopping"],
            restore_best=False,  # from each run's best.npz, as a single run's
            clip_grad_norm=first["clip_grad_norm"],
        )
        endings = [_ending_of(history) for history in histories]
    except KeyboardInterrupt as error:
        endings = [_Ending("interrupted", interrupt=error) for _ in runs]
    except Exception as error:
        for run, wandb_run, run_warnings in zip(runs, wandb_runs, warnings):
            _close_failed(run, error, time.perf_counter() - started, environment, wandb_run,
                          run_warnings)  # fmt: skip
        raise
    seconds = time.perf_counter() - started
    names = [run.run_dir.name for run in runs]
    results: list[ExperimentResult] = []
    for k, (run, wandb_run, ending) in enumerate(zip(runs, wandb_runs, endings)):
        interrupt = next((result.interrupt for result in results if result.interrupt), None)
        if interrupt is not None and ending.interrupt is None:  # Ctrl-C while concluding
            ending = _Ending("interrupted", interrupt=interrupt)
        ending.summary["stack"] = {"models": len(runs), "index": k, "runs": names}
        if ending.interrupt is None:
            copy_out(k)
        try:
            results.append(_conclude(run, dataset, wandb_run, environment, figures,
                                     warnings[k], seconds, ending))  # fmt: skip
        except Exception as error:
            for later in range(k + 1, len(runs)):
                _close_failed(runs[later], error, seconds, environment, wandb_runs[later],
                              warnings[later])  # fmt: skip
            raise
    return results
