"""``fastmlp sweep CONFIG.yaml`` runs a hyperparameter sweep; ``fastmlp sweep report DIR``
writes its analysis."""

from __future__ import annotations

import argparse
import sys

from fastmlp.cli.parsing import UsageError, positive_int, wandb_mode_option
from fastmlp.interrupts import exit_status

DESCRIPTION = (
    "Run a hyperparameter sweep from a W&B sweep config (method grid/random/bayes, metric, "
    "parameters, early_terminate hyperband), locally with Optuna (default) or as a W&B sweep. "
    "Every trial is a normal run in OUT/NAME/runs/. Running the same command again continues "
    "the sweep. `fastmlp sweep report OUT/NAME` writes the best config, a table of all trials "
    'and plots to OUT/NAME/report/. Needs pip install "fastmlp[sweep]".'
)

# Options that only apply to running a sweep, not to `fastmlp sweep report`.
RUN_OPTIONS = ("count", "workers", "engine", "name", "out", "data_dir", "device")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "%(prog)s CONFIG.yaml [--count N] [--workers K] [--engine {local,wandb}] [--storage URL]\n"
        "                     [--name NAME] [--out DIR] [--data_dir DIR] [--wandb_mode MODE]\n"
        "                     [--device DEVICE]\n"
        "       %(prog)s report SWEEP_DIR [--storage URL] [--wandb_mode MODE]"
    )
    parser.add_argument(
        "config",
        metavar="CONFIG.yaml",
        help="the sweep config (or the word report, then SWEEP_DIR)",
    )
    parser.add_argument("sweep_dir", nargs="?", metavar="SWEEP_DIR", help=argparse.SUPPRESS)
    parser.add_argument(
        "--count",
        type=positive_int,
        metavar="N",
        help="the sweep's total number of trials (default: run_cap, else the grid size); "
        "with --engine wandb: the trials this command runs",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        metavar="K",
        help="processes running trials side by side on this machine (default: 1)",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "wandb"),
        help="local (Optuna, default) or wandb (a W&B sweep)",
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="a database URL (postgresql://user:pass@host/db, any Optuna RDB URL) or a journal "
        "file on a shared disk, so workers on several machines share one sweep "
        "(default: OUT/NAME/study.journal)",
    )
    parser.add_argument(
        "--name", help="the sweep's name (default: name in the config, else its file name)"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="parent of sweep directories (default: sweeps)"
    )
    parser.add_argument("--data_dir", metavar="DIR", help="look for the dataset files here first")
    parser.add_argument(
        "--wandb_mode",
        "--wandb-mode",
        type=wandb_mode_option,
        metavar="{online,offline,disabled}",
        help="W&B mode of the trials and the report "
        "(default: $WANDB_MODE, else online if logged in, else offline)",
    )
    parser.add_argument(
        "--device",
        metavar="{cpu,cuda,auto}",
        help="where trials train (default: the config's, else auto)",
    )


def _report(args: argparse.Namespace) -> int:
    from fastmlp.sweep import write_report

    given = [f"--{option}" for option in RUN_OPTIONS if getattr(args, option) is not None]
    if args.sweep_dir is None:
        raise UsageError(
            "usage: fastmlp sweep report SWEEP_DIR [--storage URL] [--wandb_mode MODE]"
        )
    if given:
        raise UsageError(
            f"fastmlp sweep report takes only --storage and --wandb_mode (got {', '.join(given)})"
        )
    report = write_report(args.sweep_dir, storage=args.storage, wandb_mode=args.wandb_mode)
    if report.best is not None:
        best = report.best
        print(f"best {best.value:.4f} (trial {best.number}, {best.run_dir})")
        print(f"train it again: fastmlp train --config {report.files['best']}")
    else:
        print("no trial has completed yet")
    for path in report.files.values():
        print(f"wrote {path}")
    if report.wandb_dir:
        print(f"W&B run: {report.wandb_dir}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Execute ``fastmlp sweep``; returns the exit status."""
    if args.config == "report":
        return _report(args)
    if args.sweep_dir is not None:
        raise UsageError(
            f"unexpected argument {args.sweep_dir!r} (did you mean fastmlp sweep report?)"
        )
    from fastmlp.sweep import read_sweep_config, run_local_sweep, run_wandb_sweep

    config = read_sweep_config(args.config, name=args.name)
    common = dict(
        out=args.out or "sweeps",
        count=args.count,
        workers=args.workers or 1,
        data_dir=args.data_dir,
        wandb_mode=args.wandb_mode,
        device=args.device,
    )
    if args.engine == "wandb":
        if args.storage:
            raise UsageError("--storage is for --engine local; W&B keeps its sweeps itself")
        sweep_id = run_wandb_sweep(config, **common)
        print(f"W&B sweep {sweep_id}: runs in {common['out']}/{config.name}/runs")
        return 0
    try:
        summary = run_local_sweep(config, storage=args.storage, **common)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, SIGTERM or SIGHUP (see fastmlp.interrupts)
        print(
            "interrupted: finished trials are saved; run the same command to continue",
            file=sys.stderr,
        )
        return exit_status(interrupt)
    print(
        f"sweep {config.name}: {summary.progress.counted} of {summary.count} trials "
        f"({summary.progress.describe()})"
    )
    if summary.best_number is not None:
        print(
            f"best {config.metric} {summary.best_value:.4f}: trial {summary.best_number}, "
            f"{summary.directory.path / summary.best_run_dir}"
        )
    print(f"analyse it: fastmlp sweep report {summary.directory.path}")
    return 0
