"""The ``fastmlp`` command and its sub-commands.

``train``, ``evaluate``, ``samples``, ``predict``, ``bench`` and ``sweep``.

Bad input (an unknown choice, a missing file, a corrupt dataset, no GPU, ...) ends with one
line on stderr and exit status 2, never a traceback; set ``FASTMLP_DEBUG=1`` to see one.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from fastmlp.backends import DeviceUnavailableError
from fastmlp.cli import (
    bench_command,
    evaluate_command,
    predict_command,
    samples_command,
    sweep_command,
    train_command,
)
from fastmlp.cli.parsing import EXIT_USAGE, ArgumentParser, UsageError
from fastmlp.errors import one_line

# Errors that mean "the input was wrong", reported as one line with exit status 2.
USER_ERRORS = (UsageError, ValueError, DeviceUnavailableError, OSError, ImportError)

Handler = Callable[[argparse.Namespace], int]


def execute(handler: Handler, args: argparse.Namespace, prog: str) -> int:
    """Run a sub-command, turning user errors into one line on stderr and exit status 2."""
    try:
        return handler(args)
    except USER_ERRORS as error:
        if os.environ.get("FASTMLP_DEBUG"):
            raise
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="fastmlp",
        description="Train, evaluate and benchmark from-scratch MLPs on NumPy (CPU) or CuPy (GPU).",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    train = commands.add_parser(
        "train",
        help="train and evaluate a model",
        description=train_command.DESCRIPTION,
        epilog=train_command.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train_command.add_train_arguments(train)
    train.set_defaults(handler=train_command.run)
    for name, module, summary in (
        ("evaluate", evaluate_command, "test accuracy, per-class metrics and figures of a model"),
        ("samples", samples_command, "save a grid with one sample image per class"),
        ("predict", predict_command, "classify your own images"),
        ("bench", bench_command, "training speed side by side with PyTorch and scikit-learn"),
        ("sweep", sweep_command, "hyperparameter sweeps (Optuna or W&B) and their report"),
    ):
        command = commands.add_parser(name, help=summary, description=module.DESCRIPTION)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastmlp`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    return execute(args.handler, args, f"fastmlp {args.command}")
