"""``fastmlp sweep report SWEEP_DIR``: what a sweep found, as files (and on W&B).

``SWEEP_DIR/report/`` receives

* ``best.json``                -- the best trial's configuration: a config file for
  ``fastmlp train --config best.json`` (only settings of ``fastmlp.runs.config.settings``);
* ``trials.csv``, ``trials.md`` -- every trial: number, state, parameters, the metric,
  validation and test accuracy, duration, run directory, and why it failed or stopped;
* ``parallel_coordinates.png`` -- the complete trials through their parameters to the metric;
* ``accuracy_vs_time.png``     -- the metric of every trial by start time, best so far;
* ``importance.png``           -- parameter importance (fANOVA, from
  ``MIN_TRIALS_FOR_IMPORTANCE`` complete trials) and each parameter's rank correlation with
  the metric.

When a W&B mode other than disabled resolves (and wandb is installed), the figures, the table
and the best result are also logged as one W&B run ``<sweep>-report`` in the sweep's group.
"""

from __future__ import annotations

import csv
import datetime
import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from fastmlp.files import atomic_write_json
from fastmlp.runs import WandbRun, resolve_wandb_mode
from fastmlp.runs.config import normalize_config, settings
from fastmlp.sweep import plots
from fastmlp.sweep.config import SweepConfig, parse_sweep_config
from fastmlp.sweep.study import (
    SweepDirectory,
    SweepError,
    guarded,
    load_study,
    open_storage,
    require_optuna,
)

MIN_TRIALS_FOR_IMPORTANCE = 5


@dataclass
class TrialRow:
    """One trial as the report shows it. ``value`` is the sweep's metric; accuracies in
    [0, 1]; ``seconds`` the trial's wall time; ``note`` why it failed or stopped."""

    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    val_accuracy: float | None
    test_accuracy: float | None
    started: datetime.datetime | None
    seconds: float | None
    run_dir: str
    note: str
    blas_threads: int | None = None


@dataclass
class Report:
    """What ``write_report`` wrote: the files by name, and the best trial and its config."""

    directory: Path
    files: dict[str, Path] = field(default_factory=dict)
    best: TrialRow | None = None
    best_config: dict[str, Any] | None = None
    wandb_dir: str | None = None


def _note(trial: Any) -> str:
    attributes = trial.user_attrs
    if trial.state.name == "PRUNED":
        return f"pruned after epoch {attributes.get('epochs', trial.last_step)}"
    if attributes.get("repeat_of") is not None:
        return f"same parameters as trial {attributes['repeat_of']}: result reused"
    note = attributes.get("failure", "")
    if attributes.get("retry_of") is not None:
        note = f"rerun of trial {attributes['retry_of']}" + (f"; {note}" if note else "")
    return note


def trial_rows(study: Any) -> list[TrialRow]:
    """Every started trial of ``study`` (queued ones left out), by number."""
    from optuna.trial import TrialState

    started = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    rows = []
    for trial in study.get_trials(deepcopy=False, states=started):
        seconds = None
        if trial.datetime_start is not None and trial.datetime_complete is not None:
            seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        rows.append(
            TrialRow(
                number=trial.number,
                state=trial.state.name,
                params=dict(trial.params),
                value=trial.value if trial.state.name in ("COMPLETE", "PRUNED") else None,
                val_accuracy=trial.user_attrs.get("val_accuracy"),
                test_accuracy=trial.user_attrs.get("test_accuracy"),
                started=trial.datetime_start,
                seconds=seconds,
                run_dir=trial.user_attrs.get("run_dir", ""),
                note=_note(trial),
                blas_threads=trial.user_attrs.get("blas_threads"),
            )
        )
    return rows


def best_config(
    config: SweepConfig, params: dict[str, Any], blas_threads: int | None = None
) -> dict[str, Any]:
    """The full configuration of a trial, as ``fastmlp train --config`` reads it, with the
    BLAS thread count it ran with, so that training it again repeats it exactly."""
    values = normalize_config({"blas_threads": blas_threads, **config.settings(params)})
    return {key: values[key] for key in settings()}


def _columns(config: SweepConfig, rows: list[TrialRow]) -> tuple[list[str], list[list[Any]]]:
    names = sorted({name for row in rows for name in row.params})
    accuracy = [] if config.metric == "val_accuracy" else ["val_accuracy"]
    header = [
        "number",
        "state",
        *names,
        config.metric,
        *accuracy,
        "test_accuracy",
        "duration_s",
        "started",
        "run_dir",
        "note",
    ]
    table = []
    for row in rows:
        started = row.started.isoformat(timespec="seconds") if row.started else ""
        seconds = None if row.seconds is None else round(row.seconds, 1)
        table.append(
            [
                row.number,
                row.state,
                *(row.params.get(name, "") for name in names),
                row.value,
                *([row.val_accuracy] if accuracy else []),
                row.test_accuracy,
                seconds,
                started,
                row.run_dir,
                row.note,
            ]
        )
    return header, table


def _markdown(header: list[str], table: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in table]
    return "\n".join(lines) + "\n"


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of ``values``, ties sharing their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation, or None when either side is constant."""
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def correlations(rows: list[TrialRow]) -> list[tuple[str, float]]:
    """Rank correlation of each parameter with the metric over complete trials: numbers as
    they are, other values one-hot (``optimizer=adam`` against every other optimizer)."""
    complete = [row for row in rows if row.state == "COMPLETE"]
    metric = np.array([row.value for row in complete], dtype=np.float64)
    result = []
    for name in sorted({name for row in complete for name in row.params}):
        values = [row.params.get(name) for row in complete]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            pairs = [(f"{name}", np.array(values, dtype=np.float64))]
        else:
            pairs = [
                (f"{name}={choice}", np.array([str(v) == choice for v in values], dtype=np.float64))
                for choice in sorted(set(map(str, values)))
            ]
        for label, column in pairs:
            r = _spearman(column, metric)
            if r is not None:
                result.append((label, r))
    return result


def _importances(study: Any, complete: int) -> tuple[dict[str, float] | None, str]:
    import optuna

    if complete < MIN_TRIALS_FOR_IMPORTANCE:
        needed = MIN_TRIALS_FOR_IMPORTANCE
        return None, f"importance needs at least {needed} complete trials ({complete} so far)"
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {name: float(value) for name, value in importances.items()}, ""


def _wandb_log(
    config: SweepConfig,
    report: Report,
    header: list[str],
    table: list[list[Any]],
    wandb_mode: str | None,
) -> str | None:
    """Log the figures, the table and the best result as one W&B run; its directory, if any."""
    mode = resolve_wandb_mode(wandb_mode)
    if mode == "disabled":
        return None
    settings = normalize_config(
        {k: v for k, v in config.constants.items() if k in ("wandb_project", "wandb_entity")}
    )
    run = WandbRun.start(
        mode=mode,
        project=settings["wandb_project"],
        entity=settings["wandb_entity"],
        name=f"{config.name}-report",
        config={"sweep": config.raw},
        directory=report.directory,
        group=config.name,
        job_type="sweep-report",
    )
    if run is None:
        return None
    import wandb

    for key, path in report.files.items():
        if path.suffix == ".png":
            run.log_image(key, path)
    run.run.log({"trials": wandb.Table(columns=header, data=table)})
    if report.best is not None:
        run.update_summary(
            {
                f"best_{config.metric}": report.best.value,
                "best_trial": report.best.number,
                "best_config": report.best_config,
            }
        )
    run.finish()
    return run.directory


def write_report(
    sweep_dir: str | PathLike[str], *, storage: str | None = None, wandb_mode: str | None = None
) -> Report:
    """Analyse a local-engine sweep and write ``SWEEP_DIR/report/``.

    Args:
        sweep_dir: the sweep directory (``OUT/NAME``).
        storage: the database URL the sweep used, when its ``sweep.json`` cannot hold it
            (it never stores a password).
        wandb_mode: online / offline / disabled; None resolves it as ``fastmlp train`` does.
    """
    require_optuna()
    directory = SweepDirectory(sweep_dir)
    info = directory.read_info()
    if info.get("engine") == "wandb":
        raise SweepError(
            f"{directory.path} is W&B sweep {info.get('wandb_sweep_id')} in project "
            f"{info.get('wandb_project')}: its analysis is on W&B"
        )
    stored = info.get("storage", SweepDirectory.JOURNAL)
    if storage is None and stored != SweepDirectory.JOURNAL:
        if "***@" in stored:
            raise SweepError(
                f"this sweep's trials are in {stored}: pass --storage with the full URL"
            )
        storage = stored
    study = load_study(info["name"], open_storage(directory, storage, create=False))
    stored = guarded(info["name"], lambda: study.user_attrs.get("config"))
    if stored is None:
        raise SweepError(
            f"the storage of sweep {info['name']!r} holds no sweep configuration "
            "(it was not made by fastmlp sweep, or it is damaged)"
        )
    config = parse_sweep_config(stored, default_name=info["name"])

    report = Report(directory=directory.report)
    report.directory.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study)
    header, table = _columns(config, rows)
    csv_path = report.directory / "trials.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(["" if value is None else value for value in row] for row in table)
    markdown_path = report.directory / "trials.md"
    markdown_path.write_text(
        f"# Sweep {config.name}: {len(rows)} trials\n\n" + _markdown(header, table)
    )
    report.files.update(trials_csv=csv_path, trials_md=markdown_path)

    complete = [row for row in rows if row.state == "COMPLETE"]
    if complete:
        pick = max if config.goal == "maximize" else min
        report.best = pick(complete, key=lambda row: row.value)
        report.best_config = best_config(config, report.best.params, report.best.blas_threads)
        best_path = report.directory / "best.json"
        atomic_write_json(best_path, report.best_config)
        report.files["best"] = best_path

    swept = [name for name in config.parameters if any(name in row.params for row in complete)]
    if complete and swept:
        distributions = {name: config.parameters[name].optuna_distribution() for name in swept}
        report.files["parallel_coordinates"] = plots.plot_parallel_coordinates(
            {name: [row.params[name] for row in complete] for name in swept},
            distributions,
            [row.value for row in complete],
            config.metric,
            config.goal,
            report.directory / "parallel_coordinates.png",
        )
    timed = [
        row
        for row in rows
        if row.started is not None and row.state in ("COMPLETE", "PRUNED", "FAIL")
    ]
    if timed:
        report.files["accuracy_vs_time"] = plots.plot_metric_vs_time(
            [row.started for row in timed],
            [
                row.value if row.value is not None and math.isfinite(row.value) else None
                for row in timed
            ],
            [row.state for row in timed],
            config.metric,
            config.goal,
            report.directory / "accuracy_vs_time.png",
        )
    if complete and swept:
        importances, note = _importances(study, len(complete))
        report.files["importance"] = plots.plot_importance(
            importances,
            correlations(rows),
            config.metric,
            report.directory / "importance.png",
            note=note,
        )
    report.wandb_dir = _wandb_log(config, report, header, table, wandb_mode)
    return report
