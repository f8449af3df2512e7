"""``fastmlp predict``: classify your own images with a trained model."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fastmlp.backends import get_backend
from fastmlp.cli.parsing import UsageError, positive_int
from fastmlp.cli.targets import resolve_checkpoint
from fastmlp.errors import MissingDependencyError, one_line
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


def _grayscale(image: Any) -> np.ndarray:
    """An image as float32 gray levels in [0, 255] (H, W), whatever its mode and depth.

    8-bit modes go through Pillow's conversion to "L"; 16-bit gray ("I;16...", and "I"
    holding values above 255) is scaled by 255 / 65535; float images ("F") with values in
    [0, 1] are scaled by 255, others clipped to [0, 255].
    """
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        pixels = np.asarray(image, dtype=np.float32)
        if mode.startswith("I;16") or pixels.max(initial=0) > 255:
            pixels = pixels * (255 / 65535)
        return np.clip(pixels, 0, 255)
    if mode == "F":
        pixels = np.nan_to_num(np.asarray(image, dtype=np.float32))
        if pixels.min(initial=0) >= 0 and pixels.max(initial=0) <= 1:
            pixels = pixels * 255
        return np.clip(pixels, 0, 255)
    return np.asarray(image.convert("L"), dtype=np.float32)


def _check_image_path(path: Path) -> None:
    """Raise a UsageError saying what ``path`` is, unless it is a readable regular file."""
    if path.is_dir():
        raise UsageError(f"image {path} is a folder, not an image file")
    if os.path.lexists(path) and not path.exists():
        raise UsageError(f"image {path} is a broken symbolic link (or a loop of them)")
    if not path.exists():
        raise UsageError(f"image {path} does not exist")
    if not path.is_file():
        raise UsageError(f"image {path} is not a regular file")


def class_names(checkpoint: Any, classes: int) -> list[str]:
    """The checkpoint's class names when they fit its model, else the class numbers."""
    names = checkpoint.extra.get("class_names")
    if (
        isinstance(names, list)
        and len(names) == classes
        and all(isinstance(name, str) for name in names)
    ):
        return names
    if names is not None:
        print(
            f"fastmlp predict: warning: the checkpoint's class names do not fit its "
            f"{classes} classes; showing class numbers",
            file=sys.stderr,
        )
    return [str(index) for index in range(classes)]


def to_model_input(path: Path) -> np.ndarray:
    """An image file as a (28, 28) uint8 array in the training data's style.

    The image is converted to grayscale (any mode, 8 or 16 bits, or float), inverted if its
    border is light (the datasets show light objects on black), scaled to fit 28x28 keeping
    its aspect ratio, and centred.
    """
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise MissingDependencyError(
            'reading images needs Pillow: pip install "fastmlp[plot]"'
        ) from None
    _check_image_path(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns before it refuses; a warning would be a second line
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                pixels = _grayscale(ImageOps.exif_transpose(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UsageError(
            f"image {path} is too large to read safely (more than {Image.MAX_IMAGE_PIXELS:,} "
            "pixels); scale it down first"
        ) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise UsageError(f"cannot read image {path}: {one_line(error)}") from None
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127.5:
        pixels = 255 - pixels
    gray = Image.fromarray(np.rint(pixels).astype(np.uint8), mode="L")
    gray.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
    canvas = Image.new("L", (SIDE, SIDE), 0)
    canvas.paste(gray, ((SIDE - gray.width) // 2, (SIDE - gray.height) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def run(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(
        resolve_checkpoint(args.checkpoint), device=get_backend(args.device)
    )
    model = checkpoint.model
    classes = class_names(checkpoint, model.output_size)
    if model.input_size != SIDE * SIDE:
        raise UsageError(
            f"{args.checkpoint} is a model of {model.input_size} inputs, not of "
            f"{SIDE}x{SIDE} images"
        )
    paths = [Path(image) for image in args.images]
    images = np.stack([to_model_input(path) for path in paths])
    probabilities = model.backend.to_numpy(model.forward(images))
    if not np.isfinite(probabilities).all():
        raise UsageError(
            f"{args.checkpoint} gives no finite probabilities (its parameters are not all "
            "finite: a diverged run?)"
        )
    top = min(args.top, model.output_size)
    for path, row in zip(paths, probabilities):
        ranked = np.argsort(row)[::-1][:top]
        guesses = ", ".join(f"{classes[k]} ({row[k]:.1%})" for k in ranked)
        print(f"{path}: {guesses}")
    return 0
