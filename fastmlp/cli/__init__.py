"""The ``fastmlp`` command and its sub-commands.

``train``, ``evaluate``, ``samples``, ``predict``, ``bench``, ``sweep``, ``runs`` and
``report``.

Bad input or a problem of the machine (an unknown choice, a missing or corrupt file, no
GPU, not enough memory, a full disk: see :func:`fastmlp.errors.is_user_error`) ends with one
line on stderr and exit status 2; set ``FASTMLP_DEBUG=1`` to see its traceback. Anything
else is a bug: it keeps its traceback, with a request to report it, and exit status 1.
Ctrl-C, SIGTERM and SIGHUP stop a command cleanly (exit status 130, 143, 129).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO

import fastmlp
from fastmlp.cli import (
    bench_command,
    evaluate_command,
    predict_command,
    report_command,
    runs_command,
    samples_command,
    sweep_command,
    train_command,
)
from fastmlp.cli.parsing import EXIT_USAGE, ArgumentParser
from fastmlp.errors import describe, is_user_error, one_line
from fastmlp.interrupts import exit_status, signals_as_interrupts

EXIT_BUG = 1

BUG_REPORT = (
    "this is a bug in fastmlp, not a problem with your input: please report it with the "
    "command you ran and the traceback above"
)

Handler = Callable[[argparse.Namespace], int]


class _Tolerant:
    """A text stream that never fails its writer: characters the terminal's encoding lacks
    are escaped, and once the reader is gone (``fastmlp train | head``) writes go nowhere,
    so a closed pipe never stops a run half way."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[attr-defined]

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (BrokenPipeError, ValueError):  # ValueError: the stream was closed
            self._stream = open(os.devnull, "w")  # noqa: SIM115 - lives as long as we do
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            self._stream = open(os.devnull, "w")  # noqa: SIM115

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Show a Python warning as one line, as fastmlp's own notes are."""
    print(f"fastmlp: warning: {one_line(Warning(str(message)))}", file=sys.stderr)


@contextlib.contextmanager
def _tolerant_streams() -> Iterator[None]:
    saved = sys.stdout, sys.stderr, warnings.showwarning
    sys.stdout, sys.stderr = _Tolerant(sys.stdout), _Tolerant(sys.stderr)
    warnings.showwarning = _one_line_warning
    try:
        yield
    finally:
        with contextlib.suppress(BrokenPipeError, ValueError):
            sys.stdout.flush()
        sys.stdout, sys.stderr, warnings.showwarning = saved


def execute(handler: Handler, args: argparse.Namespace, prog: str) -> int:
    """Run a sub-command: user errors become one line on stderr and exit status 2, bugs keep
    their traceback (exit status 1), interrupts and SIGTERM stop cleanly (130, 143)."""
    with _tolerant_streams():
        return _execute(handler, args, prog)


def _execute(handler: Handler, args: argparse.Namespace, prog: str) -> int:
    try:
        with signals_as_interrupts():
            return handler(args)
    except KeyboardInterrupt as interrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return exit_status(interrupt)
    except Exception as error:
        if not is_user_error(error) or os.environ.get("FASTMLP_DEBUG"):
            traceback.print_exc()
            if not is_user_error(error):
                print(f"{prog}: internal error: {BUG_REPORT}", file=sys.stderr)
                return EXIT_BUG
        print(f"{prog}: error: {describe(error)}", file=sys.stderr)
        return EXIT_USAGE


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="fastmlp",
        description="Train, evaluate and benchmark from-scratch MLPs on NumPy (CPU) or CuPy (GPU).",
    )
    parser.add_argument("--version", action="version", version=f"fastmlp {fastmlp.__version__}")
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
        ("runs", runs_command, "a table of the runs under a folder: status, accuracy, settings"),
        ("report", report_command, "the assignment's questions Q1-Q10 answered as a web page"),
    ):
        command = commands.add_parser(name, help=summary, description=module.DESCRIPTION)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastmlp`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    return execute(args.handler, args, f"fastmlp {args.command}")
