"""One sweep trial: a normal fastmlp run of the trial's settings, and how it ended.

The run is ``run_experiment`` with the sweep's constants plus the trial's sampled values, in
its own run directory ``SWEEP_DIR/runs/<run-name>_t<number>`` and its own W&B run (grouped by
sweep). After every epoch the sweep's metric is reported to Optuna; when the pruner says so
the run stops there and its summary records ``status: pruned``.

How a trial ends, as an Optuna state:

* COMPLETE -- the run finished; the value is the metric at its last epoch (as W&B's summary);
* PRUNED   -- Hyperband stopped it early;
* FAIL     -- it diverged, or raised; ``failure`` says why. A fatal error (the data or the
  device is missing: every trial would fail the same way) also stops the sweep.
  Ctrl-C gives FAIL with ``interrupted`` set.

An interrupted trial (Ctrl-C, SIGTERM, or a killed worker) is queued again as a new trial
with ``retry_of`` set. The retry continues the interrupted trial's run directory from its
checkpoint (``run_experiment(resume=...)``, which repairs whatever the kill left) instead of
training from the first epoch, and reports the epochs already trained to Optuna before its
first new one, so that the pruner judges it on its whole curve. Each trial names its run
directory (``run_dir``) as it starts, so a killed worker's trial is found too.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastmlp.backends import DeviceUnavailableError
from fastmlp.data import DataError
from fastmlp.errors import one_line
from fastmlp.interrupts import interrupts_deferred
from fastmlp.nn.checkpoint import CheckpointError
from fastmlp.runs import RunDirectory, RunDirectoryError, run_name
from fastmlp.runs.config import normalize_config
from fastmlp.runs.experiment import COMPLETE
from fastmlp.sweep.aliases import FINAL_METRICS
from fastmlp.sweep.config import SweepConfig
from fastmlp.training import EpochMetrics, StopTraining

# How an interrupted trial's failure reads.
INTERRUPTED = "interrupted (Ctrl-C or SIGTERM)"
# The statuses of a run that has ended: a retry of its trial starts afresh, not from it.
ENDED = (*COMPLETE, "pruned", "failed")
# Errors of the environment rather than of one configuration: they stop the sweep.
FATAL_ERRORS = (DataError, DeviceUnavailableError, ImportError, OSError)


@dataclass(frozen=True)
class TrialOptions:
    """What every trial of a sweep shares (besides the configuration)."""

    sweep_dir: Path
    group: str
    data_dir: str | None = None
    wandb_mode: str | None = None
    device: str | None = None
    figures: bool = True
    blas_threads: int | None = None


@dataclass
class TrialOutcome:
    """How a trial ended: an Optuna state name, the metric value, and attributes to record."""

    state: str
    value: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    fatal: bool = False
    interrupt: KeyboardInterrupt | None = field(default=None, compare=False, repr=False)

    @property
    def interrupted(self) -> bool:
        return bool(self.attributes.get("interrupted"))

    @property
    def failure(self) -> str | None:
        return self.attributes.get("failure")


def trial_settings(
    config: SweepConfig,
    params: dict[str, Any],
    options: TrialOptions,
    chosen_by_wandb: bool = False,
) -> dict[str, Any]:
    """The settings of a trial: constants, sampled values, the sweep's --device if given, and
    the worker's BLAS thread count (recorded so that the trial can be repeated exactly).

    ``params`` are Optuna's sampled points by setting name, or with ``chosen_by_wandb`` the
    values W&B's agent chose, by the config's own parameter names."""
    settings = config.wandb_settings(params) if chosen_by_wandb else config.settings(params)
    if options.device is not None:
        settings["device"] = options.device
    if options.blas_threads is not None:
        settings.setdefault("blas_threads", options.blas_threads)
    return settings


def trial_run_name(
    settings: dict[str, Any], number: int, runs: Path, swept: Iterable[str] = ()
) -> str:
    """``hl_3_sz_128_bs_32_ac_relu_o_adam_lr_1e-3_e_10_t7``: the run name, with every
    ``swept`` setting in it even at its default (values from continuous distributions shown
    to 3 significant digits), plus the trial number, with ``-2``, ``-3``... only if a
    directory of that name is left from an earlier study."""
    shown = {
        key: float(f"{value:.3g}") if isinstance(value, float) else value
        for key, value in settings.items()
    }
    base = f"{run_name(normalize_config(shown), always=swept)}_t{number}"
    name, suffix = base, 2
    while (runs / name).exists():
        name, suffix = f"{base}-{suffix}", suffix + 1
    return name


def metric_reporter(trial: Any, metric: str) -> Any:
    """A per-epoch callback: report the metric to Optuna, stop the run when it says prune."""

    def report(metrics: EpochMetrics) -> None:
        value = getattr(metrics, metric, None)  # None: not measured per epoch (test_accuracy)
        if value is None:
            return
        # a journal write that Ctrl-C must not cut (Optuna's file lock then fails with an
        # error of its own instead of the interrupt): the signal waits until it is done
        with interrupts_deferred():
            trial.report(value, metrics.epoch)
            prune = trial.should_prune()
        if prune:
            raise StopTraining("pruned", f"pruned after epoch {metrics.epoch}")

    return report


def resumable_run(trial: Any, sweep_dir: Path) -> RunDirectory | None:
    """The run directory that the interrupted trial which ``trial`` retries (``retry_of``)
    left with a checkpoint to continue from; None for a first attempt, a run never
    checkpointed, or one whose summary says it ended (finished, diverged, stopped early,
    pruned)."""
    earlier = trial.user_attrs.get("retry_of")
    if earlier is None:
        return None
    trials = trial.study.get_trials(deepcopy=False)
    if not 0 <= earlier < len(trials) or trials[earlier].number != earlier:
        return None
    relative = trials[earlier].user_attrs.get("run_dir")
    if not relative:
        return None
    run_dir = RunDirectory(sweep_dir / relative)
    if not run_dir.checkpoint_path.is_file():
        return None
    try:
        status = run_dir.read_summary().get("status")
    except RunDirectoryError:  # none yet, or unreadable: resume rewrites it
        status = None
    return None if status in ENDED else run_dir


class ContinuingReporter:
    """:func:`metric_reporter` for a trial continuing ``run_dir``: before its first new
    epoch it reports the epochs the run had trained (metrics.jsonl as resume left it);
    :meth:`catch_up` reports them when no epoch was left to train."""

    def __init__(self, trial: Any, metric: str, run_dir: RunDirectory) -> None:
        self.trial, self.metric, self.run_dir = trial, metric, run_dir
        self._report = metric_reporter(trial, metric)
        self.caught_up = False
        # how many epochs the run had trained when it was continued
        self.trained_before = 0

    def __call__(self, metrics: EpochMetrics) -> None:
        if not self.caught_up:
            self.caught_up = True
            self.trained_before = metrics.epoch - 1
            report_epochs(self.trial, self.metric, self.run_dir.read_metrics(), metrics.epoch)
        self._report(metrics)

    def catch_up(self, history: list[dict[str, Any]]) -> None:
        """Report the run's ``history`` if no new epoch has reported it."""
        if not self.caught_up:
            self.caught_up = True
            self.trained_before = history[-1]["epoch"] if history else 0
            report_epochs(self.trial, self.metric, history, self.trained_before + 1)


def report_epochs(trial: Any, metric: str, rows: list[dict[str, Any]], before: int) -> None:
    """Report ``metric`` of the ``rows`` (metrics.jsonl lines) of epochs before ``before``."""
    with interrupts_deferred():  # journal writes, as in metric_reporter
        for row in rows:
            if row["epoch"] < before and row.get(metric) is not None:
                trial.report(row[metric], row["epoch"])


def _run_attributes(summary: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    attributes = {"epochs": history[-1]["epoch"] if history else 0}
    for key in ("val_accuracy", "best_val_accuracy", "test_accuracy"):
        if summary.get(key) is not None:
            attributes[key] = summary[key]
    return attributes


def interrupted(
    attributes: dict[str, Any] | None = None, interrupt: KeyboardInterrupt | None = None
) -> TrialOutcome:
    """The outcome of a trial stopped by Ctrl-C (or SIGTERM): failed, not counted, to be run
    again; ``interrupt`` is what stopped it."""
    return TrialOutcome(
        "FAIL",
        attributes={**(attributes or {}), "failure": INTERRUPTED, "interrupted": True},
        interrupt=interrupt,
    )


def stopped(run_dir: RunDirectory | None, sweep_dir: Path, status: str, **entries: Any) -> dict:
    """Write the summary of a run that an exception stopped (interrupted, failed);
    the trial attributes that describe it (no run directory if it was never made)."""
    if run_dir is None or not run_dir.path.is_dir():
        return {"run_dir": ""}  # the trial named it as it started
    history = run_dir.read_metrics()
    summary = {**run_dir.read_summary(), "status": status, "run_dir": str(run_dir.path), **entries}
    summary["epochs_completed"] = history[-1]["epoch"] if history else 0
    val_accuracies = [row["val_accuracy"] for row in history if row.get("val_accuracy") is not None]
    if val_accuracies:
        summary["best_val_accuracy"] = max(val_accuracies)
        summary["val_accuracy"] = val_accuracies[-1]
    run_dir.write_summary(summary)
    return {
        "run_dir": str(run_dir.path.relative_to(sweep_dir)),
        **_run_attributes(summary, history),
    }


def run_trial(trial: Any, config: SweepConfig, options: TrialOptions) -> TrialOutcome:
    """Run one trial to its end and say how it ended; never raises.

    A retry continues its interrupted run (:func:`resumable_run`); if that run cannot be
    continued after all (a checkpoint or run directory that resume refuses), the retry
    starts afresh in a new directory, saying why on stderr.

    Args:
        trial: an ``optuna.Trial`` whose parameters are already sampled.
        config: the sweep configuration.
        options: data, tracking and device options shared by all trials.
    """
    resumed = resumable_run(trial, options.sweep_dir)
    if resumed is not None:
        try:
            return _run(trial, config, options, resumed)
        except _CannotContinue as cannot:
            print(
                f"trial {trial.number}: cannot continue {resumed.path} ({cannot}); "
                "training it afresh",
                file=sys.stderr,
            )
    return _run(trial, config, options, None)


class _CannotContinue(Exception):
    """The run a retry was to continue is refused by resume (its message says why)."""


def _run(
    trial: Any, config: SweepConfig, options: TrialOptions, resumed: RunDirectory | None
) -> TrialOutcome:
    """:func:`run_trial` in a new run directory, or continuing ``resumed``."""
    from fastmlp.runs.experiment import run_experiment

    runs = options.sweep_dir / "runs"
    settings = trial_settings(config, trial.params, options)
    run_dir = resumed
    try:
        if resumed is None:
            name = trial_run_name(settings, trial.number, runs, swept=config.parameters)
            run_dir = RunDirectory(runs / name)
            reporter: Any = metric_reporter(trial, config.metric)
        else:
            name = resumed.name
            reporter = ContinuingReporter(trial, config.metric, resumed)
        # named as the trial starts: a retry after a kill finds the run to continue
        with interrupts_deferred():
            trial.set_user_attr("run_dir", str(run_dir.path.relative_to(options.sweep_dir)))
        result = run_experiment(
            settings,
            out=runs,
            data_dir=options.data_dir,
            wandb_mode=options.wandb_mode,
            progress=False,
            verbose=False,
            resume=None if resumed is None else resumed.path,
            group=options.group,
            name=name,
            callbacks=[reporter],
            figures=options.figures,
        )
        if resumed is not None:
            reporter.catch_up(result.history)
    except KeyboardInterrupt as interrupt:
        return interrupted(stopped(run_dir, options.sweep_dir, "interrupted"), interrupt)
    except (CheckpointError, RunDirectoryError) as error:
        if resumed is not None and not reporter.caught_up:  # refused before any epoch
            raise _CannotContinue(one_line(error)) from error
        return failed(error, run_dir, options.sweep_dir)
    except Exception as error:
        return failed(error, run_dir, options.sweep_dir)
    outcome = trial_outcome(result, config, options, settings)
    if resumed is not None:
        outcome.attributes["continued_from_epoch"] = reporter.trained_before
    return outcome


def failed(error: Exception, run_dir: RunDirectory | None, sweep_dir: Path) -> TrialOutcome:
    """The outcome of a trial whose run ``error`` stopped (its traceback in the run
    directory's ``error.txt``); fatal when every trial would fail the same way."""
    failure = f"{type(error).__name__}: {one_line(error)}"
    if run_dir is not None and run_dir.path.is_dir():
        run_dir.file("error.txt").write_text(traceback.format_exc())
    attributes = stopped(run_dir, sweep_dir, "failed", error=failure)
    return TrialOutcome(
        "FAIL",
        attributes={**attributes, "failure": failure},
        fatal=isinstance(error, FATAL_ERRORS),
    )


def trial_outcome(
    result: Any, config: SweepConfig, options: TrialOptions, settings: dict[str, Any]
) -> TrialOutcome:
    """How a trial whose run ended as ``result`` (an ``ExperimentResult``) ended."""
    attributes = {
        "run_dir": str(result.run_dir.path.relative_to(options.sweep_dir)),
        "blas_threads": settings.get("blas_threads"),
        **_run_attributes(result.summary, result.history),
    }
    stack = result.summary.get("stack")
    if stack is not None:
        attributes["stack_size"] = stack["models"]
    if result.status == "interrupted":
        return interrupted(attributes, result.interrupt)
    if result.status == "pruned":
        attributes["pruned"] = result.summary["stop_reason"]
        return TrialOutcome("PRUNED", attributes=attributes)
    if result.status == "diverged":
        epoch = result.summary["diverged_at"]
        attributes["failure"] = f"diverged at epoch {epoch}: the training loss is no longer finite"
        return TrialOutcome("FAIL", attributes=attributes)
    # the epoch whose weights the run ends with: the best one under restore_best, else the last
    evaluated = result.summary.get("evaluated_epoch")
    rows = [row for row in result.history if row["epoch"] == evaluated] or result.history[-1:]
    # test_accuracy is measured once, after training: the summary holds it, not the history
    measured = result.summary if config.metric in FINAL_METRICS else (rows[0] if rows else {})
    value = measured.get(config.metric)
    if value is None:
        attributes["failure"] = f"the run measured no {config.metric}"
        return TrialOutcome("FAIL", attributes=attributes)
    return TrialOutcome("COMPLETE", value=float(value), attributes=attributes)
