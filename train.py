"""Compatibility entry point: ``python train.py [flags]`` is ``fastmlp train [flags]``."""

import sys

from fastmlp.cli import execute
from fastmlp.cli.train_command import build_parser, run

if __name__ == "__main__":
    arguments = build_parser(prog="train.py").parse_args()
    sys.exit(execute(run, arguments, "train.py"))
