"""Run configuration: the defaults, and the checks that turn user input into canonical values.

A configuration is a plain dict keyed by the long command-line flag names (``epochs``,
``batch_size``, ``optimizer``, ...). The same checks serve ``fastmlp train`` flags,
``--config`` files, resumed runs and sweep trials, so every entry point accepts the same
spellings (case-insensitive choices, aliases such as ``relu``, ``xavier``, ``nesterov``,
``mse``) and rejects the same mistakes with the same one-line messages.
"""

from __future__ import annotations

import json
import math
from os import PathLike
from pathlib import Path
from typing import Any

from fastmlp.nn.activations import canonical_activation
from fastmlp.nn.init import canonical_weight_init
from fastmlp.nn.losses import canonical_loss
from fastmlp.nn.mlp import canonical_dtype

DATASETS = ("fashion_mnist", "mnist")
OPTIMIZERS = ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam")
DEVICES_HELP = "cpu, cuda, cuda:N or auto"

# The defaults of `fastmlp train`: the best Fashion-MNIST configuration found by
# validation accuracy (README, "How the defaults were chosen").
DEFAULTS: dict[str, Any] = {
    "dataset": "fashion_mnist",
    "epochs": 15,
    "batch_size": 64,
    "loss": "cross_entropy",
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "momentum": None,
    "beta": None,
    "beta1": None,
    "beta2": None,
    "epsilon": None,
    "weight_decay": 0.0,
    "weight_init": "xavier",
    "num_layers": 2,
    "hidden_size": [256],
    "activation": "relu",
    "device": "auto",
    "dtype": "float32",
    "seed": 0,
    "val_fraction": 0.1,
    "wandb_project": "fastmlp",
    "wandb_entity": None,
}


class ConfigError(ValueError):
    """A configuration value is invalid; the message says which and how to fix it."""


def canonical_dataset(value: Any) -> str:
    key = str(value).strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {value!r}: choose fashion_mnist or mnist")
    return key


def canonical_optimizer(value: Any) -> str:
    key = str(value).strip().lower()
    key = {"nesterov": "nag"}.get(key, key)
    if key not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {value!r}: choose one of {', '.join(OPTIMIZERS)}")
    return key


def _positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}") from None
    if number != float(value) or number < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return number


def _number(
    name: str, value: Any, low: float, high: float = math.inf, high_open: bool = False
) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    too_high = number >= high if high_open else number > high
    if not math.isfinite(number) or number < low or too_high:
        bound = f"[{low:g}, {high:g})" if high_open else f">= {low:g}"
        raise ConfigError(f"{name} must be {bound}, got {value!r}")
    return number


def _hidden_sizes(value: Any, num_layers: int) -> list[int]:
    sizes = value if isinstance(value, (list, tuple)) else [value]
    sizes = [_positive_int("hidden_size", size) for size in sizes]
    if len(sizes) == 1:
        return sizes * num_layers
    if len(sizes) != num_layers:
        raise ConfigError(
            f"hidden_size got {len(sizes)} sizes for num_layers={num_layers}: "
            "give one size for every layer, or one size per layer"
        )
    return sizes


def _wrap(check: Any, value: Any) -> Any:
    try:
        return check(value)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(str(error)) from None


def normalize_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in, every value checked and spelled canonically.

    Raises:
        ConfigError: an unknown key or an invalid value (the message names it).
    """
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    config = {**DEFAULTS, **{key: value for key, value in raw.items() if value is not None}}
    config["dataset"] = canonical_dataset(config["dataset"])
    config["epochs"] = _positive_int("epochs", config["epochs"])
    config["batch_size"] = _positive_int("batch_size", config["batch_size"])
    config["num_layers"] = _number("num_layers", config["num_layers"], 0)
    if config["num_layers"] != int(config["num_layers"]):
        raise ConfigError(f"num_layers must be a whole number, got {config['num_layers']}")
    config["num_layers"] = int(config["num_layers"])
    config["hidden_size"] = _hidden_sizes(config["hidden_size"], config["num_layers"])
    config["loss"] = _wrap(canonical_loss, config["loss"])
    config["optimizer"] = canonical_optimizer(config["optimizer"])
    config["activation"] = _wrap(canonical_activation, config["activation"])
    config["weight_init"] = _wrap(canonical_weight_init, config["weight_init"])
    config["dtype"] = _wrap(canonical_dtype, config["dtype"])
    config["learning_rate"] = _number("learning_rate", config["learning_rate"], 0)
    config["weight_decay"] = _number("weight_decay", config["weight_decay"], 0)
    config["val_fraction"] = _number("val_fraction", config["val_fraction"], 0, 1, high_open=True)
    for key in ("momentum", "beta", "beta1", "beta2"):
        if config[key] is not None:
            config[key] = _number(key, config[key], 0, 1, high_open=True)
    if config["epsilon"] is not None:
        config["epsilon"] = _number("epsilon", config["epsilon"], 0)
        if config["epsilon"] == 0:
            raise ConfigError("epsilon must be > 0, got 0")
    if config["seed"] is not None:
        config["seed"] = int(config["seed"])
    config["device"] = str(config["device"]).strip().lower()
    return config


def optimizer_hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments for ``fastmlp.optim.create`` (None: the optimizer's default)."""
    return {
        "lr": config["learning_rate"],
        "momentum": config["momentum"],
        "beta": config["beta"],
        "beta1": config["beta1"],
        "beta2": config["beta2"],
        "eps": config["epsilon"],
    }


def read_config_file(path: str | PathLike[str]) -> dict[str, Any]:
    """Settings from a ``.json`` or ``.yaml`` file (keys: the long flag names)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(
                f'reading {path} needs PyYAML: pip install "fastmlp[sweep]"'
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"config file {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting names to values")
    return data
