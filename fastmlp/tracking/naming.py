"""Meaningful run names built from the hyperparameters that distinguish runs."""

from __future__ import annotations

from typing import Any


def format_number(value: float) -> str:
    """A compact spelling of a hyperparameter value: 0.001 -> "1e-3", 0.05 -> "0.05"."""
    value = float(value)
    if value == 0 or abs(value) >= 1e-2:
        return f"{value:g}"
    mantissa, exponent = f"{value:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def run_name(config: dict[str, Any]) -> str:
    """E.g. ``hl_3_sz_128_bs_64_ac_relu_o_adam_lr_1e-3`` (+ ``_wd_5e-4`` when decaying)."""
    sizes = config["hidden_size"]
    if isinstance(sizes, (list, tuple)):
        size = "-".join(str(s) for s in sizes) if len(set(sizes)) > 1 else str(sizes[0])
    else:
        size = str(sizes)
    parts = [
        f"hl_{config['num_layers']}",
        f"sz_{size}",
        f"bs_{config['batch_size']}",
        f"ac_{str(config['activation']).lower()}",
        f"o_{config['optimizer']}",
        f"lr_{format_number(config['learning_rate'])}",
    ]
    if config.get("weight_decay"):
        parts.append(f"wd_{format_number(config['weight_decay'])}")
    return "_".join(parts)
