"""``fastmlp runs [DIR]``: a table of every run under a folder, as text, CSV or a plot."""

from __future__ import annotations

import argparse
import difflib
import shlex
import sys
from pathlib import Path

from fastmlp.cli.parsing import UsageError, positive_int
from fastmlp.runs.runs_table import (
    HEADERS,
    RunRow,
    column_key,
    format_table,
    plot_validation_curves,
    scan_runs,
    sort_keys,
    sort_rows,
    write_csv,
)

DESCRIPTION = (
    "List every run directory under DIR (sweep trials too): status, epochs completed of "
    "those asked, best validation accuracy and its epoch, last validation and test "
    "accuracy, training time, and the settings that differ between the runs listed. A run "
    "without summary.json is running (its lock is held) or incomplete; one whose files "
    "cannot be read is listed as corrupt, with the reason."
)

DEFAULT_DIR = "runs"
DEFAULT_SORT = "best_val_accuracy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir",
        nargs="?",
        default=DEFAULT_DIR,
        metavar="DIR",
        help=f"the folder holding the runs (default: {DEFAULT_DIR})",
    )
    parser.add_argument(
        "--sort",
        default=DEFAULT_SORT,
        metavar="KEY",
        help="a column (name, status, epochs, best_val_accuracy or best_val, val_accuracy "
        "or last_val, test_accuracy or test, time) or a setting (learning_rate, ...); "
        "numbers largest first, "
        f"text A to Z, missing values last (default: {DEFAULT_SORT})",
    )
    parser.add_argument(
        "--ascending", action="store_true", help="numbers smallest first (text is always A to Z)"
    )
    parser.add_argument(
        "--limit", type=positive_int, metavar="N", help="list only the first N runs"
    )
    parser.add_argument(
        "--csv", action="store_true", help="write CSV to stdout instead of the table"
    )
    parser.add_argument(
        "--plot",
        metavar="PATH.png",
        help="also overlay the listed runs' validation accuracy curves in one figure "
        '(needs pip install "fastmlp[plot]")',
    )


def run(args: argparse.Namespace) -> int:
    """Execute ``fastmlp runs``; returns the exit status."""
    root = Path(args.dir)
    plot = Path(args.plot) if args.plot else None
    if plot is not None and (plot.suffix.lower() != ".png" or plot.is_dir()):
        raise UsageError(f"--plot {plot}: give the path of a .png file to write")
    create = "fastmlp train" + (
        "" if args.dir == DEFAULT_DIR else f" --out {shlex.quote(args.dir)}"
    )
    if not root.exists():
        raise UsageError(f"no runs found under {root}: it does not exist (start one: {create})")
    if not root.is_dir():
        raise UsageError(f"{root} is a file; give the folder that holds the run directories")
    messages = sys.stderr if args.csv else sys.stdout
    rows = scan_runs(root)
    if not rows:
        print(f"no runs found under {root} (start one: {create})", file=messages)
        return 0
    key = _sort_key(args.sort, rows)
    listed = sort_rows(rows, key, ascending=args.ascending)[: args.limit]
    if plot is not None:
        curves = [row for row in listed if row.val_curve]
        if not curves:
            raise UsageError("none of the listed runs has a validation accuracy to plot")
        plot_validation_curves(curves, plot, f"Validation accuracy of the runs under {root}")
    if args.csv:
        write_csv(listed, sys.stdout)
    else:
        print(format_table(listed))
    if len(listed) < len(rows):
        print(f"({len(listed)} of {len(rows)} runs shown: --limit {args.limit})", file=messages)
    if plot is not None:
        print(f"saved {plot}", file=messages)
    return 0


def _sort_key(name: str, rows: list[RunRow]) -> str:
    """The column or setting ``name`` (or the column whose header it is); a UsageError
    naming the choices and close matches when there is none."""
    known = sort_keys(rows)
    key = column_key(name)
    if key in known:
        return key
    close = difflib.get_close_matches(name, [*known, *HEADERS.values()], n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UsageError(
        f"--sort {name}: no such column or setting{hint}; choose one of: {', '.join(known)}"
    )
