"""Argument parsing shared by every sub-command: one-line errors and tolerant choices."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from fastmlp.errors import UserError

EXIT_USAGE = 2


class UsageError(UserError):
    """Bad input from the user: printed as one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (plus a hint) and exit with status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def wandb_mode_option(value: str) -> str:
    """An argparse ``type``: a W&B mode (online, offline, disabled; any case)."""
    from fastmlp.runs.wandb_run import parse_wandb_mode

    try:
        return parse_wandb_mode(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def choice(canonical: Callable[[str], str], metavar: str) -> Callable[[str], str]:
    """An argparse ``type`` that canonicalises a case-insensitive choice with aliases."""

    def parse(value: str) -> str:
        try:
            return canonical(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = metavar
    return parse


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def seed(value: str) -> int:
    """An argparse ``type``: a random seed, a whole number >= 0."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {value}")
    return number
