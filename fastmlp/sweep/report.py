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
  the metric; with fewer complete trials than :func:`trials_for_reliable_importance`, the
  figure, ``trials.md`` and the command's output say that they are too few to mean much.

The tables, the parallel coordinates and the rank correlations show each parameter's setting
value (:meth:`SweepConfig.values`), not the point Optuna sampled for it: a normal's or a
beta's value rather than its quantile u, a quantised or rounded number rather than the point
it came from, a categorical value picked by its probabilities rather than the u that picked
it, a list of hidden sizes decoded from the JSON text Optuna stores (written as JSON again).

The report is made in a staging folder and moved into place only when every file is made: a
missing package (checked first: one line naming the pip command), an error or Ctrl-C leaves
the previous report untouched.

When a W&B mode other than disabled resolves (and wandb is installed), the figures, the table
and the best result are also logged as one W&B run ``<sweep>-report`` in the sweep's group.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import importlib
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from fastmlp.errors import MissingDependencyError
from fastmlp.files import atomic_write_json, atomic_write_text
from fastmlp.interrupts import interrupts_deferred
from fastmlp.runs import WandbRun, resolve_wandb_mode
from fastmlp.runs.config import normalize_config, settings
from fastmlp.sweep import plots
from fastmlp.sweep.config import SweepConfig, parse_sweep_config
from fastmlp.sweep.distributions import LOG_SCALE, QUANTILE_SPACE, Parameter
from fastmlp.sweep.study import (
    SweepDirectory,
    SweepError,
    guarded,
    load_study,
    open_storage,
    require_optuna,
)

# fANOVA is computed from this many complete trials on ...
MIN_TRIALS_FOR_IMPORTANCE = 5
# ... and means something from max(RELIABLE_IMPORTANCE_TRIALS, 2 x the swept parameters) on:
# a random forest fitted to fewer points tells little about how the metric depends on them.
RELIABLE_IMPORTANCE_TRIALS = 10

# The files a report consists of (an earlier report's ones that this one does not make go).
REPORT_FILES = frozenset(
    {
        "best.json",
        "trials.csv",
        "trials.md",
        "parallel_coordinates.png",
        "accuracy_vs_time.png",
        "importance.png",
    }
)

# (modules, package, what for): what the report imports besides Optuna.
REPORT_DEPENDENCIES = (
    (("matplotlib",), "matplotlib", "for its figures"),
    (("sklearn", "sklearn.ensemble"), "scikit-learn", "for the fANOVA parameter importance"),
)


@dataclass
class TrialRow:
    """One trial as the report shows it. ``params`` are the points Optuna sampled,
    ``values`` the setting values they stand for (:meth:`SweepConfig.values`; ``params``
    when no config decoded them); ``value`` is the sweep's metric; accuracies in [0, 1];
    ``seconds`` the trial's wall time; ``note`` why it failed or stopped."""

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
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """What ``write_report`` wrote: the files by name, the best trial and its config, and
    notes for the reader (too few trials for the importance to mean much)."""

    directory: Path
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
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
        rerun = f"rerun of trial {attributes['retry_of']}"
        if attributes.get("continued_from_epoch") is not None:
            rerun += f", continued after its epoch {attributes['continued_from_epoch']}"
        note = rerun + (f"; {note}" if note else "")
    return note


def trial_rows(study: Any, config: SweepConfig | None = None) -> list[TrialRow]:
    """Every started trial of ``study`` (queued ones left out), by number, with the setting
    values of its sampled points decoded by ``config``."""
    from optuna.trial import TrialState

    started = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    rows = []
    for trial in study.get_trials(deepcopy=False, states=started):
        seconds = None
        if trial.datetime_start is not None and trial.datetime_complete is not None:
            seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        params = dict(trial.params)
        values = {**params, **config.values(params)} if config is not None else dict(params)
        rows.append(
            TrialRow(
                number=trial.number,
                state=trial.state.name,
                params=params,
                values=values,
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


def _cell(value: Any) -> Any:
    """A setting value as a table cell: a list (of hidden sizes) or mapping as JSON text."""
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


def _columns(config: SweepConfig, rows: list[TrialRow]) -> tuple[list[str], list[list[Any]]]:
    names = sorted({name for row in rows for name in row.values})
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
                *(_cell(row.values[name]) if name in row.values else "" for name in names),
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


def _directly_sampled(parameter: Parameter) -> bool:
    """Whether Optuna samples the setting's value itself: no quantile, JSON text, rounding
    or quantisation between the sampled point and the value."""
    if parameter.distribution == "categorical":
        return not parameter.probabilities and not any(
            isinstance(choice, (list, tuple, dict)) for choice in parameter.choices
        )
    if parameter.distribution == "int_uniform" or parameter.grid:
        return True  # a grid samples q_uniform's values themselves (and takes nothing else)
    return (
        parameter.distribution not in QUANTILE_SPACE
        and parameter.q is None
        and not parameter.integer
    )


def _value_axis(parameter: Parameter, values: list[Any]) -> tuple[list[Any], Any]:
    """What a parallel-coordinates axis places for a parameter's setting ``values`` (one per
    trial), and the Optuna distribution that sets the axis's scale.

    A directly sampled parameter keeps its own distribution. Categorical values are the
    categories (lists as their JSON text); other numbers span the configured range and the
    values seen (a normal, log-normal or beta: the values seen), on a log axis for a
    log-scale distribution or a log-normal unless a value quantised to 0 rules it out.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if _directly_sampled(parameter):
        return values, parameter.optuna_distribution()
    if parameter.distribution == "categorical":
        first: dict[Any, Any] = {}  # each choice as written first (1 and 1.0 are one value)
        for choice in parameter.choices:
            first.setdefault(_cell(choice), _cell(choice))
        return [first[_cell(value)] for value in values], CategoricalDistribution(list(first))
    low, high = min(map(float, values)), max(map(float, values))
    if parameter.distribution not in QUANTILE_SPACE:
        low, high = min(low, float(parameter.low)), max(high, float(parameter.high))
    log = parameter.distribution in LOG_SCALE or parameter.distribution.endswith("log_normal")
    log = log and low > 0
    if low == high:  # one value: the middle of an axis around it
        low, high = (low / 2, high * 2) if log else (low - 0.5, high + 0.5)
    return values, FloatDistribution(low, high, log=log)


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
    """Rank correlation of each parameter's setting values with the metric over complete
    trials: numbers as they are, other values one-hot (``optimizer=adam`` against every
    other optimizer)."""
    complete = [row for row in rows if row.state == "COMPLETE"]
    metric = np.array([row.value for row in complete], dtype=np.float64)
    result = []
    for name in sorted({name for row in complete for name in row.values}):
        values = [row.values.get(name) for row in complete]
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


def trials_for_reliable_importance(parameters: int) -> int:
    """How many complete trials the importance (and the correlations) of ``parameters``
    swept parameters should rest on before they mean much."""
    return max(RELIABLE_IMPORTANCE_TRIALS, 2 * parameters)


def importance_caution(complete: int, parameters: int) -> str:
    """Why the importance of ``parameters`` parameters from ``complete`` trials means
    little, or "" when they are enough."""
    wanted = trials_for_reliable_importance(parameters)
    if complete >= wanted:
        return ""
    return (
        f"only {complete} complete trial{'s' * (complete != 1)} for {parameters} swept "
        f"parameter{'s' * (parameters != 1)}: too few for the importance and the correlations "
        f"to mean much ({wanted} or more wanted)"
    )


def _importances(study: Any, complete: int) -> tuple[dict[str, float] | None, str]:
    import optuna

    if complete < MIN_TRIALS_FOR_IMPORTANCE:
        needed = MIN_TRIALS_FOR_IMPORTANCE
        return None, f"importance needs at least {needed} complete trials ({complete} so far)"
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except RuntimeError as error:  # fANOVA's "Encountered zero total variance in all trees."
        if "zero total variance" not in str(error):
            raise
        return None, (
            "importance is undefined: the metric does not vary over the complete trials "
            "(they all scored the same, or share their parameters)"
        )
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


@dataclass(frozen=True)
class LocalSweep:
    """A local-engine sweep found from its directory: its name and its Optuna storage."""

    directory: SweepDirectory
    name: str
    storage: Any


def open_local_sweep(
    sweep_dir: str | PathLike[str], storage: str | None, on_wandb: str
) -> LocalSweep:
    """The study storage of the local-engine sweep in ``sweep_dir``, for reading.

    Args:
        sweep_dir: the sweep directory (``OUT/NAME``, with its ``sweep.json``); with a
            ``storage`` URL, it may be a folder of that name on another machine, which
            then needs no ``sweep.json`` (it is made for the report).
        storage: the database URL the sweep used, when its ``sweep.json`` cannot hold it
            (it never stores a password); None: the one ``sweep.json`` names.
        on_wandb: what to say when the directory is a W&B sweep ("its analysis is on W&B").

    Raises:
        SweepError: not a local sweep directory, or its storage cannot be opened.
    """
    directory = SweepDirectory(sweep_dir)
    if storage is not None and not directory.path.joinpath(SweepDirectory.INFO).exists():
        # a sweep another machine started: its trials are in the database, under the name
        # its folder has there (OUT/NAME); its report is written here
        if directory.path.exists() and not directory.path.is_dir():
            raise SweepError(f"{directory.path} is a file, not a sweep directory")
        info: dict[str, Any] = {"name": directory.path.name, "storage": storage}
        opened = open_storage(directory, storage, create=False)
        directory.path.mkdir(parents=True, exist_ok=True)
        return LocalSweep(directory=directory, name=info["name"], storage=opened)
    info = directory.read_info()
    if info.get("engine") == "wandb":
        raise SweepError(
            f"{directory.path} is W&B sweep {info.get('wandb_sweep_id')} in project "
            f"{info.get('wandb_project')}: {on_wandb}"
        )
    stored = info.get("storage", SweepDirectory.JOURNAL)
    if storage is None and stored != SweepDirectory.JOURNAL:
        if "***@" in stored:
            raise SweepError(
                f"this sweep's trials are in {stored}: pass --storage with the full URL"
            )
        storage = stored
    return LocalSweep(
        directory=directory,
        name=info["name"],
        storage=open_storage(directory, storage, create=False),
    )


def require_report_dependencies() -> None:
    """Raise one line naming the pip command when a package the report needs is missing,
    before anything is written (Optuna; matplotlib for the figures; scikit-learn, whose
    random forests Optuna's fANOVA fits)."""
    require_optuna()
    for modules, package, purpose in REPORT_DEPENDENCIES:
        try:
            for module in modules:
                importlib.import_module(module)
        except ImportError:
            raise MissingDependencyError(
                f'fastmlp sweep report needs {package} ({purpose}): pip install "fastmlp[sweep]"'
            ) from None


def _importance_markdown(
    metric: str, importances: dict[str, float] | None, note: str, caution: str
) -> str:
    lines = [f"## Parameter importance for {metric} (fANOVA)", ""]
    if importances:
        lines += ["| parameter | share of the explained variance |", "|---|---|"]
        lines += [f"| {name} | {value:.3f} |" for name, value in importances.items()]
    else:
        lines.append(f"Not computed: {note}.")
    if caution:
        lines += ["", f"**Caution:** {caution}."]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, header: list[str], table: list[list[Any]]) -> Path:
    stream = io.StringIO(newline="")
    writer = csv.writer(stream)
    writer.writerow(header)
    writer.writerows(["" if value is None else value for value in row] for row in table)
    return atomic_write_text(path, stream.getvalue())


def _publish(staging: Path, files: dict[str, Path], directory: Path) -> dict[str, Path]:
    """Move the report's files from ``staging`` into ``directory`` (each move atomic, none
    cut in half by Ctrl-C), and remove report files of an earlier report that this one has
    not made; returns the files at their new place."""
    directory.mkdir(parents=True, exist_ok=True)
    published = {}
    with interrupts_deferred():
        for key, path in files.items():
            published[key] = directory / path.relative_to(staging)
            os.replace(path, published[key])
        made = {path.name for path in published.values()}
        for name in REPORT_FILES - made:
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()
    return published


def _open(
    sweep_dir: str | PathLike[str], storage: str | None
) -> tuple[LocalSweep, Any, SweepConfig]:
    """The local sweep in ``sweep_dir``, its Optuna study and its configuration."""
    sweep = open_local_sweep(sweep_dir, storage, on_wandb="its analysis is on W&B")
    study = load_study(sweep.name, sweep.storage)
    stored = guarded(sweep.name, lambda: study.user_attrs.get("config"))
    if stored is None:
        raise SweepError(
            f"the storage of sweep {sweep.name!r} holds no sweep configuration "
            "(it was not made by fastmlp sweep, or it is damaged)"
        )
    return sweep, study, parse_sweep_config(stored, default_name=sweep.name)


def load_trials(
    sweep_dir: str | PathLike[str], storage: str | None = None
) -> tuple[SweepConfig, list[TrialRow]]:
    """The configuration and every started trial of the local sweep in ``sweep_dir``."""
    require_optuna()
    _, study, config = _open(sweep_dir, storage)
    return config, trial_rows(study, config)


def write_report(
    sweep_dir: str | PathLike[str], *, storage: str | None = None, wandb_mode: str | None = None
) -> Report:
    """Analyse a local-engine sweep and write ``SWEEP_DIR/report/``.

    Every file is made in a staging folder first and moved into ``report/`` only once all
    of them are made, so a failure (or Ctrl-C) leaves the previous report as it was.

    Args:
        sweep_dir: the sweep directory (``OUT/NAME``).
        storage: the database URL the sweep used, when its ``sweep.json`` cannot hold it
            (it never stores a password).
        wandb_mode: online / offline / disabled; None resolves it as ``fastmlp train`` does.
    """
    require_report_dependencies()
    sweep, study, config = _open(sweep_dir, storage)
    report = Report(directory=sweep.directory.report)
    rows = trial_rows(study, config)
    header, table = _columns(config, rows)
    complete = [row for row in rows if row.state == "COMPLETE"]
    if complete:
        pick = max if config.goal == "maximize" else min
        report.best = pick(complete, key=lambda row: row.value)
        report.best_config = best_config(config, report.best.params, report.best.blas_threads)
    swept = [name for name in config.parameters if any(name in row.params for row in complete)]
    importances, note, caution = None, "", ""
    if complete and swept:
        importances, note = _importances(study, len(complete))
        caution = importance_caution(len(complete), len(swept))
        report.notes += [text for text in (note, caution) if text]

    with tempfile.TemporaryDirectory(prefix=".report-", dir=sweep.directory.path) as name:
        staging = Path(name)
        files = {"trials_csv": _write_csv(staging / "trials.csv", header, table)}
        markdown = f"# Sweep {config.name}: {len(rows)} trials\n\n" + _markdown(header, table)
        if complete and swept:
            markdown += "\n" + _importance_markdown(config.metric, importances, note, caution)
        files["trials_md"] = atomic_write_text(staging / "trials.md", markdown)
        if report.best_config is not None:
            files["best"] = atomic_write_json(staging / "best.json", report.best_config)
        if complete and swept:
            axes = {
                name: _value_axis(config.parameters[name], [row.values[name] for row in complete])
                for name in swept
            }
            files["parallel_coordinates"] = plots.plot_parallel_coordinates(
                {name: values for name, (values, _) in axes.items()},
                {name: distribution for name, (_, distribution) in axes.items()},
                [row.value for row in complete],
                config.metric,
                config.goal,
                staging / "parallel_coordinates.png",
            )
        timed = [
            row
            for row in rows
            if row.started is not None and row.state in ("COMPLETE", "PRUNED", "FAIL")
        ]
        if timed:
            files["accuracy_vs_time"] = plots.plot_metric_vs_time(
                [row.started for row in timed],
                [
                    row.value if row.value is not None and math.isfinite(row.value) else None
                    for row in timed
                ],
                [row.state for row in timed],
                config.metric,
                config.goal,
                staging / "accuracy_vs_time.png",
            )
        if complete and swept:
            files["importance"] = plots.plot_importance(
                importances,
                correlations(rows),
                config.metric,
                staging / "importance.png",
                note=note,
                caution=caution,
            )
        report.files = _publish(staging, files, report.directory)
    report.wandb_dir = _wandb_log(config, report, header, table, wandb_mode)
    return report
