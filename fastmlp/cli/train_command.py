"""``fastmlp train`` (and the root ``train.py``): the classic assignment flags, and more."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fastmlp.cli.parsing import ArgumentParser, UsageError, wandb_mode_option
from fastmlp.runs.config import ConfigError, Setting, read_config_file, settings

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

GROUPS = {
    "run": "run and tracking",
    "data": "data",
    "training": "training",
    "optimizer": "optimizer hyperparameters",
    "schedule": "learning-rate schedule, best epoch and early stopping",
    "model": "model",
}


# What the checks of single flag values may look at before the whole configuration is known.
_ONE_LAYER = {"dtype": "float64", "num_layers": 1}


def _argument_type(setting: Setting) -> Any:
    """An argparse ``type`` that checks one value of a setting as the configuration does,
    so a bad flag is an argparse error naming it (the whole configuration is checked again
    once every setting is known)."""

    def parse(value: str) -> Any:
        try:
            if setting.nargs in ("+", "*"):  # one entry of a list setting
                return setting.check(setting.name, [value], _ONE_LAYER)[0]
            return setting.check(setting.name, value, _ONE_LAYER)
        except ConfigError as error:
            message = str(error).removeprefix(f"{setting.name} ")
            raise argparse.ArgumentTypeError(message) from None

    parse.__name__ = setting.name
    return parse


def _help(setting: Setting) -> str:
    if "default:" in setting.help:
        return setting.help
    return f"{setting.help} (default: {setting.describe_default()})"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``fastmlp train``: one per run setting (``fastmlp.runs.config``), the
    classic assignment's short spellings included, plus the run's own options. Every
    default is None, so that explicit flags can be told from defaults."""
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    run = groups["run"]
    run.add_argument(
        "--wandb_mode",
        "--wandb-mode",
        type=wandb_mode_option,
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
    groups["data"].add_argument(
        "--data_dir", metavar="DIR", help="look for the dataset files here first"
    )
    for setting in settings().values():
        metavar = setting.metavar
        if setting.choices is not None:
            metavar = "{" + ",".join(setting.choices.names()) + "}"
        groups[setting.group].add_argument(
            *setting.flags,
            f"--{setting.name}",
            type=_argument_type(setting),
            nargs=setting.nargs,
            const=setting.const,
            metavar=metavar,
            help=_help(setting),
        )


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration the flags ask for: --config file values, overridden by explicit flags."""
    chosen: dict[str, Any] = {}
    if args.config:
        chosen.update(read_config_file(args.config))
    for key in settings():
        value = getattr(args, key, None)
        if value is not None:
            chosen[key] = value
    return chosen


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
    if "best_epoch" in summary:
        evaluated = summary.get("evaluated_epoch")
        note = " (its weights evaluated)" if evaluated == summary["best_epoch"] else ""
        rows.append(("best epoch", f"{summary['best_epoch']} by {summary['monitor']}{note}"))
    if summary.get("best_epoch_val_accuracy") is not None:
        rows.append(("best epoch val accuracy", f"{summary['best_epoch_val_accuracy']:.4f}"))
    if summary.get("val_accuracy") is not None:
        rows.append(("last epoch val accuracy", f"{summary['val_accuracy']:.4f}"))
    rows.append(("epochs", str(summary["epochs_completed"])))
    if summary.get("stop_reason"):
        rows.append(("stopped", summary["stop_reason"]))
    rows.append(("training time", f"{summary['train_seconds']:.1f} s on {summary['device']}"))
    rows.append(("saved in", summary["run_dir"]))
    if "wandb_dir" in summary:
        rows.append(("W&B run", summary["wandb_dir"]))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


def run(args: argparse.Namespace) -> int:
    """Execute ``fastmlp train``; returns the exit status."""
    from fastmlp.runs.experiment import run_experiment

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
