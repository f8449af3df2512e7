"""The local sweep engine: Optuna, with the study in a journal file (or a database).

Samplers: grid -> GridSampler, random -> RandomSampler, bayes -> TPESampler;
``early_terminate: hyperband`` -> HyperbandPruner on the per-epoch metric (``min_iter`` and
``max_iter`` in epochs, ``eta`` the reduction factor).

``--count N`` is the sweep's total number of trials, whatever the number of workers,
machines or sessions: every worker counts the trials that are finished, failed or running
(interrupted ones excepted) under a lock before starting another, so a resumed sweep runs
only what is left and a grid sweep never repeats a finished grid point. The count defaults
to ``run_cap`` from the config, else to the grid size for a grid sweep.

Resuming: run the same command again. Trials of workers that were killed (still RUNNING,
but their process on this machine is gone) are marked failed and their configurations are
queued again; so are trials stopped by Ctrl-C.
"""

from __future__ import annotations

import itertools
import random
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path
from typing import Any

from fastmlp.interrupts import interrupts_deferred
from fastmlp.runs.stack_experiment import PER_MODEL_SETTINGS
from fastmlp.sweep.config import SweepConfig
from fastmlp.sweep.placement import plan_workers
from fastmlp.sweep.stacked_trials import run_trials
from fastmlp.sweep.study import (
    Progress,
    SweepDirectory,
    SweepError,
    ask_lock_path,
    create_or_load_study,
    fail_stale_trials,
    load_study,
    machines_lock,
    open_storage,
    progress,
    requeue,
    require_optuna,
    set_trial_attributes,
    storage_label,
    this_worker,
)
from fastmlp.sweep.trial import TrialOptions, TrialOutcome, interrupted
from fastmlp.sweep.workers import blas_threads, run_in_processes

# Seconds after which a lock left by a killed worker is broken (holding it takes milliseconds).
LOCK_GRACE_SECONDS = 10


def _grid_sampler(search_space: dict[str, list[Any]]) -> Any:
    from optuna.samplers import GridSampler

    class SweepGridSampler(GridSampler):
        """GridSampler without its end-of-grid ``study.stop()``, which only works inside
        ``study.optimize``: the workers here ask and tell, and stop by counting trials.
        It can be told which grid points the next trials take (``preferred``): the
        companions of a stack."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.preferred: list[int] = []

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

        def before_trial(self, study: Any, trial: Any) -> None:
            storage = study._storage
            if self.preferred and "fixed_params" not in trial.system_attrs:
                storage.set_trial_system_attr(trial._trial_id, "search_space", self._search_space)
                storage.set_trial_system_attr(trial._trial_id, "grid_id", self.preferred.pop(0))
                return
            super().before_trial(study, trial)
            # GridSampler gives trial n grid point n while n is below the grid size; a
            # stack's companion may hold that point already: then take a free one
            assigned = storage.get_trial_system_attrs(trial._trial_id).get("grid_id")
            taken = {
                other.system_attrs.get("grid_id")
                for other in storage.get_all_trials(study._study_id, deepcopy=False)
                if other._trial_id != trial._trial_id
            }
            if assigned is not None and assigned in taken:
                free = sorted(set(self._get_unvisited_grid_ids(study)) - taken)
                if free:
                    storage.set_trial_system_attr(trial._trial_id, "grid_id", free[0])

        def points_sharing(self, study: Any, trial: Any, values: dict[str, Any]) -> list[int]:
            """The grid points not yet taken whose parameters ``values`` are these, but
            ``trial``'s own."""
            own = study._storage.get_trial_system_attrs(trial._trial_id).get("grid_id")
            columns = {self._param_names.index(name): value for name, value in values.items()}
            return [
                point
                for point in sorted(self._get_unvisited_grid_ids(study))
                if point != own
                and all(self._all_grids[point][column] == value
                        for column, value in columns.items())
            ]  # fmt: skip

    return SweepGridSampler(search_space, seed=0)


def make_sampler(config: SweepConfig) -> Any:
    """The Optuna sampler of the sweep's method."""
    from optuna.samplers import RandomSampler, TPESampler

    if config.method == "grid":
        return _grid_sampler(config.grid())
    if config.method == "random":
        return RandomSampler()
    return TPESampler(constant_liar=True)  # keeps parallel workers from sampling alike


def make_pruner(config: SweepConfig) -> Any:
    """HyperbandPruner for ``early_terminate: hyperband``, else no pruning."""
    from optuna.pruners import HyperbandPruner, NopPruner

    if config.hyperband is None:
        return NopPruner()
    return HyperbandPruner(
        min_resource=config.hyperband.min_iter,
        max_resource=config.hyperband.max_iter or config.max_epochs(),
        reduction_factor=config.hyperband.eta,
    )


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs (picklable)."""

    config: SweepConfig
    storage: str | None
    count: int
    options: TrialOptions
    stack: int = 1


@dataclass(frozen=True)
class SweepSummary:
    """Where a sweep stands after a session: counts, the best trial, and the directory."""

    directory: SweepDirectory
    count: int
    progress: Progress
    best_number: int | None = None
    best_value: float | None = None
    best_run_dir: str | None = None


def check_device(device: str | None, config: SweepConfig) -> None:
    """Raise before any trial starts if the sweep's device does not exist or does not work
    here (every trial would fail the same way)."""
    from fastmlp.backends import get_backend
    from fastmlp.runs.config import canonical_device

    wanted = device if device is not None else config.constants.get("device")
    if wanted is not None:
        get_backend(canonical_device(wanted))


def resolve_count(config: SweepConfig, count: int | None) -> int:
    """The sweep's total number of trials: --count, else run_cap, else the grid size."""
    if count is None:
        count = config.run_cap
    if config.method == "grid":
        size = config.grid_size()
        return size if count is None else min(count, size)
    if count is None:
        raise SweepError(
            f"a {config.method} sweep needs --count N (or run_cap in the config): "
            "how many trials to run"
        )
    return count


def _record(study: Any, trial: Any, outcome: TrialOutcome) -> None:
    """Store how a trial ended (Ctrl-C waits until it is stored)."""
    from optuna.trial import TrialState

    with interrupts_deferred():
        set_trial_attributes(study, trial, outcome.attributes)
        study.tell(trial, outcome.value, state=TrialState[outcome.state])
        if outcome.interrupted:
            requeue(study, trial)


def _ask_lock(directory: SweepDirectory, storage: str | None) -> Any:
    """The lock that one machine's workers take to count the trials and start one."""
    from optuna.storages.journal import JournalFileOpenLock

    return JournalFileOpenLock(ask_lock_path(directory, storage), grace_period=LOCK_GRACE_SECONDS)


@contextmanager
def _asking(lock: Any, storage: str | None) -> Iterator[None]:
    """Hold the locks that serialise "count the trials, then start one": this machine's
    ask lock, then the database's advisory lock; Ctrl-C waits until both are released."""
    with interrupts_deferred():
        lock.acquire()
        try:
            with machines_lock(storage):
                yield
        finally:
            lock.release()


def _fail_stale_trials_locked(study: Any, directory: SweepDirectory, storage: str | None) -> list:
    """:func:`fail_stale_trials` under the locks that serialise asking for trials."""
    with _asking(_ask_lock(directory, storage), storage):
        return fail_stale_trials(study, asking_locked=True)


def _next_trials(study: Any, spec: WorkerSpec, lock: Any) -> list[Any]:
    """Start the next trials (parameters sampled): one, or with ``spec.stack`` K up to K
    that can share a stack; none when the sweep has all its trials.

    A stack's first trial is sampled as any trial; its companions are sampled with the
    first one's shape-determining parameters (every swept setting that a stack cannot
    keep per model) fixed to its values: the grid points not yet taken that share them;
    when the per-model parameters take listed values, the points of their product not yet
    tried (``_untried_points``: no companion repeats a trial); else the sampler's
    proposals for them. Each trial's sampled values
    still follow the sweep's distributions; the sweep tries fewer architectures, each
    with more of the per-model settings.

    Ctrl-C waits until the lock is released and the journal written; trials started just
    before it are recorded as interrupted.
    """
    trials: list[Any] = []
    try:
        with _asking(lock, spec.storage):
            fail_stale_trials(study, asking_locked=True)
            wanted = min(spec.stack, spec.count - progress(study).counted)
            if wanted > 0:
                distributions = spec.config.distributions()
                trials.append(study.ask(distributions))
                trials += _ask_companions(study, spec.config, trials[0], wanted - 1, distributions)
                for trial in trials:
                    for key, value in this_worker().items():
                        trial.set_user_attr(key, value)
    except KeyboardInterrupt:
        for trial in trials:
            _record(study, trial, interrupted())
        raise
    return trials


def _ask_companions(
    study: Any, config: SweepConfig, first: Any, count: int, distributions: dict[str, Any]
) -> list[Any]:
    """Up to ``count`` more trials that share ``first``'s shape-determining parameters."""
    from optuna.samplers import PartialFixedSampler

    if count <= 0:
        return []
    shared = {name: value for name, value in first.params.items()
              if name not in PER_MODEL_SETTINGS}  # fmt: skip
    sampler = study.sampler
    if config.method == "grid":
        points = sampler.points_sharing(study, first, shared)[:count]
        sampler.preferred = list(points)
        try:
            return [study.ask(distributions) for _ in points]
        finally:
            sampler.preferred = []
    points = _untried_points(study, first, shared, distributions)
    try:
        if points is not None:  # each companion one of them, none a repeat
            companions = []
            for point in points[:count]:
                study.sampler = PartialFixedSampler({**shared, **point}, sampler)
                companions.append(study.ask(distributions))
            return companions
        study.sampler = PartialFixedSampler(shared, sampler)
        return [study.ask(distributions) for _ in range(count)]
    finally:
        study.sampler = sampler


def listed_choices(distributions: dict[str, Any], names: list[str]) -> list[Any] | None:
    """The values listed for each of ``names`` (a stack's per-model parameters), or None
    when there are none or one of them is not a list of values (a continuous
    distribution)."""
    from optuna.distributions import CategoricalDistribution

    if not names or not all(
        isinstance(distributions[name], CategoricalDistribution) for name in names
    ):
        return None
    return [distributions[name].choices for name in names]


def _untried_points(
    study: Any, first: Any, shared: dict[str, Any], distributions: dict[str, Any]
) -> list[dict[str, Any]] | None:
    """When every swept per-model parameter takes listed values (the classic sweep's
    learning rates and weight decays): the points of their product that no trial with the
    ``shared`` values has had or is queued to have (an interrupted one excepted: its retry
    is queued), in an order drawn from ``first``'s number. None when one is continuous,
    where the sampler's proposals do not repeat each other."""
    from optuna.trial import TrialState

    names = [name for name in distributions if name not in shared]
    choices = listed_choices(distributions, names)
    if choices is None:
        return None
    taken = set()
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted"):
            continue
        params = trial.params or trial.system_attrs.get("fixed_params", {})
        if all(params.get(name) == value for name, value in shared.items()):
            taken.add(tuple(params.get(name) for name in names))
    points = [point for point in itertools.product(*choices) if point not in taken]
    random.Random(first.number).shuffle(points)
    return [dict(zip(names, point)) for point in points]


# The trial attributes that describe a run's result (copied to a repeat of that run).
_RUN_RESULTS = (
    "run_dir",
    "epochs",
    "val_accuracy",
    "best_val_accuracy",
    "test_accuracy",
    "blas_threads",
)


def repeat_of(study: Any, trial: Any) -> TrialOutcome | None:
    """The result of an earlier completed trial with exactly this trial's parameters, if any.

    Every run is seeded, so such a trial would repeat that run to the last bit; samplers
    (TPE on a discrete space especially) propose repeats often. The earlier result is
    recorded again instead of training again.
    """
    from optuna.trial import TrialState

    for earlier in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if earlier.number != trial.number and earlier.params == trial.params:
            attributes = {
                key: value for key, value in earlier.user_attrs.items() if key in _RUN_RESULTS
            }
            attributes["repeat_of"] = earlier.number
            return TrialOutcome("COMPLETE", value=earlier.value, attributes=attributes)
    return None


def _describe(
    trial: Any, outcome: TrialOutcome, metric: str, seconds: float, together: int = 1
) -> str:
    if "repeat_of" in outcome.attributes:
        result = f"{metric} {outcome.value:.4f}, repeats trial {outcome.attributes['repeat_of']}"
    elif outcome.state == "COMPLETE":
        result = f"{metric} {outcome.value:.4f}"
    elif outcome.state == "PRUNED":
        result = f"pruned after epoch {outcome.attributes.get('epochs')}"
    else:
        result = f"failed: {outcome.failure}"
    run = Path(outcome.attributes.get("run_dir", "-")).name
    stack = outcome.attributes.get("stack_size")
    took = f"{seconds:.1f} s" if together == 1 else f"{seconds:.1f} s for {together} trials"
    if stack:
        took += f", {stack} in its stack"
    continued = outcome.attributes.get("continued_from_epoch")
    if continued is not None:
        took += f", continuing trial {trial.user_attrs.get('retry_of')} after epoch {continued}"
    return f"trial {trial.number} {run}: {result} ({took})"


def run_worker(spec: WorkerSpec) -> None:
    """Run trials of the sweep until it has ``spec.count`` of them.

    Raises:
        KeyboardInterrupt: after Ctrl-C, once the running trial is recorded as interrupted.
        SweepError: a fatal trial error (missing data or device), after recording it.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    directory = SweepDirectory(spec.options.sweep_dir)
    study = load_study(
        spec.config.name,
        open_storage(directory, spec.storage),
        sampler=make_sampler(spec.config),
        pruner=make_pruner(spec.config),
    )
    lock = _ask_lock(directory, spec.storage)
    while trials := _next_trials(study, spec, lock):
        started = time.perf_counter()
        outcomes: dict[int, TrialOutcome] = {}
        try:
            for trial in trials:
                repeat = repeat_of(study, trial)
                if repeat is not None:
                    outcomes[trial.number] = repeat
            rest = [trial for trial in trials if trial.number not in outcomes]
            outcomes.update(zip((trial.number for trial in rest),
                                run_trials(rest, spec.config, spec.options)))  # fmt: skip
        except KeyboardInterrupt as interrupt:  # just after the runs ended, before their outcome
            for trial in trials:
                outcomes.setdefault(trial.number, interrupted(interrupt=interrupt))
        seconds = time.perf_counter() - started
        for trial in trials:
            _record(study, trial, outcomes[trial.number])
        for trial in trials:
            print(_describe(trial, outcomes[trial.number], spec.config.metric, seconds,
                            len(trials)), flush=True)  # fmt: skip
        for trial in trials:
            outcome = outcomes[trial.number]
            if outcome.interrupted:
                raise outcome.interrupt or KeyboardInterrupt()
            if outcome.fatal:
                raise SweepError(f"trial {trial.number} failed: {outcome.failure}")


def summarize(directory: SweepDirectory, study: Any, count: int) -> SweepSummary:
    """Counts and the best trial of ``study``."""
    summary = SweepSummary(directory=directory, count=count, progress=progress(study))
    if summary.progress.complete:
        best = study.best_trial
        summary = replace(
            summary,
            best_number=best.number,
            best_value=best.value,
            best_run_dir=best.user_attrs.get("run_dir"),
        )
    return summary


def run_local_sweep(
    config: SweepConfig,
    *,
    out: str | PathLike[str] = "sweeps",
    count: int | None = None,
    workers: int | None = None,
    workers_per_gpu: int | None = None,
    storage: str | None = None,
    data_dir: str | PathLike[str] | None = None,
    wandb_mode: str | None = None,
    device: str | None = None,
    figures: bool = True,
    stack: int = 1,
) -> SweepSummary:
    """Run (or continue) a sweep with Optuna until it has its total number of trials.

    Args:
        config: the checked sweep configuration; ``config.name`` names the sweep.
        out: parent of sweep directories; the sweep lives in ``out/config.name``.
        count: the sweep's total number of trials (default: run_cap, else the grid size).
        workers: processes on this machine running trials side by side (default: 1, or
            one per GPU and ``workers_per_gpu`` on GPUs; see ``fastmlp.sweep.placement``).
        workers_per_gpu: workers sharing each GPU of a CUDA sweep (default: 1).
        storage: a database URL (or shared journal file) instead of ``study.journal``.
        data_dir, wandb_mode, device: as for ``fastmlp train``.
        figures: write each trial's figures.
        stack: K > 1 trains up to K trials that share their shape-determining settings
            as one stack of models (see ``fastmlp.sweep.stacked_trials``).

    Raises:
        KeyboardInterrupt: after Ctrl-C, once the running trials are recorded.
        SweepError, SweepConfigError: with a one-line message.
    """
    require_optuna()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_device(device, config)
    places = plan_workers(config, device, workers, workers_per_gpu)
    total = resolve_count(config, count)
    directory = SweepDirectory(Path(out) / config.name)
    study = create_or_load_study(config, open_storage(directory, storage))
    directory.update_info(
        name=config.name, engine="local", storage=storage_label(storage), config=config.raw
    )
    stale = _fail_stale_trials_locked(study, directory, storage)
    if stale:
        print(
            f"trials {', '.join(map(str, stale))} were left running by a stopped worker: "
            "marked failed and queued again",
            file=sys.stderr,
        )
    done = progress(study)
    remaining = total - done.counted
    if remaining <= 0:
        return summarize(directory, study, total)
    places = places[:remaining]
    print(
        f"sweep {config.name}: {done.counted} of {total} trials done or running, "
        f"{remaining} to go on {len(places)} worker(s); storage "
        f"{storage_label(storage) if storage else directory.journal}",
        flush=True,
    )
    options = TrialOptions(
        sweep_dir=directory.path,
        group=config.name,
        data_dir=None if data_dir is None else str(data_dir),
        wandb_mode=wandb_mode,
        device=device,
        figures=figures,
        blas_threads=blas_threads(len(places)),
    )
    if isinstance(stack, bool) or not isinstance(stack, int) or stack < 1:
        raise SweepError(f"--stack must be a whole number >= 1, got {stack!r}")
    spec = WorkerSpec(config=config, storage=storage, count=total, options=options, stack=stack)
    specs = [
        replace(spec, options=replace(options, device=place.device or device)) for place in places
    ]
    for index, place in enumerate(places):
        if place.where:
            print(f"worker {index}: {place.where}", flush=True)
    if len(specs) == 1:
        run_worker(specs[0])
    else:
        run_in_processes(run_worker, specs)
    return summarize(directory, study, total)
