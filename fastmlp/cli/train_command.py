"""``fastmlp train`` (and the root ``train.py``): the classic assignment flags, and more."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fastmlp.cli.parsing import (
    ArgumentParser,
    UsageError,
    choice,
    non_negative_float,
    positive_int,
    unit_interval,
)
from fastmlp.config import (
    DEFAULTS,
    ConfigError,
    canonical_dataset,
    canonical_optimizer,
    read_config_file,
)
from fastmlp.nn.activations import canonical_activation
from fastmlp.nn.init import canonical_weight_init
from fastmlp.nn.losses import canonical_loss
from fastmlp.tracking import WANDB_MODES

# What may differ when continuing a run: a longer schedule, or another device.
RESUME_OVERRIDES = {"epochs", "device"}

DESCRIPTION = (
    "Train an MLP on Fashion-MNIST or MNIST, evaluate it on the test set, and track the run."
)

EPILOG = """\
Every run is saved in OUT/<run-name>/ (config.json, metrics.jsonl, checkpoint.npz,
summary.json, figures). Press Ctrl-C to stop: the last finished epoch is kept, and
`fastmlp train --resume OUT/<run-name>` continues from it.
"""


def _default(key: str) -> str:
    value = DEFAULTS[key]
    if isinstance(value, list):
        value = " ".join(map(str, value))
    return f"(default: {value})" if value is not None else "(default: the optimizer's own)"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``fastmlp train``; every default is None so explicit flags are detectable."""
    run = parser.add_argument_group("run and tracking")
    run.add_argument("-wp", "--wandb_project", help=f"W&B project {_default('wandb_project')}")
    run.add_argument("-we", "--wandb_entity", help="W&B entity (user or team)")
    run.add_argument(
        "--wandb_mode",
        "--wandb-mode",
        type=choice(_wandb_mode, "mode"),
        metavar="{online,offline,disabled}",
        help="W&B mode (default: $WANDB_MODE, else online if logged in, else offline)",
    )
    run.add_argument("--out", metavar="DIR", help="parent of run directories (default: runs)")
    run.add_argument(
        "--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoint"
    )
    run.add_argument(
        "--config", metavar="FILE", help="settings from a .json/.yaml file (flags override it)"
    )
    run.add_argument("--no_progress", action="store_true", help="no progress bars")

    data = parser.add_argument_group("data")
    data.add_argument(
        "-d",
        "--dataset",
        type=choice(canonical_dataset, "dataset"),
        metavar="{mnist,fashion_mnist}",
        help=f"dataset {_default('dataset')}",
    )
    data.add_argument("--data_dir", metavar="DIR", help="look for the dataset files here first")
    data.add_argument(
        "--val_fraction",
        type=unit_interval,
        metavar="F",
        help=f"fraction of the training set held out for validation {_default('val_fraction')}",
    )

    training = parser.add_argument_group("training")
    training.add_argument("-e", "--epochs", type=positive_int, help=f"epochs {_default('epochs')}")
    training.add_argument(
        "-b", "--batch_size", type=positive_int, help=f"batch size {_default('batch_size')}"
    )
    training.add_argument(
        "-l",
        "--loss",
        type=choice(canonical_loss, "loss"),
        metavar="{mean_squared_error,cross_entropy}",
        help=f"loss {_default('loss')}",
    )
    training.add_argument(
        "-o",
        "--optimizer",
        type=choice(canonical_optimizer, "optimizer"),
        metavar="{sgd,momentum,nag,rmsprop,adam,nadam}",
        help=f"optimizer {_default('optimizer')}",
    )
    training.add_argument(
        "-lr",
        "--learning_rate",
        type=non_negative_float,
        help=f"learning rate {_default('learning_rate')}",
    )
    training.add_argument(
        "-m", "--momentum", type=unit_interval, help="momentum of momentum and nag (default: 0.9)"
    )
    training.add_argument(
        "-beta", "--beta", type=unit_interval, help="beta of rmsprop (default: 0.99)"
    )
    training.add_argument(
        "-beta1", "--beta1", type=unit_interval, help="beta1 of adam and nadam (default: 0.9)"
    )
    training.add_argument(
        "-beta2", "--beta2", type=unit_interval, help="beta2 of adam and nadam (default: 0.999)"
    )
    training.add_argument(
        "-eps",
        "--epsilon",
        type=non_negative_float,
        help="epsilon of rmsprop, adam, nadam (default: 1e-8)",
    )
    training.add_argument(
        "-w_d",
        "--weight_decay",
        type=non_negative_float,
        help=f"L2 weight decay {_default('weight_decay')}",
    )
    training.add_argument(
        "--seed", type=int, help=f"seed of weights and shuffling {_default('seed')}"
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "-w_i",
        "--weight_init",
        type=choice(canonical_weight_init, "init"),
        metavar="{random,Xavier,he}",
        help=f"weight initialisation {_default('weight_init')}",
    )
    model.add_argument(
        "-nhl", "--num_layers", type=int, help=f"hidden layers {_default('num_layers')}"
    )
    model.add_argument(
        "-sz",
        "--hidden_size",
        type=positive_int,
        nargs="+",
        metavar="SIZE",
        help=f"units per hidden layer: one size, or one per layer {_default('hidden_size')}",
    )
    model.add_argument(
        "-a",
        "--activation",
        type=choice(canonical_activation, "activation"),
        metavar="{identity,sigmoid,tanh,ReLU}",
        help=f"hidden activation {_default('activation')}",
    )
    model.add_argument(
        "--device",
        metavar="{cpu,cuda,auto}",
        help=f"where to train: cpu, cuda, cuda:N or auto {_default('device')}",
    )
    model.add_argument(
        "--dtype", metavar="{float32,float64}", help=f"floating-point precision {_default('dtype')}"
    )
    model.add_argument(
        "--blas_threads",
        type=positive_int,
        metavar="N",
        help="threads of the matrix products (default: BLAS's own choice); the rounding depends "
        "on it, so pin it to repeat a run exactly (sweep trials record theirs)",
    )


def _wandb_mode(value: str) -> str:
    mode = value.strip().lower()
    if mode not in WANDB_MODES:
        raise ValueError(f"unknown W&B mode {value!r}: use online, offline or disabled")
    return mode


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration the flags ask for: --config file values, overridden by explicit flags."""
    settings: dict[str, Any] = {}
    if args.config:
        settings.update(read_config_file(args.config))
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    return settings


def build_parser(prog: str = "fastmlp train") -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_arguments(parser)
    return parser


def _final_table(result: Any) -> str:
    summary = result.summary
    rows = [("status", result.status)]
    if "test_accuracy" in summary:
        rows.append(("test accuracy", f"{summary['test_accuracy']:.4f}"))
    if summary.get("test_loss") is not None:
        rows.append(("test loss", f"{summary['test_loss']:.4f}"))
    if "best_val_accuracy" in summary:
        rows.append(("best val accuracy", f"{summary['best_val_accuracy']:.4f}"))
    rows.append(("epochs", str(summary["epochs_completed"])))
    rows.append(("training time", f"{summary['train_seconds']:.1f} s on {summary['device']}"))
    rows.append(("saved in", summary["run_dir"]))
    if "wandb_dir" in summary:
        rows.append(("W&B run", summary["wandb_dir"]))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


def run(args: argparse.Namespace) -> int:
    """Execute ``fastmlp train``; returns the exit status."""
    from fastmlp.experiment import run_experiment

    try:
        settings = settings_from_args(args)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    if args.resume:
        unexpected = sorted(set(settings) - RESUME_OVERRIDES)
        if unexpected:
            raise UsageError(
                f"--resume continues a run with its own settings; only --epochs and --device "
                f"may change (got {', '.join(unexpected)})"
            )
        if args.out is not None:
            raise UsageError(
                f"--out does not apply with --resume: the run stays in {args.resume} "
                "(copy the directory first to continue it elsewhere)"
            )
    result = run_experiment(
        settings,
        out=args.out or "runs",
        data_dir=args.data_dir,
        wandb_mode=args.wandb_mode,
        progress=not args.no_progress,
        resume=args.resume,
    )
    print(_final_table(result))
    if result.status == "interrupted":
        print(
            f"interrupted: the finished epochs are saved; continue with "
            f"fastmlp train --resume {result.run_dir.path}",
            file=sys.stderr,
        )
    elif result.status == "diverged":
        print(
            f"diverged at epoch {result.summary['diverged_at']}: the loss is no longer finite; "
            "try a smaller learning rate",
            file=sys.stderr,
        )
    return result.exit_status
