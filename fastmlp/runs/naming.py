"""Meaningful run names built from the hyperparameters that distinguish runs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
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


# Settings that never name a run: how it is labelled, tracked or placed, not what it trains.
UNNAMED = frozenset({"name", "tags", "device", "wandb_project", "wandb_entity", "blas_threads"})
# Settings the fixed start of every name shows.
_NAMED_FIRST = frozenset({"num_layers", "hidden_size", "batch_size", "activation", "optimizer",
                          "learning_rate", "weight_decay"})  # fmt: skip


def _spelled(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return "-".join(_spelled(item) for item in value)
    if isinstance(value, float):
        return format_number(value)
    return str(value)


def run_name(config: dict[str, Any], always: Iterable[str] = ()) -> str:
    """E.g. ``hl_3_sz_128_bs_64_ac_relu_o_adam_lr_1e-3`` (+ ``_wd_5e-4`` when decaying),
    then every other setting that differs from its default, as ``KEY_VALUE`` with KEY its
    short flag or its name (``_e_5_dropout_0.2_lr_schedule_cosine``), so that runs of
    different settings get different names; ``hl_0_bs_64_o_adam_lr_1e-3`` for softmax
    regression (no hidden layer, no activation). Settings named in ``always`` (those a
    sweep varies) are shown even at their default. ``config["name"]``, when set, is used as
    it is."""
    from fastmlp.runs.config import settings

    if config.get("name"):
        return shortened(str(config["name"]))
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
    for key, setting in settings().items():
        value = config.get(key)
        default = value == setting.default and key not in always
        if key in UNNAMED or key in _NAMED_FIRST or value is None or default:
            continue
        label = setting.flags[0].lstrip("-") if setting.flags else key
        parts.append(f"{label}_{_spelled(value)}")
    return shortened("_".join(parts))


def shortened(name: str, limit: int = MAX_NAME_CHARACTERS) -> str:
    """``name`` if it has at most ``limit`` characters, else its start and a hash of the
    whole (so that distinct long names stay distinct, and a file system accepts them)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:10]
    return f"{name[: limit - 11]}-{digest}"
