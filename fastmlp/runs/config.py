"""The run configuration: every setting of a run declared once, and TrainConfig.

A run is configured by settings named like ``fastmlp train``'s long flags (``epochs``,
``batch_size``, ``optimizer``...). :func:`settings` lists them: fastmlp's own settings,
plus one for each hyperparameter that an optimizer or an activation declares (their
registries are read at call time, so an optimizer added in a new file has its flags at
once). Each :class:`Setting` gives its default, its command-line spellings, its help, and
its check, so the command line (``fastmlp.cli.train_command``), ``--config`` files, sweep
parameters (``fastmlp.sweep.config``), resumed runs and the README's settings table are all
derived from here.

:class:`TrainConfig` is a checked, canonical configuration: every setting present, every
choice spelled canonically (case-insensitive names and aliases accepted), numbers in range,
booleans and infinities refused, with the same one-line messages everywhere.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from fastmlp.data.sources import DATASETS
from fastmlp.errors import MissingDependencyError, UserError, one_line, shown
from fastmlp.files import check_size, parse_json
from fastmlp.monitor import MONITOR_METRICS
from fastmlp.nn.activations import ACTIVATIONS
from fastmlp.nn.init import WEIGHT_INITS
from fastmlp.nn.losses import LOSSES, smoothable_losses
from fastmlp.nn.mlp import DTYPES, canonical_dtype
from fastmlp.optim import OPTIMIZERS
from fastmlp.registry import LARGEST_INTEGER, Hyperparameter, Registry
from fastmlp.schedules import SCHEDULES

DEVICES = ("cpu", "numpy", "numba", "cuda", "cupy", "gpu", "auto")
DEVICES_HELP = "cpu, cuda, cuda:N or auto"


class ConfigError(UserError):
    """A configuration value is invalid; the message says which and how to fix it."""


# ------------------------------------------------------------------ value checks


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
    if number > LARGEST_INTEGER:
        raise ConfigError(f"{name} must be at most {LARGEST_INTEGER}, got {shown(value)}")
    return number


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


def _choice(registry: Registry[Any]) -> Callable[[str, Any, dict[str, Any]], str]:
    def check(name: str, value: Any, config: dict[str, Any]) -> str:
        try:
            return registry.canonical(value)
        except UserError as error:
            raise ConfigError(str(error)) from None

    return check


def _hyperparameter_check(parameter: Hyperparameter) -> Callable[[str, Any, dict], Any]:
    def check(name: str, value: Any, config: dict[str, Any]) -> Any:
        if value is None:
            return None
        if isinstance(value, bool):
            raise ConfigError(
                f"{name} must be {parameter.describe_range()}, got the boolean {value}"
            )
        try:
            return parameter.check(value, name)
        except UserError as error:
            raise ConfigError(str(error)) from None

    return check


def _positive(name: str, value: Any) -> float:
    number = _as_number(name, value, "a number > 0")
    if number <= 0:
        raise ConfigError(f"{name} must be a number > 0, got {shown(value)}")
    return number


def _hidden_sizes(name: str, value: Any, config: dict[str, Any]) -> list[int]:
    layers = config["num_layers"]
    sizes = value if isinstance(value, (list, tuple)) else [value]
    sizes = [_integer("hidden_size", size, 1) for size in sizes]
    if len(sizes) == 1:
        return sizes * layers
    if len(sizes) != layers:
        raise ConfigError(
            f"hidden_size got {len(sizes)} sizes for num_layers={layers}: "
            "give one size for every layer, or one size per layer"
        )
    return sizes


def _epsilon(name: str, value: Any, config: dict[str, Any]) -> float | None:
    if value is None:
        return None
    epsilon = _number(name, value, 0)
    tiny = float(np.finfo(config["dtype"]).tiny)
    if epsilon < tiny:
        raise ConfigError(
            f"epsilon must be at least {tiny:.3g}, the smallest normal {config['dtype']} "
            f"(a smaller one rounds to zero or a subnormal), got {epsilon:g}"
        )
    return epsilon


def _string(name: str, value: Any, config: dict[str, Any]) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {shown(value)}")
    return value


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _boolean(name: str, value: Any, config: dict[str, Any]) -> bool | None:
    """True or False: a boolean, 0 or 1, or true/false, yes/no, on/off in any case."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ConfigError(f"{name} must be true or false, got {shown(value)}")


def _names(name: str, value: Any, config: dict[str, Any]) -> list[str]:
    """A list of short labels (W&B tags): strings of 1 to 64 characters, no commas."""
    items = value if isinstance(value, (list, tuple)) else [value]
    labels = []
    for item in items:
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            raise ConfigError(f"{name} must be a list of short strings, got {shown(item)}")
        label = str(item).strip()
        if not 1 <= len(label) <= 64 or "," in label:
            raise ConfigError(
                f"each of {name} must be 1 to 64 characters without commas, got {shown(item)}"
            )
        labels.append(label)
    return labels


def _run_name(name: str, value: Any, config: dict[str, Any]) -> str | None:
    """A run name usable as a folder name that ``fastmlp runs`` lists (not hidden)."""
    value = _string(name, value, config)
    if value is None:
        return None
    text = value.strip()
    bad = text.startswith(".") or "/" in text or "\\" in text or not text.isprintable()
    if not text or bad or len(text) > 120:
        raise ConfigError(
            f"{name} must be 1 to 120 printable characters, not starting with a dot, without / "
            f"or \\ (it names the run's folder), got {shown(value)}"
        )
    return text


def _dtype(name: str, value: Any, config: dict[str, Any]) -> str:
    try:
        return canonical_dtype(value)
    except ValueError as error:
        raise ConfigError(str(error)) from None


# --------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    """One run setting: its default, its check, and how the command line spells it.

    ``check(name, value, config)`` returns the canonical value or raises ConfigError;
    ``config`` holds the settings checked before this one (``hidden_size`` needs
    ``num_layers``). ``choices`` is the registry of a choice setting; ``flags`` the
    short command-line spellings (the long one is ``--name``); ``group`` its help section;
    ``nargs`` and ``const`` as argparse takes them (a boolean flag: nargs "?", const True);
    ``default_help`` how help texts show a default that depends on other settings.
    """

    name: str
    default: Any
    help: str
    check: Callable[[str, Any, dict[str, Any]], Any]
    flags: tuple[str, ...] = ()
    group: str = "training"
    choices: Registry[Any] | None = None
    nargs: str | None = None
    metavar: str | None = None
    const: Any = None
    default_help: str | None = None

    def describe_default(self) -> str:
        """The default as help texts show it."""
        if self.default_help is not None:
            return self.default_help
        if self.default is None:
            return "the optimizer's own" if self.group == "optimizer" else "none"
        if isinstance(self.default, list):
            return " ".join(map(str, self.default))
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)


def _core_settings() -> list[Setting]:
    positive = lambda name, value, config: _integer(name, value, 1)  # noqa: E731
    return [
        Setting("dataset", "fashion_mnist", "dataset", _choice(DATASETS), ("-d",), "data",
                DATASETS),
        Setting("val_fraction", 0.1, "fraction of the training set held out for validation",
                lambda n, v, c: _number(n, v, 0, 1, high_open=True), group="data"),
        Setting("epochs", 15, "epochs", positive, ("-e",)),
        Setting("batch_size", 64, "batch size", positive, ("-b",)),
        Setting("loss", "cross_entropy", "loss on the softmax output", _choice(LOSSES), ("-l",),
                choices=LOSSES),
        Setting("optimizer", "adam", "optimizer", _choice(OPTIMIZERS), ("-o",),
                choices=OPTIMIZERS),
        Setting("learning_rate", 1e-3, "learning rate", lambda n, v, c: _number(n, v, 0),
                ("-lr",)),
        Setting("weight_decay", 0.0, "weight decay: L2 on weights (not biases), or the "
                "decoupled decay of an optimizer that has one (adamw)",
                lambda n, v, c: _number(n, v, 0), ("-w_d",)),
        Setting("seed", 0, "seed of weights, shuffling and dropout",
                lambda n, v, c: None if v is None else _integer(n, v, 0)),
        Setting("num_layers", 2, "hidden layers", lambda n, v, c: _integer(n, v, 0), ("-nhl",),
                "model"),
        Setting("hidden_size", [256], "units per hidden layer: one size, or one per layer",
                _hidden_sizes, ("-sz",), "model", nargs="+", metavar="SIZE"),
        Setting("activation", "relu", "hidden activation", _choice(ACTIVATIONS), ("-a",),
                "model", ACTIVATIONS),
        Setting("weight_init", "xavier", "weight initialisation", _choice(WEIGHT_INITS),
                ("-w_i",), "model", WEIGHT_INITS),
        Setting("dropout", 0.0, "probability of dropping each hidden unit while training",
                lambda n, v, c: _number(n, v, 0, 1, high_open=True), group="model"),
        Setting("label_smoothing", 0.0, "label smoothing of the cross-entropy targets "
                "(torch semantics)", lambda n, v, c: _number(n, v, 0, 1, high_open=True)),
        Setting("clip_grad_norm", None, "scale each step's gradient to at most this L2 norm",
                lambda n, v, c: None if v is None else _positive(n, v), metavar="NORM"),
        Setting("lr_schedule", "constant", "learning-rate schedule", _choice(SCHEDULES),
                group="schedule", choices=SCHEDULES),
        Setting("monitor", "val_accuracy", "validation metric of the best epoch, early "
                "stopping and reduce_on_plateau", _choice(MONITOR_METRICS), group="schedule",
                choices=MONITOR_METRICS),
        Setting("early_stopping", 0, "stop after this many epochs without improvement "
                "(0: never)", lambda n, v, c: _integer(n, v, 0), group="schedule",
                metavar="PATIENCE"),
        Setting("min_delta", 0.0, "smallest change of the monitored metric that counts as "
                "an improvement", lambda n, v, c: _number(n, v, 0), group="schedule"),
        Setting("restore_best", None, "test, figures and the saved model use the best epoch",
                _boolean, group="schedule", nargs="?", const=True, metavar="BOOL",
                default_help="on with early stopping"),
        Setting("device", "auto", f"where to train: {DEVICES_HELP}",
                lambda n, v, c: canonical_device(v), group="model", metavar="{cpu,cuda,auto}"),
        Setting("dtype", "float32", "floating-point precision", _dtype, group="model",
                metavar="{" + ",".join(DTYPES) + "}"),
        Setting("blas_threads", None, "threads of the matrix products; the rounding depends "
                "on it, so pin it to repeat a run exactly (default: BLAS's own choice)",
                lambda n, v, c: None if v is None else _integer(n, v, 1), group="model",
                metavar="N"),
        Setting("name", None, "run name (default: built from the settings that differ from "
                "the defaults)", _run_name, group="run", default_help="generated"),
        Setting("tags", [], "labels of the run (W&B tags)", _names, group="run", nargs="+",
                metavar="TAG", default_help="none"),
        Setting("wandb_project", "fastmlp", "W&B project", _string, ("-wp",), "run"),
        Setting("wandb_entity", None, "W&B entity, user or team (default: your W&B default)",
                _string, ("-we",), "run"),
    ]  # fmt: skip


# Settings that the core declares: an optimizer hyperparameter of the same name maps onto it.
_CORE_OWNS = frozenset({"learning_rate", "weight_decay"})


def _shared_hyperparameter_settings(
    entries: Mapping[str, Any], group: str, of: Callable[[Any], tuple[Hyperparameter, ...]]
) -> list[Setting]:
    """One setting per hyperparameter setting name that some entry of a registry declares
    (default None: each entry's own), e.g. ``beta1``: "decay of the gradient average
    (adam, nadam, adamw; default: 0.9)"."""
    found: dict[str, list[tuple[str, Hyperparameter]]] = {}
    for owner, entry in entries.items():
        for parameter in of(entry):
            if parameter.setting_name not in _CORE_OWNS:
                found.setdefault(parameter.setting_name, []).append((owner, parameter))
    settings = []
    for name, declared in found.items():
        parameter = declared[0][1]
        check = _epsilon if name == "epsilon" else _hyperparameter_check(parameter)
        owners = list(dict.fromkeys(owner for owner, _ in declared))
        defaults = f"default: {', '.join(sorted({f'{p.default:g}' for _, p in declared}))}"
        missing = [entry for entry in entries if entry not in owners]
        whose = f"{', '.join(owners)}; "
        if not missing:
            whose = ""
        elif len(missing) < len(owners) and len(missing) <= 2:
            whose = f"all but {', '.join(missing)}; "
        settings.append(
            Setting(
                name,
                None,
                f"{parameter.help} ({whose}{defaults})",
                check,
                parameter.flags,
                group,
            )
        )
    return settings


def _optimizer_settings() -> list[Setting]:
    """One setting per optimizer hyperparameter (see _shared_hyperparameter_settings)."""
    return _shared_hyperparameter_settings(
        OPTIMIZERS.entries, "optimizer", lambda cls: cls.hyperparameters
    )


def _schedule_settings() -> list[Setting]:
    """One setting per schedule hyperparameter (``lr_gamma``, ``warmup_epochs``...)."""
    return _shared_hyperparameter_settings(
        SCHEDULES.entries, "schedule", lambda cls: cls.all_hyperparameters()
    )


def _activation_settings() -> list[Setting]:
    """One setting per activation hyperparameter, e.g. ``leaky_relu_slope``."""
    settings = []
    for name, declaration in ACTIVATIONS.entries.items():
        for parameter in declaration.hyperparameters:
            setting = parameter.setting or f"{name}_{parameter.name}"
            settings.append(
                Setting(
                    setting,
                    None,
                    f"{parameter.help} (default: {parameter.default:g})",
                    _hyperparameter_check(parameter),
                    parameter.flags,
                    "model",
                )
            )
    return settings


def settings() -> dict[str, Setting]:
    """Every run setting by name, in the order they are checked and shown: fastmlp's own,
    then the registered optimizers', schedules' and activations' hyperparameters."""
    table: dict[str, Setting] = {}
    for setting in (
        *_core_settings(),
        *_optimizer_settings(),
        *_schedule_settings(),
        *_activation_settings(),
    ):
        table.setdefault(setting.name, setting)
    return table


def defaults() -> dict[str, Any]:
    """Every setting's default value."""
    return {name: setting.default for name, setting in settings().items()}


# ------------------------------------------------------------------- TrainConfig


def validation_watchers(values: Mapping[str, Any]) -> list[str]:
    """What in a configuration watches the validation metric (and so needs a validation
    split): early stopping, restore_best, a schedule that monitors it."""
    schedule = SCHEDULES.get(values["lr_schedule"])
    wanted = (
        (f"early_stopping {values['early_stopping']}", values["early_stopping"]),
        ("restore_best", values["restore_best"]),
        (f"the {schedule.name} schedule", schedule.monitors),
    )
    return [what for what, on in wanted if on]


def _check_combinations(values: dict[str, Any]) -> None:
    """Raise for settings that are valid alone but not together."""
    if values["label_smoothing"] and values["loss"] not in smoothable_losses():
        raise ConfigError(
            f"label_smoothing applies to the {' and '.join(smoothable_losses())} loss only, "
            f"not {values['loss']}"
        )
    schedule = SCHEDULES.get(values["lr_schedule"])
    watchers = validation_watchers(values)
    if watchers and not values["val_fraction"]:
        raise ConfigError(
            f"{watchers[0]} watches {values['monitor']}, which needs a validation split: "
            "set val_fraction above 0 (e.g. 0.1)"
        )
    warmup = values.get("warmup_epochs") or 0
    if warmup and not schedule.has_warmup:
        raise ConfigError(
            f"the {schedule.name} schedule has its own warm-up (pct_start): drop warmup_epochs"
        )
    if warmup:
        try:
            schedule(warmup_epochs=warmup).check_epochs(values["epochs"])
        except ValueError as error:
            raise ConfigError(str(error)) from None


class TrainConfig(Mapping[str, Any]):
    """A checked, complete run configuration: read it as a mapping (``config["epochs"]``)
    or by attribute (``config.epochs``). Build one with :meth:`from_settings`."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    @classmethod
    def from_settings(cls, raw: Mapping[str, Any] | None = None) -> TrainConfig:
        """Defaults filled in, every value checked and spelled canonically.

        Raises:
            ConfigError: an unknown setting (with the close matches) or an invalid value.
        """
        raw = {} if raw is None else raw
        if not isinstance(raw, Mapping):
            raise ConfigError(f"a configuration must map setting names to values, got {shown(raw)}")
        table = settings()
        unknown = sorted(str(key) for key in raw if key not in table)
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(table), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)}{hint}; known: {', '.join(table)}"
            )
        values: dict[str, Any] = {}
        # dtype first: epsilon's smallest value depends on it
        order = ["dtype", *(name for name in table if name != "dtype")]
        for name in order:
            value = raw.get(name)
            if value is None:
                value = table[name].default
            values[name] = None if value is None else table[name].check(name, value, values)
        _check_combinations(values)
        return cls({name: values[name] for name in table})

    def replace(self, **changes: Any) -> TrainConfig:
        """A new configuration with some settings changed (checked again)."""
        return TrainConfig.from_settings({**self._values, **changes})

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain, JSON-serialisable dict."""
        return {key: list(value) if isinstance(value, list) else value
                for key, value in self._values.items()}  # fmt: skip

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["_values"][key]
        except KeyError:
            raise AttributeError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"TrainConfig({self._values!r})"

    # ---------------------------------------------------------- what it builds

    def optimizer_hyperparameters(self) -> dict[str, Any]:
        """The keyword arguments for ``fastmlp.optim.create`` (None: the optimizer's
        default): every registered optimizer hyperparameter, from its setting."""
        values: dict[str, Any] = {}
        for cls in OPTIMIZERS.entries.values():
            for parameter in cls.hyperparameters:
                values[parameter.name] = self._values.get(parameter.setting_name)
        return values

    def schedule_hyperparameters(self) -> dict[str, Any]:
        """The keyword arguments for ``fastmlp.schedules.create`` (None: the default)."""
        return {
            parameter.name: self._values.get(parameter.setting_name)
            for cls in SCHEDULES.entries.values()
            for parameter in cls.all_hyperparameters()
        }

    def activation_options(self) -> dict[str, float]:
        """The hyperparameters of the chosen activation that the settings give."""
        declaration = ACTIVATIONS.get(self._values["activation"])
        options = {}
        for parameter in declaration.hyperparameters:
            value = self._values.get(parameter.setting or f"{declaration.name}_{parameter.name}")
            if value is not None:
                options[parameter.name] = value
        return options


def normalize_config(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """``TrainConfig.from_settings(raw)`` as a plain dict."""
    return TrainConfig.from_settings(raw).to_dict()


def optimizer_hyperparameters(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments for ``fastmlp.optim.create`` of a configuration."""
    return TrainConfig.from_settings(config).optimizer_hyperparameters()


# ------------------------------------------------------------------------ files

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
