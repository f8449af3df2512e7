"""``fastmlp sweep CONFIG.yaml`` runs a hyperparameter sweep; ``fastmlp sweep report DIR``
writes its analysis; ``fastmlp sweep dashboard DIR`` serves it live in a browser."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fastmlp.cli.parsing import UsageError, positive_int, wandb_mode_option
from fastmlp.errors import one_line
from fastmlp.interrupts import exit_status

DESCRIPTION = (
    "Run a hyperparameter sweep from a W&B sweep config (method grid/random/bayes, metric, "
    "parameters, early_terminate hyperband), locally with Optuna (default) or as a W&B sweep. "
    "Every trial is a normal run in OUT/NAME/runs/. Running the same command again continues "
    "the sweep. `fastmlp sweep report OUT/NAME` writes the best config, a table of all trials "
    "and plots to OUT/NAME/report/; `fastmlp sweep dashboard OUT/NAME` serves the sweep live "
    'in optuna-dashboard. Needs pip install "fastmlp[sweep]".'
)

# Options that only apply to running a sweep, not to `fastmlp sweep report`.
RUN_OPTIONS = (
    "count",
    "workers",
    "workers_per_gpu",
    "stack",
    "engine",
    "name",
    "out",
    "data_dir",
    "device",
    "dry_run",
    "param_map",
)
# Options that only apply to `fastmlp sweep dashboard`.
DASHBOARD_OPTIONS = ("port", "host")


def port_number(value: str) -> int:
    """An argparse ``type``: a TCP port, 0 (any free port) to 65535."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {value}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "%(prog)s CONFIG.yaml [--count N] [--workers K] [--engine {local,wandb}] [--storage URL]\n"
        "                     [--name NAME] [--out DIR] [--data_dir DIR] [--wandb_mode MODE]\n"
        "                     [--device DEVICE] [--workers_per_gpu M] [--stack K]\n"
        "                     [--param_map OLD=NEW ...] [--dry_run]\n"
        "       %(prog)s report SWEEP_DIR [--storage URL] [--wandb_mode MODE]\n"
        "       %(prog)s dashboard SWEEP_DIR [--port P] [--host HOST] [--storage URL]"
    )
    parser.add_argument(
        "config",
        metavar="CONFIG.yaml",
        help="the sweep config (or the word report or dashboard, then SWEEP_DIR)",
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
        help="processes running trials side by side on this machine (default: 1; on GPUs: "
        "the GPUs x --workers_per_gpu)",
    )
    parser.add_argument(
        "--workers_per_gpu",
        "--workers-per-gpu",
        type=positive_int,
        metavar="M",
        help="with --device cuda (or auto on a GPU machine): workers sharing each GPU; the "
        "workers go round-robin over the visible GPUs (default: 1)",
    )
    parser.add_argument(
        "--stack",
        type=positive_int,
        metavar="K",
        help="train up to K trials that differ only in optimizer hyperparameters, "
        "weight_decay and dropout as one stack of models (each trial keeps its own run, "
        "metrics and pruning); companions share the first trial's other swept values "
        "(default: 1, every trial alone)",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "wandb"),
        help="local (Optuna, default) or wandb (a W&B sweep)",
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="a database URL (postgresql://user:pass@host/db, which needs "
        'pip install "fastmlp[postgres]"; any Optuna RDB URL) or a journal file on a shared '
        "disk, so workers on several machines share one sweep (default: OUT/NAME/study.journal)",
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
        help="where trials train (default: the config's, else auto); cuda spreads the "
        "workers over the visible GPUs, cuda:N puts them all on GPU N",
    )
    parser.add_argument(
        "--param_map",
        "--param-map",
        action="append",
        metavar="OLD=NEW",
        help="read the config's parameter (or command flag) OLD as the fastmlp setting NEW, "
        "e.g. alpha=weight_decay; OLD= drops it; repeatable (names fastmlp knows need none: "
        "see --dry_run)",
    )
    parser.add_argument(
        "--dry_run",
        "--dry-run",
        action="store_const",
        const=True,
        help="print how the config is understood (engine, sampler, pruner, every parameter "
        "with its setting and distribution, constants, what is ignored, the trials) and exit; "
        "trains, creates and writes nothing",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        metavar="P",
        help="fastmlp sweep dashboard: the port to serve on (default: 8080; 0 or a busy port: "
        "a free one)",
    )
    parser.add_argument(
        "--host",
        metavar="HOST",
        help="fastmlp sweep dashboard: the address to listen on (default: 127.0.0.1, this "
        "machine only; 0.0.0.0: every interface)",
    )


def _report(args: argparse.Namespace) -> int:
    from fastmlp.sweep import write_report

    given = [
        f"--{option}"
        for option in (*RUN_OPTIONS, *DASHBOARD_OPTIONS)
        if getattr(args, option) is not None
    ]
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
    for note in report.notes:
        print(f"note: {note}")
    for path in report.files.values():
        print(f"wrote {path}")
    if report.wandb_dir:
        print(f"W&B run: {report.wandb_dir}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from fastmlp.sweep.dashboard import DEFAULT_HOST, DEFAULT_PORT, serve_dashboard

    usage = "usage: fastmlp sweep dashboard SWEEP_DIR [--port P] [--host HOST] [--storage URL]"
    if args.sweep_dir is None:
        raise UsageError(usage)
    given = [
        f"--{option}"
        for option in (*RUN_OPTIONS, "wandb_mode")
        if getattr(args, option) is not None
    ]
    if given:
        raise UsageError(
            "fastmlp sweep dashboard takes only --port, --host and --storage "
            f"(got {', '.join(given)})"
        )
    try:
        serve_dashboard(
            args.sweep_dir,
            storage=args.storage,
            host=DEFAULT_HOST if args.host is None else args.host,
            port=DEFAULT_PORT if args.port is None else args.port,
        )
    except KeyboardInterrupt as interrupt:  # Ctrl-C, SIGTERM or SIGHUP: the way to stop it
        print("dashboard stopped", file=sys.stderr)
        return exit_status(interrupt)
    return 0


def run(args: argparse.Namespace) -> int:
    """Execute ``fastmlp sweep``; returns the exit status."""
    if args.config == "report":
        return _report(args)
    if args.config == "dashboard":
        return _dashboard(args)
    if args.sweep_dir is not None:
        raise UsageError(
            f"unexpected argument {args.sweep_dir!r} (did you mean fastmlp sweep report?)"
        )
    given = [f"--{option}" for option in DASHBOARD_OPTIONS if getattr(args, option) is not None]
    if given:
        raise UsageError(f"{', '.join(given)}: only for fastmlp sweep dashboard SWEEP_DIR")
    from fastmlp.sweep import read_sweep_config, run_local_sweep, run_wandb_sweep

    config = read_sweep_config(args.config, name=args.name, param_map=args.param_map)
    if args.engine == "wandb":
        if args.storage:
            raise UsageError("--storage is for --engine local; W&B keeps its sweeps itself")
        if args.workers_per_gpu:
            raise UsageError("--workers_per_gpu is for --engine local")
        if args.stack and args.stack > 1:
            raise UsageError("--stack is for --engine local: W&B's agent runs one trial at a time")
    if args.dry_run:  # its text includes the warnings
        from fastmlp.sweep.dry_run import describe

        places = _checked_places(args, config)
        print(
            describe(
                config,
                path=args.config,
                engine=args.engine or "local",
                count=args.count,
                out=args.out or "sweeps",
                storage=args.storage,
                stack=args.stack or 1,
            )
        )
        for index, place in enumerate(places):
            if place.where:
                print(f"worker {index}: {place.where}")
        return 0
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    common = dict(
        out=args.out or "sweeps",
        count=args.count,
        workers=args.workers,
        data_dir=args.data_dir,
        wandb_mode=args.wandb_mode,
        device=args.device,
    )
    if args.engine == "wandb":
        sweep_id = run_wandb_sweep(config, **{**common, "workers": args.workers or 1})
        print(f"W&B sweep {sweep_id}: runs in {common['out']}/{config.name}/runs")
        return 0
    try:
        summary = run_local_sweep(
            config,
            storage=args.storage,
            workers_per_gpu=args.workers_per_gpu,
            stack=args.stack or 1,
            **common,
        )
    except KeyboardInterrupt as interrupt:  # Ctrl-C, SIGTERM or SIGHUP (see fastmlp.interrupts)
        print(
            "interrupted: finished trials are saved; run the same command to continue "
            "(unfinished trials go on from their last epoch)",
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


def _checked_places(args: argparse.Namespace, config: Any) -> list[Any]:
    """What a real sweep checks before it creates anything, for ``--dry_run``: the device,
    where the workers would run, and that a ``--storage`` URL names a known database (it is
    not connected to); the workers' places."""
    from fastmlp.sweep.local import check_device
    from fastmlp.sweep.placement import plan_workers

    if args.storage and "://" in args.storage:
        import sqlalchemy
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        from fastmlp.sweep.study import database_url

        try:
            sqlalchemy.engine.make_url(database_url(args.storage)).get_dialect()
        except (ArgumentError, NoSuchModuleError, ValueError) as error:
            raise UsageError(f"cannot use --storage {args.storage}: {one_line(error)}") from None
    if args.engine == "wandb":
        return []
    check_device(args.device, config)
    return plan_workers(config, args.device, args.workers, args.workers_per_gpu)
