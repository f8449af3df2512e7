"""``fastmlp report``: run what the assignment's report needs and write it as a web page."""

from __future__ import annotations

import argparse
import shlex
import sys

from fastmlp.cli.parsing import choice, wandb_mode_option
from fastmlp.interrupts import exit_status
from fastmlp.report.budgets import BUDGETS

DESCRIPTION = (
    "Answer the assignment's ten questions (Q1-Q10) from one command: run the sweep, the "
    "optimizer comparison, cross-entropy against squared error and the MNIST runs that are "
    "missing (finished runs are reused, an interrupted report continues), then write "
    "OUT/index.html (one self-contained page), OUT/report.md with its figures, and "
    "OUT/report.json with the key numbers. Budgets: "
    + "; ".join(f"{name}: {budget.summary}" for name, budget in BUDGETS.entries.items())
    + "."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--budget",
        type=choice(BUDGETS.canonical, "budget"),
        default="quick",
        metavar="{" + ",".join(BUDGETS.names()) + "}",
        help="how much to train (default: quick)",
    )
    parser.add_argument(
        "--out", default="report", metavar="DIR", help="the report's folder (default: report)"
    )
    parser.add_argument(
        "--sweep",
        metavar="SWEEP_DIR",
        help="report on this finished local sweep (fastmlp sweep's OUT/NAME) instead of "
        "running the budget's",
    )
    parser.add_argument("--data_dir", metavar="DIR", help="look for Fashion-MNIST here first")
    parser.add_argument(
        "--mnist_dir",
        metavar="DIR",
        help="the folder with the four MNIST files, for Q10 (default: the usual search, "
        "then a download; without them Q10 says how to add them later)",
    )
    parser.add_argument(
        "--wandb_mode",
        "--wandb-mode",
        type=wandb_mode_option,
        metavar="{online,offline,disabled}",
        help="W&B mode of every run (default: $WANDB_MODE, else online if logged in, else offline)",
    )
    parser.add_argument(
        "--wandb_report",
        action="store_true",
        help="also create a W&B Report with the same sections (needs wandb online and "
        'pip install "fastmlp[report]")',
    )
    parser.add_argument(
        "-wp", "--wandb_project", default="fastmlp", help="W&B project (default: fastmlp)"
    )
    parser.add_argument("-we", "--wandb_entity", help="W&B entity")
    parser.add_argument("--device", help="cpu, numpy, numba, cuda, cuda:N or auto (default: auto)")


def run(args: argparse.Namespace) -> int:
    """Execute ``fastmlp report``; returns the exit status."""
    from fastmlp.report import make_report

    command = "fastmlp report " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["report"] else None
    try:
        result = make_report(
            BUDGETS.get(args.budget),
            out=args.out,
            sweep_dir=args.sweep,
            data_dir=args.data_dir,
            mnist_dir=args.mnist_dir,
            wandb_mode=args.wandb_mode,
            device=args.device,
            command=command,
            wandb_report=args.wandb_report,
            wandb_project=args.wandb_project,
            wandb_entity=args.wandb_entity,
        )
    except KeyboardInterrupt as interrupt:
        print(
            "interrupted: finished runs are kept; run the same command to continue",
            file=sys.stderr,
        )
        return exit_status(interrupt)
    numbers = result.numbers
    print(
        f"best validation accuracy {100 * numbers['best_val_accuracy']:.2f}% "
        f"(trial {numbers['best_trial']}), its test accuracy {100 * numbers['test_accuracy']:.2f}%"
    )
    numbers_file = result.directory / "report.json"
    print(f"wrote {result.index} (open it in a browser), {result.markdown} and {numbers_file}")
    if numbers.get("wandb_report_url"):
        print(f"W&B report: {numbers['wandb_report_url']}")
    return 0
