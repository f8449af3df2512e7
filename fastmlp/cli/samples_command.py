"""``fastmlp samples``: a grid with one sample image per class, saved and logged to W&B."""

from __future__ import annotations

import argparse
from pathlib import Path

from fastmlp import data as datasets
from fastmlp.cli.parsing import UsageError, choice, seed, wandb_mode_option
from fastmlp.data.sources import canonical_dataset
from fastmlp.runs import WandbRun, resolve_wandb_mode
from fastmlp.runs.config import defaults

DESCRIPTION = "Save (and log to W&B) a grid with one sample image of each class."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-d",
        "--dataset",
        type=choice(canonical_dataset, "dataset"),
        default=defaults()["dataset"],
        metavar="{mnist,fashion_mnist}",
        help="dataset (default: fashion_mnist)",
    )
    parser.add_argument("--data_dir", metavar="DIR", help="look for the dataset files here first")
    parser.add_argument(
        "--out", metavar="FILE", help="image to write (default: samples_<dataset>.png)"
    )
    parser.add_argument("--seed", type=seed, default=0, help="which samples to show (default: 0)")
    parser.add_argument(
        "-wp", "--wandb_project", default=defaults()["wandb_project"], help="W&B project"
    )
    parser.add_argument("-we", "--wandb_entity", help="W&B entity")
    parser.add_argument(
        "--wandb_mode",
        "--wandb-mode",
        type=wandb_mode_option,
        metavar="{online,offline,disabled}",
        help="W&B mode (default: $WANDB_MODE, else online if logged in, else offline)",
    )


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png_target(path: Path) -> None:
    """Raise unless ``path`` may receive a PNG: a .png name, and no other kind of file there."""
    if path.suffix.lower() != ".png":
        raise UsageError(f"--out {path}: the grid is a PNG image; give a file name ending in .png")
    if path.is_dir():
        raise UsageError(f"--out {path} is a folder; give a file name ending in .png")
    if path.exists():
        with open(path, "rb") as stream:
            if stream.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                raise UsageError(
                    f"--out {path} exists and is not a PNG image; refusing to overwrite it"
                )


def run(args: argparse.Namespace) -> int:
    from fastmlp.runs import figures

    out = Path(args.out or f"samples_{args.dataset}.png")
    _check_png_target(out)
    dataset = datasets.load(args.dataset, data_dir=args.data_dir)
    path = figures.plot_class_samples(
        dataset.x_train,
        dataset.y_train,
        dataset.class_names,
        out,
        seed=args.seed,
    )
    print(f"saved {path}")
    wandb_run = WandbRun.start(
        mode=resolve_wandb_mode(args.wandb_mode),
        project=args.wandb_project,
        entity=args.wandb_entity,
        name=f"samples_{dataset.name}",
        config={"dataset": dataset.name, "seed": args.seed},
        directory=path.parent,
        job_type="samples",
    )
    if wandb_run is not None:
        wandb_run.log_image("samples", path, caption=f"one {dataset.name} image per class")
        wandb_run.finish()
        print(f"logged to W&B ({wandb_run.mode}): {wandb_run.directory}")
    return 0
