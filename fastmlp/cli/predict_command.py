"""``fastmlp predict``: classify your own images with a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fastmlp.backends import get_backend
from fastmlp.cli.parsing import UsageError, positive_int
from fastmlp.cli.targets import resolve_checkpoint
from fastmlp.errors import MissingDependencyError
from fastmlp.nn.checkpoint import load_checkpoint

DESCRIPTION = (
    "Classify image files (any size or colour; converted to 28x28 grayscale with a dark "
    "background, like the training data) and print the class and its probability."
)

SIDE = 28


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="a run directory or checkpoint .npz"
    )
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ...)")
    parser.add_argument(
        "--top", type=positive_int, default=1, help="show the K most likely classes (default: 1)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")


def to_model_input(path: Path) -> np.ndarray:
    """An image file as a (28, 28) uint8 array in the training data's style.

    The image is converted to grayscale, inverted if its border is light (the datasets show
    light objects on black), scaled to fit 28x28 keeping its aspect ratio, and centred.
    """
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise MissingDependencyError(
            'reading images needs Pillow: pip install "fastmlp[plot]"'
        ) from None
    try:
        with Image.open(path) as image:
            gray = ImageOps.exif_transpose(image).convert("L")
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read image {path}: {error}") from None
    pixels = np.asarray(gray)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127:
        gray = ImageOps.invert(gray)
    gray.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
    canvas = Image.new("L", (SIDE, SIDE), 0)
    canvas.paste(gray, ((SIDE - gray.width) // 2, (SIDE - gray.height) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def run(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(
        resolve_checkpoint(args.checkpoint), device=get_backend(args.device)
    )
    model = checkpoint.model
    classes = checkpoint.extra.get("class_names") or [str(k) for k in range(model.output_size)]
    paths = [Path(image) for image in args.images]
    for path in paths:
        if not path.is_file():
            raise UsageError(f"image {path} does not exist")
    images = np.stack([to_model_input(path) for path in paths])
    x = model.backend.asarray(images.reshape(len(images), -1), dtype=model.dtype) / 255
    probabilities = model.backend.to_numpy(model.forward(x))
    top = min(args.top, model.output_size)
    for path, row in zip(paths, probabilities):
        ranked = np.argsort(row)[::-1][:top]
        guesses = ", ".join(f"{classes[k]} ({row[k]:.1%})" for k in ranked)
        print(f"{path}: {guesses}")
    return 0
