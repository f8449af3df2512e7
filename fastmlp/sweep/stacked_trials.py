"""Trials trained together: a group of a sweep's trials as one stack of models.

``fastmlp sweep --stack K`` asks the sampler for up to K trials at a time (see
``fastmlp.sweep.local``) and hands them to :func:`run_trials`, which

* records a trial whose parameters repeat a completed trial's (seeded runs repeat to the
  last bit) without training it, and trains a trial whose parameters repeat another's in
  the same group once, for both;
* groups the rest by :func:`~fastmlp.runs.stack_experiment.stack_key` (every setting but
  those a stack keeps per model: the optimizer's and the schedule's hyperparameters, weight
  decay, dropout);
* runs a trial alone in its group as any trial (:func:`~fastmlp.sweep.trial.run_trial`),
  as it runs a retry that continues its interrupted run from the run's checkpoint, and a
  group of several with
  :func:`~fastmlp.runs.stack_experiment.run_stacked_experiments`: each trial keeps its own
  run directory, W&B run, per-epoch reports to Optuna and pruning decision (a pruned
  trial's model stops inside its stack), and its outcome is what it would be alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastmlp.interrupts import interrupts_deferred
from fastmlp.runs import RunDirectory
from fastmlp.runs.stack_experiment import run_stacked_experiments, stack_key
from fastmlp.sweep.config import SweepConfig
from fastmlp.sweep.trial import (
    TrialOptions,
    TrialOutcome,
    failed,
    interrupted,
    metric_reporter,
    resumable_run,
    run_trial,
    stopped,
    trial_outcome,
    trial_run_name,
    trial_settings,
)


def repeated(outcome: TrialOutcome, number: int) -> TrialOutcome:
    """``outcome`` recorded again for a trial that repeats trial ``number``'s parameters."""
    if outcome.state != "COMPLETE":
        return outcome
    attributes = {**outcome.attributes, "repeat_of": number}
    return TrialOutcome("COMPLETE", value=outcome.value, attributes=attributes)


def run_trials(trials: Sequence[Any], config: SweepConfig, options: TrialOptions) -> list[Any]:
    """Run ``trials`` (``optuna.Trial``s, parameters sampled) and say how each ended, in
    their order; never raises (Ctrl-C gives interrupted outcomes)."""
    outcomes: dict[int, TrialOutcome] = {}
    first_of: dict[str, Any] = {}  # parameters -> the first trial of the batch with them
    groups: dict[str, list[Any]] = {}
    for trial in trials:
        params = repr(sorted(trial.params.items()))
        if params in first_of:
            continue
        first_of[params] = trial
        settings = trial_settings(config, trial.params, options)
        try:
            key = stack_key(settings)
        except Exception:  # a bad setting: the trial fails alone, as it would unstacked
            key = f"alone {trial.number}"
        if resumable_run(trial, options.sweep_dir) is not None:
            key = f"continues {trial.number}"  # its interrupted run, alone from its checkpoint
        groups.setdefault(key, []).append(trial)
    for group in groups.values():
        if any(outcome.interrupted for outcome in outcomes.values()):
            ran = [interrupted() for _ in group]
        elif len(group) == 1:
            ran = [run_trial(group[0], config, options)]
        else:
            ran = run_stacked_trials(group, config, options)
        outcomes.update((trial.number, outcome) for trial, outcome in zip(group, ran))
    results = []
    for trial in trials:
        first = first_of[repr(sorted(trial.params.items()))]
        outcome = outcomes[first.number]
        results.append(outcome if first is trial else repeated(outcome, first.number))
    return results


def run_stacked_trials(
    trials: Sequence[Any], config: SweepConfig, options: TrialOptions
) -> list[TrialOutcome]:
    """Train ``trials`` (stackable: one :func:`stack_key`) as one stack; how each ended."""
    runs = options.sweep_dir / "runs"
    settings = [trial_settings(config, trial.params, options) for trial in trials]
    run_dirs: list[RunDirectory | None] = [None] * len(trials)
    try:
        names = [trial_run_name(one, trial.number, runs, swept=config.parameters)
                 for trial, one in zip(trials, settings)]  # fmt: skip
        run_dirs = [RunDirectory(runs / name) for name in names]
        with interrupts_deferred():  # named as they start (see run_trial)
            for trial, run_dir in zip(trials, run_dirs):
                trial.set_user_attr("run_dir", str(run_dir.path.relative_to(options.sweep_dir)))
        results = run_stacked_experiments(
            settings,
            out=runs,
            names=names,
            data_dir=options.data_dir,
            wandb_mode=options.wandb_mode,
            group=options.group,
            callbacks=[[metric_reporter(trial, config.metric)] for trial in trials],
            figures=options.figures,
        )
    except KeyboardInterrupt as interrupt:
        return [interrupted(stopped(run_dir, options.sweep_dir, "interrupted"), interrupt)
                for run_dir in run_dirs]  # fmt: skip
    except Exception as error:
        return [failed(error, run_dir, options.sweep_dir) for run_dir in run_dirs]
    return [trial_outcome(result, config, options, one) for result, one in zip(results, settings)]
