"""The runs under a folder, one row each: how far each got, its accuracies and settings.

What ``fastmlp runs`` shows. :func:`scan_runs` finds every run directory under a folder
(recursively, so a sweep's trials are found too, never inside a run directory's own
subfolders such as ``wandb/``) and reads it into a :class:`RunRow`, never raising for what a
run directory holds: an unreadable, corrupt, oversized or mistyped ``config.json``,
``summary.json`` or ``metrics.jsonl`` makes the row's status ``"corrupt"``, with the first
problem as its note. The rows can then be sorted (:func:`sort_rows`), shown as a table
(:func:`format_table`) or CSV (:func:`write_csv`), and their validation curves overlaid
(:func:`plot_validation_curves`). Accuracies are fractions in [0, 1], times in seconds.
"""

from __future__ import annotations

import csv
import json
import math
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, TextIO

from fastmlp.errors import UserError, format_bytes, one_line, shown
from fastmlp.runs.config import settings
from fastmlp.runs.experiment import COMPLETE
from fastmlp.runs.figures import new_figure, save_figure
from fastmlp.runs.naming import UNNAMED, format_number
from fastmlp.runs.run_directory import RunDirectory

# The fixed columns, in table order, by the names that summary.json and the CSV give them;
# ``epochs`` sorts by the epochs completed, ``time`` by the seconds. Any setting of
# config.json is a sort key too.
COLUMNS = (
    "name",
    "status",
    "epochs",
    "best_val_accuracy",
    "val_accuracy",
    "test_accuracy",
    "time",
)

# The table's shorter headers of some columns (a sort key too).
HEADERS = {
    "best_val_accuracy": "best_val",
    "val_accuracy": "last_val",
    "test_accuracy": "test",
}

# config.json keys never shown as settings: those that label a run, say how it was tracked
# or where it ran (naming.UNNAMED), not what it trained, and ``epochs`` (its own column).
IGNORED_CONFIG_KEYS = UNNAMED | {"run_name", "environment", "wandb_run_id", "device_used", "epochs"}

# Files larger than these are not a run's (a data file copied in by mistake, a runaway
# writer): the run is listed as corrupt instead of being read into memory.
MAX_JSON_BYTES = 1 << 22
MAX_METRICS_BYTES = 1 << 26

# Cells are cut to these many characters, with an ellipsis (CSV keeps them whole).
MAX_NAME_CHARS = 48
MAX_VALUE_CHARS = 24
MAX_NOTE_CHARS = 60

# Files that make a folder a run directory (config.json missing is then a problem).
_RUN_FILES = (RunDirectory.CONFIG, RunDirectory.SUMMARY, RunDirectory.METRICS)

_MISSING = "-"


def _is_real(value: Any) -> bool:
    """A number a float can hold, not NaN (an integer of hundreds of digits is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return not math.isnan(float(value))
    except OverflowError:
        return False


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_accuracy(value: Any) -> bool:
    return _is_real(value) and 0 <= value <= 1


def _is_seconds(value: Any) -> bool:
    return _is_real(value) and 0 <= value < math.inf


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


# The summary.json values a row uses, and what each must be when present.
_SUMMARY_FIELDS: tuple[tuple[str, Callable[[Any], bool]], ...] = (
    ("status", _is_text),
    ("epochs_completed", _is_count),
    ("best_val_accuracy", _is_accuracy),
    ("best_epoch", _is_count),
    ("best_epoch_val_accuracy", _is_accuracy),
    ("val_accuracy", _is_accuracy),
    ("test_accuracy", _is_accuracy),
    ("train_seconds", _is_seconds),
    ("resumed_from_epoch", _is_count),
)


@dataclass(frozen=True)
class RunRow:
    """One run directory as the table shows it; None where a value is not known.

    ``name`` is its path under the folder listed (POSIX form). ``status`` is the
    summary's ("finished", "diverged", "interrupted", "pruned", "failed", ...), else
    "running" (a live process holds the run's lock) or "incomplete"; "corrupt" when one of
    its files cannot be read, ``note`` then saying why (otherwise the summary's error or
    stop reason, if any). ``epochs`` is the number asked for, ``best_epoch`` the first
    epoch that reached ``best_val_accuracy``, ``val_accuracy`` the last epoch's.
    ``seconds`` is the summary's ``train_seconds``, or the sum of the epochs' ``seconds``
    when there is no summary of the whole run (none yet, running again, or resumed:
    ``train_seconds`` then counts the last session only).
    ``val_curve`` holds (epoch, validation accuracy) pairs, in epoch order.
    """

    name: str
    status: str
    note: str = ""
    epochs_completed: int | None = None
    epochs: int | None = None
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    seconds: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    val_curve: list[tuple[int, float]] = field(default_factory=list)

    def value(self, key: str) -> Any:
        """The value the column or setting ``key`` sorts by (None when missing)."""
        fixed = {
            "name": self.name,
            "status": self.status,
            "epochs": self.epochs_completed,
            "best_val_accuracy": self.best_val_accuracy,
            "val_accuracy": self.val_accuracy,
            "test_accuracy": self.test_accuracy,
            "time": self.seconds,
        }
        return fixed[key] if key in fixed else self.settings.get(key)


# -------------------------------------------------------------------- finding runs


def find_run_directories(root: str | PathLike[str]) -> list[Path]:
    """Every run directory at or under ``root``, in path order: a folder holding
    config.json, summary.json or metrics.jsonl. Run directories are not searched further;
    hidden folders (``.git``) and symbolic links are not followed; unreadable subfolders are
    skipped (an unreadable ``root`` is an OSError)."""
    root = Path(root)

    def fail_at_root(error: OSError) -> None:
        if Path(error.filename) == root:
            raise error

    found = []
    for folder, subfolders, files in os.walk(root, onerror=fail_at_root):
        if any(name in files or name in subfolders for name in _RUN_FILES):
            found.append(Path(folder))
            subfolders.clear()
        else:
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
    return sorted(found)


def scan_runs(root: str | PathLike[str]) -> list[RunRow]:
    """A row for every run directory under ``root`` (see :func:`find_run_directories`)."""
    root = Path(root)
    return [read_run(path, root) for path in find_run_directories(root)]


def read_run(path: str | PathLike[str], root: str | PathLike[str]) -> RunRow:
    """The row of the run directory ``path``, named by its path relative to ``root``.

    Never raises for the run's files: each problem is recorded and the first one makes the
    status "corrupt". A run whose summary is not one of the complete statuses has its lock
    tested (taken and released at once if free) to tell "running" from "incomplete".
    """
    run_dir = RunDirectory(path)
    relative = run_dir.path.relative_to(root).as_posix()
    problems: list[str] = []
    config = _read_file(
        run_dir, RunDirectory.CONFIG, run_dir.read_config, MAX_JSON_BYTES, problems, required=True
    )
    summary = _read_file(
        run_dir, RunDirectory.SUMMARY, run_dir.read_summary, MAX_JSON_BYTES, problems
    )
    # a torn last line, which a kill leaves and a resume repairs, is no problem
    rows = _read_file(
        run_dir, RunDirectory.METRICS, run_dir.read_metrics, MAX_METRICS_BYTES, problems
    )
    config, summary, rows = config or {}, summary or {}, rows or []
    values = {
        key: _checked(summary, key, RunDirectory.SUMMARY, valid, problems)
        for key, valid in _SUMMARY_FIELDS
    }
    if summary and values["status"] is None:
        problems.append(f"{RunDirectory.SUMMARY} has no status")
    epochs = _checked(config, "epochs", RunDirectory.CONFIG, _is_count, problems)
    curve = _validation_curve(rows, problems)
    epoch_seconds = _epoch_seconds(rows, problems)

    status, note = _status(run_dir, values["status"], problems)
    if status == "running":
        values = dict.fromkeys(values)  # the summary there is a previous session's
    reason = summary.get("error") or summary.get("stop_reason")
    if not note and status != "running" and isinstance(reason, str):
        note = reason
    best = values["best_val_accuracy"]
    if best is None and curve:
        best = max(accuracy for _, accuracy in curve)
    seconds = values["train_seconds"]
    if seconds is None or values["resumed_from_epoch"]:
        seconds = epoch_seconds
    return RunRow(
        name=relative if relative != "." else run_dir.path.resolve().name,
        status=status,
        note=note,
        epochs_completed=_first_known(
            values["epochs_completed"], rows[-1]["epoch"] if rows else None
        ),
        epochs=epochs,
        best_val_accuracy=best,
        best_epoch=_best_epoch(
            best, curve, values["best_epoch"], values["best_epoch_val_accuracy"]
        ),
        val_accuracy=_first_known(values["val_accuracy"], curve[-1][1] if curve else None),
        test_accuracy=values["test_accuracy"],
        seconds=seconds,
        settings={key: value for key, value in config.items() if key not in IGNORED_CONFIG_KEYS},
        val_curve=curve,
    )


def _status(
    run_dir: RunDirectory, summary_status: str | None, problems: list[str]
) -> tuple[str, str]:
    """The row's status and note: "corrupt" and the first problem; a complete summary's
    status; "running" when another process holds the lock; else the summary's status or
    "incomplete"."""
    if problems:
        return "corrupt", problems[0]
    if summary_status in COMPLETE:
        return summary_status, ""
    try:
        if run_dir.is_locked():
            return "running", ""
    except OSError as error:
        return summary_status or "incomplete", f"cannot test its lock ({error.strerror or error})"
    return summary_status or "incomplete", ""


def _read_file(
    run_dir: RunDirectory,
    name: str,
    read: Callable[[], Any],
    limit: int,
    problems: list[str],
    required: bool = False,
) -> Any:
    """What ``read`` makes of the run's file ``name`` (a RunDirectory reader), or None
    with the problem recorded: unreadable, not a regular file, over ``limit`` bytes,
    corrupt, or absent when ``required``."""
    path = run_dir.file(name)
    if not os.path.lexists(path):
        if required:
            problems.append(f"no {name}")
        return None
    problem = _file_problem(path, limit)
    if problem is None:
        try:
            return read()
        except UserError as error:
            problem = _without_folder(one_line(error), run_dir)
    problems.append(problem)
    return None


def _file_problem(path: Path, limit: int) -> str | None:
    """Why ``path`` cannot be read as a run's file (not a regular file, over ``limit``
    bytes), or None."""
    try:
        info = path.stat()
    except OSError as error:
        return f"cannot read {path.name} ({error.strerror or one_line(error)})"
    if not stat.S_ISREG(info.st_mode):
        return f"{path.name} is not a regular file"
    if info.st_size > limit:
        return f"{path.name} is too large to be a run's ({format_bytes(info.st_size)})"
    return None


def _without_folder(message: str, run_dir: RunDirectory) -> str:
    """A RunDirectory error message with the run's folder left out of its file names."""
    return message.replace(f"{run_dir.path}{os.sep}", "")


def _checked(
    data: dict[str, Any],
    key: str,
    file_name: str,
    valid: Callable[[Any], bool],
    problems: list[str],
) -> Any:
    """``data[key]`` if valid, None if absent or null; a recorded problem otherwise."""
    value = data.get(key)
    if value is None or valid(value):
        return value
    problems.append(f"{file_name}: {key} is {shown(value)}")
    return None


def _validation_curve(rows: list[dict[str, Any]], problems: list[str]) -> list[tuple[int, float]]:
    """(epoch, val_accuracy) of the rows that measured it; [] with a problem on a bad one."""
    curve = []
    for row in rows:
        accuracy = row.get("val_accuracy")
        if accuracy is None:
            continue
        if not _is_accuracy(accuracy):
            problems.append(
                f"{RunDirectory.METRICS} epoch {row['epoch']}: val_accuracy is {shown(accuracy)}"
            )
            return []
        curve.append((row["epoch"], float(accuracy)))
    return curve


def _epoch_seconds(rows: list[dict[str, Any]], problems: list[str]) -> float | None:
    """The sum of the rows' ``seconds`` (None without rows or on a bad value)."""
    total = 0.0
    for row in rows:
        seconds = row.get("seconds")
        if seconds is not None and not _is_seconds(seconds):
            problems.append(
                f"{RunDirectory.METRICS} epoch {row['epoch']}: seconds is {shown(seconds)}"
            )
            return None
        total += seconds or 0.0
    return total if rows else None


def _best_epoch(
    best: float | None,
    curve: list[tuple[int, float]],
    summary_epoch: int | None,
    summary_epoch_accuracy: float | None,
) -> int | None:
    """The first epoch of the curve reaching ``best``; else the summary's best_epoch when
    its accuracy is ``best`` (it may name the epoch chosen by another measure)."""
    for epoch, accuracy in curve:
        if accuracy == best:
            return epoch
    if summary_epoch_accuracy is None or summary_epoch_accuracy == best:
        return summary_epoch
    return None


def _first_known(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


# ------------------------------------------------------------------------ sorting


def sort_keys(rows: Sequence[RunRow]) -> list[str]:
    """What the rows can be sorted by: the columns, then every setting some row has (a
    column's table header, :data:`HEADERS`, stands for it too)."""
    found = {key for row in rows for key in row.settings}
    return [*COLUMNS, *_in_setting_order(found)]


def column_key(name: str) -> str:
    """The column a table header names (``best_val`` -> ``best_val_accuracy``), else
    ``name`` itself."""
    return next((key for key, header in HEADERS.items() if header == name), name)


def sort_rows(rows: Sequence[RunRow], key: str, ascending: bool = False) -> list[RunRow]:
    """The rows ordered by ``key`` (see :func:`sort_keys`): numbers (and lists of numbers)
    largest first unless ``ascending``, text A to Z; rows missing the value last, ties in
    name order."""
    by_name = sorted(rows, key=lambda row: (row.name.casefold(), row.name))
    present = [row for row in by_name if row.value(key) is not None]
    missing = [row for row in by_name if row.value(key) is None]
    if all(_numbers(row.value(key)) is not None for row in present):
        present.sort(key=lambda row: _numbers(row.value(key)), reverse=not ascending)
    else:
        present.sort(key=lambda row: _text(row.value(key)).casefold())
    return present + missing


def _numbers(value: Any) -> tuple[float, ...] | None:
    """A number or a list of numbers as a tuple that orders them, else None."""
    if _is_real(value):
        return (float(value),)
    if isinstance(value, list) and value and all(_is_real(item) for item in value):
        return tuple(float(item) for item in value)
    return None


# ------------------------------------------------------------------------ showing


def differing_settings(rows: Sequence[RunRow]) -> list[str]:
    """The settings whose values are not the same in every row that has a readable
    config.json (absent counts as a value), in the order of ``fastmlp train --help``."""
    configs = [row.settings for row in rows if row.settings]
    keys = {key for config in configs for key in config}
    differing = {
        key
        for key in keys
        if len({json.dumps(config.get(key), sort_keys=True) for config in configs}) > 1
    }
    return _in_setting_order(differing)


def _in_setting_order(keys: set[str]) -> list[str]:
    """``keys`` in the order of the run settings, unknown ones after them, alphabetically."""
    known = [name for name in settings() if name in keys]
    return known + sorted(keys - set(known))


def format_table(rows: Sequence[RunRow]) -> str:
    """The rows as an aligned text table: the columns, the differing settings, and a note
    column when some row has a note. Numbers are right-aligned, long cells cut."""
    setting_keys = differing_settings(rows)
    header = [
        *(HEADERS.get(key, key) for key in COLUMNS),
        *(_cut(key, MAX_VALUE_CHARS) for key in setting_keys),
    ]
    body = [[_cell(row, key) for key in COLUMNS] for row in rows]
    for line, row in zip(body, rows, strict=True):
        line += [_cut(_text(row.settings.get(key)), MAX_VALUE_CHARS) for key in setting_keys]
    right = [key not in ("name", "status") for key in COLUMNS] + [
        all(_numbers(row.settings.get(key)) is not None for row in rows if key in row.settings)
        for key in setting_keys
    ]
    if any(row.note for row in rows):
        header.append("note")
        right.append(False)
        for line, row in zip(body, rows, strict=True):
            line.append(_cut(row.note, MAX_NOTE_CHARS))
    lines = [[_printable(cell) for cell in line] for line in [header, *body]]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.rjust(width) if align_right else cell.ljust(width)
            for cell, width, align_right in zip(line, widths, right, strict=True)
        ).rstrip()
        for line in lines
    )


def _cell(row: RunRow, key: str) -> str:
    """The text of a fixed column: accuracies to 4 decimals, the best one with its epoch."""
    if key == "name":
        return _cut_middle(row.name, MAX_NAME_CHARS)
    if key == "status":
        return row.status
    if key == "epochs":
        if row.epochs_completed is None:
            return _MISSING
        return f"{row.epochs_completed}/{_MISSING if row.epochs is None else row.epochs}"
    if key == "time":
        return _MISSING if row.seconds is None else format_duration(row.seconds)
    accuracy = row.value(key)
    if accuracy is None:
        return _MISSING
    at = f" @{row.best_epoch}" if key == "best_val_accuracy" and row.best_epoch else ""
    return f"{accuracy:.4f}{at}"


def format_duration(seconds: float) -> str:
    """``42.1s``, ``3m07s``, ``2h05m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m{int(seconds % 60):02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _text(value: Any) -> str:
    """A setting's value as the table shows it: 1e-3, 256,128, true, -."""
    if value is None:
        return _MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_number(value) if math.isfinite(value) else str(value)
    if isinstance(value, list) and all(_is_real(item) for item in value):
        return ",".join(_text(item) for item in value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cut_middle(text: str, limit: int) -> str:
    """``text`` with its middle replaced by an ellipsis when longer than ``limit`` (a
    sweep's name and a trial's number both stay)."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]


def _printable(text: str) -> str:
    """``text`` with control characters (a newline or escape sequence in a folder name or
    a file's string) shown as ``?``, so that they cannot break the table or the terminal."""
    return "".join(char if char.isprintable() else "?" for char in text)


def write_csv(rows: Sequence[RunRow], stream: TextIO) -> None:
    """The rows as CSV with a header: whole names, epochs completed and asked, unrounded
    accuracies, ``best_epoch``, ``seconds``, the differing settings (lists and objects as
    JSON) and the note; missing values empty."""
    setting_keys = differing_settings(rows)
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(
        [
            "name",
            "status",
            "epochs_completed",
            "epochs",
            "best_val_accuracy",
            "best_epoch",
            "val_accuracy",
            "test_accuracy",
            "seconds",
            *setting_keys,
            "note",
        ]
    )
    for row in rows:
        writer.writerow(
            [
                row.name,
                row.status,
                row.epochs_completed,
                row.epochs,
                row.best_val_accuracy,
                row.best_epoch,
                row.val_accuracy,
                row.test_accuracy,
                row.seconds,
                *(_csv_value(row.settings.get(key)) for key in setting_keys),
                row.note,
            ]
        )


def _csv_value(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict, bool)) else value


# ------------------------------------------------------------------------ plotting

# Line styles cycled through once the colour cycle (10 colours) is used up.
_LINE_STYLES = ("-", "--", ":", "-.")


def plot_validation_curves(rows: Sequence[RunRow], path: str | PathLike[str], title: str) -> Path:
    """Overlay the validation accuracy of every row that has one against epoch, one line
    per run, labelled by its name, as a PNG written atomically.

    Raises:
        ValueError: no row has a validation curve.
        MissingDependencyError: matplotlib is not installed.
    """
    curves = [row for row in rows if row.val_curve]
    if not curves:
        raise ValueError("no run has a validation accuracy to plot")
    figure = new_figure(10, 5.5)
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    ax = figure.subplots()
    marker = "o" if max(len(row.val_curve) for row in curves) <= 30 else None
    for index, row in enumerate(curves):
        epochs, accuracies = zip(*row.val_curve)
        ax.plot(
            epochs,
            accuracies,
            _LINE_STYLES[index // 10 % len(_LINE_STYLES)],
            marker=marker,
            markersize=3,
            label=_printable(_cut_middle(row.name, MAX_NAME_CHARS)),
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return save_figure(figure, path)
