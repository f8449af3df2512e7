"""Meaningful run names built from the hyperparameters that distinguish runs."""

from __future__ import annotations

import hashlib
from typing import Any

# Longer run names are shortened (file systems allow 255 bytes per name; W&B shows ~128).
MAX_NAME_CHARACTERS = 120


def format_number(value: float) -> str:
    """A compact spelling of a hyperparameter value: 0.001 -> "1e-3", 0.05 -> "0.05"."""
    value = float(value)
    if value == 0 or abs(value) >= 1e-2:
        return f"{value:g}"
    mantissa, exponent = f"{value:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def run_name(config: dict[str, Any]) -> str:
    """E.g. ``hl_3_sz_128_bs_64_ac_relu_o_adam_lr_1e-3`` (+ ``_wd_5e-4`` when decaying);
    ``hl_0_bs_64_o_adam_lr_1e-3`` for softmax regression (no hidden layer, no activation)."""
    sizes = config["hidden_size"]
    sizes = list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]
    parts = [f"hl_{config['num_layers']}"]
    if sizes:
        parts.append(f"sz_{'-'.join(map(str, sizes)) if len(set(sizes)) > 1 else sizes[0]}")
    parts.append(f"bs_{config['batch_size']}")
    if sizes:
        parts.append(f"ac_{str(config['activation']).lower()}")
    parts += [f"o_{config['optimizer']}", f"lr_{format_number(config['learning_rate'])}"]
    if config.get("weight_decay"):
        parts.append(f"wd_{format_number(config['weight_decay'])}")
    return shortened("_".join(parts))


def shortened(name: str, limit: int = MAX_NAME_CHARACTERS) -> str:
    """``name`` if it has at most ``limit`` characters, else its start and a hash of the
    whole (so that distinct long names stay distinct, and a file system accepts them)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:10]
    return f"{name[: limit - 11]}-{digest}"
