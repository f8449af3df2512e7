"""Run configuration: the defaults, and the checks that turn user input into canonical values.

A configuration is a plain dict keyed by the long command-line flag names (``epochs``,
``batch_size``, ``optimizer``, ...). The same checks serve ``fastmlp train`` flags,
``--config`` files, resumed runs and sweep trials, so every entry point accepts the same
spellings (case-insensitive choices, aliases such as ``relu``, ``xavier``, ``nesterov``,
``mse``) and rejects the same mistakes with the same one-line messages.
"""

from __future__ import annotations

import math
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from fastmlp.errors import MissingDependencyError, UserError, one_line, shown
from fastmlp.files import check_size, parse_json
from fastmlp.nn.activations import canonical_activation
from fastmlp.nn.init import canonical_weight_init
from fastmlp.nn.losses import canonical_loss
from fastmlp.nn.mlp import canonical_dtype

DATASETS = ("fashion_mnist", "mnist")
OPTIMIZERS = ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam")
DEVICES = ("cpu", "numpy", "cuda", "cupy", "gpu", "auto")
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
    "blas_threads": None,
    "wandb_project": "fastmlp",
    "wandb_entity": None,
}


class ConfigError(UserError):
    """A configuration value is invalid; the message says which and how to fix it."""


def canonical_dataset(value: Any) -> str:
    key = str(value).strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {shown(value)}: choose fashion_mnist or mnist")
    return key


def canonical_optimizer(value: Any) -> str:
    key = str(value).strip().lower()
    key = {"nesterov": "nag"}.get(key, key)
    if key not in OPTIMIZERS:
        raise ConfigError(
            f"unknown optimizer {shown(value)}: choose one of {', '.join(OPTIMIZERS)}"
        )
    return key


def _as_number(name: str, value: Any, kind: str) -> float:
    """``value`` as a finite float: numbers and numeric strings, never booleans."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be {kind}, got the boolean {value}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be {kind}, got {shown(value)}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be {kind}, got {shown(value)}")
    return number


def _integer(name: str, value: Any, low: int) -> int:
    """``value`` as a whole number >= ``low`` (ints, integral floats, numeric strings)."""
    kind = "a positive integer" if low == 1 else f"an integer >= {low}"
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        real = _as_number(name, value, kind)
        if real != int(real):
            raise ConfigError(f"{name} must be {kind}, got {shown(value)}")
        number = int(real)
    if number < low:
        raise ConfigError(f"{name} must be {kind}, got {shown(value)}")
    return number


def _positive_int(name: str, value: Any) -> int:
    return _integer(name, value, 1)


def _number(
    name: str, value: Any, low: float, high: float = math.inf, high_open: bool = False
) -> float:
    bound = f"in [{low:g}, {high:g})" if high_open else f"a number >= {low:g}"
    number = _as_number(name, value, bound)
    too_high = number >= high if high_open else number > high
    if number < low or too_high:
        raise ConfigError(f"{name} must be {bound}, got {shown(value)}")
    return number


def canonical_device(value: Any) -> str:
    """A device name, checked for its form only (whether it works is the backend's say)."""
    name = str(value).strip().lower()
    index = name.partition(":")[2]
    if name in DEVICES or (name.startswith("cuda:") and index.isascii() and index.isdigit()):
        return name
    raise ConfigError(f"unknown device {shown(value)}: use {DEVICES_HELP}")


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
    if not isinstance(raw, dict):
        raise ConfigError(f"a configuration must map setting names to values, got {shown(raw)}")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    config = {**DEFAULTS, **{key: value for key, value in raw.items() if value is not None}}
    config["dataset"] = canonical_dataset(config["dataset"])
    config["epochs"] = _positive_int("epochs", config["epochs"])
    config["batch_size"] = _positive_int("batch_size", config["batch_size"])
    config["num_layers"] = _integer("num_layers", config["num_layers"], 0)
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
        tiny = float(np.finfo(config["dtype"]).tiny)
        if config["epsilon"] < tiny:
            raise ConfigError(
                f"epsilon must be at least {tiny:.3g}, the smallest normal {config['dtype']} "
                f"(a smaller one rounds to zero or a subnormal), got {config['epsilon']:g}"
            )
    if config["seed"] is not None:
        config["seed"] = _integer("seed", config["seed"], 0)
    if config["blas_threads"] is not None:
        config["blas_threads"] = _positive_int("blas_threads", config["blas_threads"])
    config["device"] = canonical_device(config["device"])
    for key in ("wandb_project", "wandb_entity"):
        if config[key] is not None and not isinstance(config[key], str):
            raise ConfigError(f"{key} must be a string, got {shown(config[key])}")
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


# A configuration file larger than this is not one (a data file given by mistake).
MAX_CONFIG_BYTES = 1 << 20


def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of a small settings file, or a ConfigError saying what is wrong."""
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a file")
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"{what} {path} is not a regular file")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{what} {path} is too large to be one (over 1 MB)")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a text file (not UTF-8)") from None
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from None


def _yaml_loader() -> Any:
    """PyYAML's safe loader, refusing a key given twice in one mapping."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
            for key in keys:
                if keys.count(key) > 1:
                    raise ConfigError(f"{shown(key)} is given twice; keep one")
            return super().construct_mapping(node, deep=deep)

    return Loader


def parse_yaml(text: str, path: Path, what: str) -> Any:
    """YAML text as Python data (PyYAML's safe loader), or a one-line ConfigError: invalid,
    nested too deeply, a key given twice, or more values than settings can have."""
    try:
        import yaml
    except ImportError:
        raise MissingDependencyError(
            f'reading {path} needs PyYAML: pip install "fastmlp[sweep]"'
        ) from None
    try:
        data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except ConfigError as error:
        raise ConfigError(f"{what} {path}: {error}") from None
    except yaml.YAMLError as error:
        message = " ".join(str(error).split())
        raise ConfigError(f"{what} {path} is not valid YAML: {message}") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} is nested too deeply to be read") from None
    except ValueError as error:  # e.g. an integer of thousands of digits
        raise ConfigError(f"{what} {path} holds an unreadable value ({one_line(error)})") from None
    try:
        return check_size(data, f"{what} {path}")
    except UserError as error:
        raise ConfigError(str(error)) from None


def read_config_file(path: str | PathLike[str]) -> dict[str, Any]:
    """Settings from a ``.json`` or ``.yaml`` file (keys: the long flag names)."""
    path = Path(path)
    text = read_text_file(path, "config file")
    if path.suffix.lower() in (".yaml", ".yml"):
        data = parse_yaml(text, path, "config file")
    else:
        try:
            data = check_size(
                parse_json(text, f"config file {path}", reject_duplicates=True),
                f"config file {path}",
            )
        except UserError as error:
            raise ConfigError(str(error)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting names to values")
    return data
