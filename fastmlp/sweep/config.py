"""Sweep configuration: a W&B sweep YAML file, checked and translated into Optuna terms.

The format is the one ``wandb sweep`` reads, so the same file drives both engines, and
configs written for W&B and their authors' own programs run as they are::

    program: train.py                  # metadata: fastmlp runs every trial itself
    method: bayes                      # grid | random | bayes
    metric: {name: val_acc, goal: maximize}   # val_accuracy; goal defaults to minimize
    run_cap: 50                        # optional: the sweep's total number of trials
    early_terminate: {type: hyperband, min_iter: 2, eta: 3}
    parameters:
      n_epoch: {values: [5, 10]}                        # epochs
      hidden_size: {values: [[32, 64, 128], [784]]}     # one size per hidden layer
      learning_rate: {distribution: q_log_uniform_values, min: 1e-4, max: 1e-1, q: 1e-4}
      optimizer:                                        # nested parameters: flattened
        parameters:
          name: {values: [adam, nadam]}                 # optimizer
          beta1: {distribution: beta, a: 9, b: 1}
    command: [${env}, python, train.py, --dataset, mnist, ${args}]   # dataset: constant

* **parameter names** resolve through :mod:`fastmlp.sweep.aliases` (settings, their flags,
  common aliases, ``--param_map OLD=NEW``); an unknown name is one error with the close
  matches;
* **distributions**: all of W&B's, with its meaning (:mod:`fastmlp.sweep.distributions`);
* **metric names**: ``val_acc``, ``validation_accuracy``, ``accuracy``... (``test_accuracy``
  runs, with a warning: it selects on the test set);
* **hyperband**: ``min_iter``, ``max_iter``, ``s``, ``eta``, ``strict`` as far as Optuna's
  HyperbandPruner can honour them (:mod:`fastmlp.sweep.hyperband`);
* **command**: fixed flags become constants (:mod:`fastmlp.sweep.command`);
* **YAML traps**: ``1e-3`` read as text is a number, keys and text are trimmed, repeated
  values are dropped, ``True`` and ``1`` are one value;
* **hidden sizes**: a list value gives one size per hidden layer; ``num_layers`` must agree,
  or, when the config does not set it, is each list's length.

What the local engine ignores (``program``, the command's macros, W&B-only keys) is kept in
:attr:`SweepConfig.ignored`; ``fastmlp sweep CONFIG --dry_run`` shows all of it.
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from os import PathLike
from pathlib import Path
from typing import Any

from fastmlp.runs.config import (
    ConfigError,
    defaults,
    normalize_config,
    parse_yaml,
    read_text_file,
)
from fastmlp.sweep.aliases import (
    FINAL_METRICS,
    UnknownNameError,
    close_matches,
    key,
    parts,
    resolve_metric,
    resolve_parameter,
    unknown_parameter,
)
from fastmlp.sweep.command import parse_command
from fastmlp.sweep.distributions import (
    CHECKED_TAIL,
    DISTRIBUTION_ALIASES,
    DISTRIBUTION_KEYS,
    GRID_DISTRIBUTIONS,
    QUANTILE_SPACE,
    Parameter,
    categorical,
    infer_distribution,
    number,
    ranged,
)
from fastmlp.sweep.errors import SweepConfigError
from fastmlp.sweep.hyperband import Hyperband, parse_hyperband

__all__ = ["Hyperband", "Parameter", "SweepConfig", "SweepConfigError", "parse_sweep_config"]

METHODS = ("grid", "random", "bayes")
GOALS = ("maximize", "minimize")
# The keys fastmlp reads. param_map is fastmlp's own: --param_map, kept with the sweep.
TOP_LEVEL_KEYS = (
    "name", "description", "method", "metric", "parameters", "early_terminate", "run_cap",
    "project", "entity", "program", "command", "param_map",
)  # fmt: skip
# W&B's other keys, and why the local engine has no use for them.
WANDB_ONLY_KEYS = {
    "apiVersion": "W&B's config format version",
    "kind": "W&B's config kind",
    "controller": "where W&B runs the sweep controller",
    "scheduler": "W&B Launch's scheduler",
    "job": "a W&B Launch job",
    "image_uri": "a W&B Launch image",
    "metrics": "W&B's extra metrics list",
}
SPEC_KEYS = ("distribution", "value", "values", "probabilities", "min", "max", "q", "mu",
             "sigma", "a", "b")  # fmt: skip
# A grid search with more points than this is a mistake (a min..max over millions).
MAX_GRID_POINTS = 1_000_000
# Sweep names become directory and study names.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Why the program and the command's macros and leading words mean nothing here.
RUNS_ITSELF = "fastmlp runs every trial itself"


@dataclass(frozen=True)
class Ignored:
    """Something in the config the local engine does not use, and why."""

    what: str
    why: str


@dataclass(frozen=True)
class SweepConfig:
    """A checked sweep configuration.

    ``parameters`` are the swept settings by setting name, ``constants`` the fixed ones
    (``value`` specs, fixed ``command`` flags, ``project``/``entity`` as
    ``wandb_project``/``wandb_entity``); ``sources`` says where each setting came from
    (``n_epoch``, ``command: --dataset mnist``). ``names`` maps every parameter name of the
    config (dotted when nested) to its setting (``""``: dropped by ``--param_map``), which
    reads W&B's sampled values. ``layers_from_sizes``: num_layers is each hidden_size list's
    length. ``raw`` is the mapping as read (with ``param_map``), which the sweep's identity
    and the W&B engine use.
    """

    name: str
    method: str
    metric: str
    goal: str
    parameters: dict[str, Parameter]
    constants: dict[str, Any]
    hyperband: Hyperband | None = None
    run_cap: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    metric_source: str = ""
    sources: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    nested: frozenset[str] = frozenset()
    layers_from_sizes: bool = False
    layers_note: str = ""
    ignored: tuple[Ignored, ...] = ()
    warnings: tuple[str, ...] = ()

    def distributions(self) -> dict[str, Any]:
        """Optuna distributions of the swept parameters, by setting name."""
        return {
            name: parameter.optuna_distribution() for name, parameter in self.parameters.items()
        }

    def grid(self) -> dict[str, list[Any]]:
        """The search space of a grid search (Optuna's GridSampler takes it as is)."""
        return {name: parameter.grid_values() for name, parameter in self.parameters.items()}

    def grid_size(self) -> int:
        """The number of points of the grid."""
        return math.prod(parameter.grid_size() for parameter in self.parameters.values())

    def max_epochs(self) -> int:
        """The most epochs any trial trains (Hyperband's maximum resource)."""
        if "epochs" in self.parameters:
            return int(self.parameters["epochs"].largest())
        return int(self.constants.get("epochs", defaults()["epochs"]))

    def values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The setting values of Optuna's sampled ``params`` (quantiles, JSON text and
        unquantised points decoded)."""
        return {
            name: parameter.decode(params[name])
            for name, parameter in self.parameters.items()
            if name in params
        }

    def settings(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's settings for ``run_experiment``: the constants plus the values of
        Optuna's sampled ``params``."""
        return self.completed(self.values(params))

    def wandb_settings(self, chosen: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's settings from the values W&B's agent chose, by the config's own
        (possibly nested) parameter names."""
        values = {}
        for source, value in self._flattened(chosen):
            setting = self.names.get(source)
            if setting:
                values[setting] = _setting_value(setting, value)
        return self.completed(values)

    def _flattened(self, chosen: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
        for name, value in chosen.items():
            path = f"{prefix}{str(name).strip()}"
            if path in self.nested and isinstance(value, Mapping):
                yield from self._flattened(value, f"{path}.")
            else:
                yield path, value

    def completed(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's settings from the swept settings' ``values``: the constants added, and
        num_layers set to the hidden_size list's length when the config leaves it to that."""
        settings = {**self.constants, **values}
        sizes = settings.get("hidden_size")
        if self.layers_from_sizes and isinstance(sizes, list):
            settings["num_layers"] = len(sizes)
        return settings

    def wandb_config(self) -> dict[str, Any]:
        """The config to create the W&B sweep from: as written, but with the metric fastmlp
        logs (``val_acc`` -> ``val_accuracy``) and without fastmlp's ``param_map``."""
        config = {key: value for key, value in self.raw.items() if key != "param_map"}
        config["metric"] = {**config["metric"], "name": self.metric}
        return config


def sweep_identity(raw: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two configurations the same sweep: all keys but name, description, run_cap."""
    return {
        key: value for key, value in raw.items() if key not in ("name", "description", "run_cap")
    }


# ------------------------------------------------------------------------- values


@cache
def _whole_numbers(setting: str) -> bool:
    """Whether a setting takes whole numbers only (3 is valid, 2.5 is not)."""
    try:
        normalize_config({setting: 3})
    except ConfigError:
        return False
    try:
        normalize_config({setting: 2.5})
    except ConfigError:
        return True
    return False


def _numbers(value: Any) -> Any:
    """``value`` with numeric text as numbers, in lists too."""
    if isinstance(value, list):
        return [_numbers(item) for item in value]
    return number(value)


def _setting_value(setting: str, value: Any) -> Any:
    """A value W&B chose, as the setting takes it: numeric text as numbers, a float of a
    whole-number setting rounded (W&B's uniform gives 37.4 epochs)."""
    value = _numbers(value)
    if isinstance(value, float) and _whole_numbers(setting):
        return round(value)
    return value


def _invalid(setting: str, value: Any) -> str | None:
    """Why ``value`` is not a valid value of ``setting`` (None: it is); a list of hidden
    sizes is checked with as many hidden layers."""
    layered = setting == "hidden_size" and isinstance(value, list)
    context = {"num_layers": len(value)} if layered else {}
    try:
        normalize_config({**context, setting: value})
    except ConfigError as error:
        return str(error)
    return None


def _check_value(setting: str, source: str, value: Any, swept: bool) -> None:
    """Raise unless ``value`` is a valid value of ``setting``; swept values must also be
    something Optuna can store."""
    if swept and isinstance(value, dict):
        raise SweepConfigError(f"sweep parameter {source!r}: value {value!r} is a mapping")
    reason = _invalid(setting, value)
    if reason is not None:
        raise SweepConfigError(f"sweep parameter {source!r}: {reason}")


# --------------------------------------------------------------------- parameters


@dataclass
class _Parsed:
    """What parsing the parameters and the command found, as it goes."""

    grid: bool
    param_map: dict[str, str]
    parameters: dict[str, Parameter] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    nested: set[str] = field(default_factory=set)
    ignored: list[Ignored] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    used_map: set[str] = field(default_factory=set)

    def setting_of(self, path: tuple[str, ...], source: str) -> str | None:
        """The setting a parameter (or command flag) names; None when --param_map drops it."""
        for spelling in (source, key(source)):
            if spelling in self.param_map:
                self.used_map.add(spelling)
                target = self.param_map[spelling]
                if not target:
                    return None
                setting = resolve_parameter((target,))
                if setting is None:
                    raise SweepConfigError(
                        f"--param_map {source}={target}: {target!r} is not a fastmlp setting"
                        f"{close_matches(target)}"
                    )
                return setting
        setting = resolve_parameter(path)
        if setting is None:
            raise unknown_parameter(source)
        return setting

    def claim(self, setting: str, source: str) -> None:
        """Record that ``source`` sets ``setting``; two names for one setting are an error."""
        if setting in self.sources:
            raise SweepConfigError(
                f"sweep parameters {self.sources[setting]!r} and {source!r} both set {setting}: "
                "keep one"
            )
        self.sources[setting] = source


def _leaves(
    specs: Mapping[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every parameter spec with its path; nested ``parameters:`` blocks flattened, each
    announced first by its own path plus an empty part."""
    for name, spec in specs.items():
        here = (*path, str(name).strip())
        if isinstance(spec, Mapping) and "parameters" in spec:
            extra = [k for k in spec if k != "parameters"]
            if extra or not isinstance(spec["parameters"], Mapping):
                raise SweepConfigError(
                    f"sweep parameter {'.'.join(here)!r}: a nested block holds only "
                    "'parameters:', a mapping of parameters"
                )
            yield (*here, ""), None  # marks a nested block
            yield from _leaves(spec["parameters"], here)
        else:
            yield here, spec


def _parameter(parsed: _Parsed, path: tuple[str, ...], spec: Any) -> None:
    source = ".".join(path)
    dotted = tuple(part for name in path for part in parts(name))
    setting = parsed.setting_of(dotted, source)
    parsed.names[source] = setting or ""
    if setting is None:
        parsed.ignored.append(Ignored(f"parameter {source}", f"--param_map {source}= drops it"))
        return
    parsed.claim(setting, source)
    if not isinstance(spec, Mapping):
        raise SweepConfigError(
            f"sweep parameter {source!r} must be a mapping such as {{values: [...]}}, got {spec!r}"
        )
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), SPEC_KEYS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SweepConfigError(
            f"sweep parameter {source!r}: key {unknown[0]!r} is not a W&B parameter key{hint}"
        )
    written = spec.get("distribution")
    distribution = str(written).strip().lower() if written is not None else None
    distribution = DISTRIBUTION_ALIASES.get(distribution, distribution)
    if distribution is None:
        distribution = infer_distribution(source, spec)
    if distribution not in DISTRIBUTION_KEYS:
        close = difflib.get_close_matches(distribution, list(DISTRIBUTION_KEYS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SweepConfigError(
            f"sweep parameter {source!r}: unknown distribution {written!r}{hint}; W&B's are "
            f"{', '.join(DISTRIBUTION_KEYS)}"
        )
    extra = [k for k in spec if k != "distribution" and k not in DISTRIBUTION_KEYS[distribution]]
    if extra:
        raise SweepConfigError(
            f"sweep parameter {source!r}: {extra[0]!r} does not apply to distribution "
            f"{distribution} (it takes {', '.join(DISTRIBUTION_KEYS[distribution])})"
        )
    if parsed.grid and distribution not in GRID_DISTRIBUTIONS:
        raise SweepConfigError(
            f"method grid needs a finite set of values, but parameter {source!r} has the "
            f"continuous distribution {distribution}: give values, or use int_uniform or "
            "q_uniform, or method random or bayes"
        )
    if distribution == "constant":
        if "value" not in spec:
            raise SweepConfigError(
                f"sweep parameter {source!r}: distribution constant needs 'value'"
            )
        value = _numbers(spec["value"])
        _check_value(setting, source, value, swept=False)
        parsed.constants[setting] = value
        return
    if distribution == "categorical":
        parameter, repeats = categorical(setting, source, spec, grid=parsed.grid)
        if parameter.probabilities and parsed.grid:
            raise SweepConfigError(
                f"sweep parameter {source!r}: method grid visits every value once; "
                "drop its probabilities"
            )
        if repeats:
            shown = ", ".join(map(str, repeats))
            parsed.ignored.append(Ignored(f"parameter {source}: repeated {shown}", "listed twice"))
    else:
        parameter = ranged(
            setting, source, distribution, spec, grid=parsed.grid, integer=_whole_numbers(setting)
        )
    if distribution in QUANTILE_SPACE:
        _check_value(setting, source, parameter.first_value(), swept=True)
        parsed.warnings += _tail_warnings(parameter)
    else:
        for value in parameter.checked_values():
            _check_value(setting, source, value, swept=True)
    parsed.parameters[setting] = parameter


def _tail_warnings(parameter: Parameter) -> list[str]:
    """Warnings for the tails of an unbounded distribution that the setting refuses (a
    normal learning rate below zero): those trials fail, as their runs would under W&B."""
    warnings = []
    for u, tail in ((CHECKED_TAIL, "lower"), (1 - CHECKED_TAIL, "upper")):
        value = parameter.decode(u)
        reason = _invalid(parameter.name, value)
        if reason is not None:
            warnings.append(
                f"sweep parameter {parameter.source!r}: its {tail} tail reaches {value:.4g} "
                f"(the {u:.1%} quantile), which {parameter.name} refuses ({reason}): trials "
                "drawn there fail"
            )
    return warnings


def _command_constants(parsed: _Parsed, raw: Any) -> list[str]:
    """Add the fixed flags of ``command:`` as constants; returns the flags fastmlp does not
    know (ignored)."""
    command = parse_command(raw)
    unknown = []
    if command.skipped:
        parsed.ignored.append(
            Ignored(
                f"command: {' '.join(command.skipped)}",
                f"the interpreter and program W&B's agent starts; {RUNS_ITSELF}",
            )
        )
    if command.macros:
        parsed.ignored.append(
            Ignored(
                f"command: {' '.join(command.macros)}",
                f"W&B's agent macros; {RUNS_ITSELF}, with its sampled values",
            )
        )
    for flag in command.flags:
        shown = " ".join(map(str, flag.value)) if isinstance(flag.value, list) else flag.value
        written = f"{flag.name} {shown}" if flag.value is not True else flag.name
        name = flag.name.lstrip("-")
        try:
            setting = parsed.setting_of((name,), name)
        except UnknownNameError:
            unknown.append(flag.name)
            parsed.ignored.append(Ignored(f"command: {written}", "not a fastmlp setting"))
            continue
        if setting is None:
            parsed.ignored.append(Ignored(f"command: {written}", f"--param_map {name}= drops it"))
            continue
        source = f"command: {written}"
        if setting in parsed.sources:
            earlier = parsed.sources[setting]
            if earlier.startswith("command:"):  # two fixed flags: argparse keeps the last
                parsed.ignored.append(Ignored(earlier, f"{source} comes later, so it wins"))
            elif flag.after_args:
                parsed.parameters.pop(setting, None)
                parsed.names[earlier] = ""
                parsed.ignored.append(
                    Ignored(f"parameter {earlier}", f"{source} comes after ${{args}}, so it wins")
                )
            else:
                parsed.ignored.append(Ignored(source, f"parameter {earlier} wins over it"))
                continue
        value = _numbers(flag.value)
        _check_value(setting, source, value, swept=False)
        parsed.constants[setting] = value
        parsed.sources[setting] = source
    return unknown


def _layers(parsed: _Parsed) -> tuple[bool, str]:
    """Whether num_layers comes from the hidden_size lists, and what --dry_run says."""
    sizes = parsed.parameters.get("hidden_size")
    candidates = list(sizes.choices) if sizes is not None else [parsed.constants.get("hidden_size")]
    lists = [value for value in candidates if isinstance(value, list)]
    if not lists:
        return False, ""
    source = parsed.sources["hidden_size"]
    if "num_layers" in parsed.constants:
        layers = parsed.constants["num_layers"]
        wrong = [value for value in lists if len(value) not in (1, layers)]
        if wrong:
            raise SweepConfigError(
                f"sweep parameter {source!r}: {wrong[0]} gives {len(wrong[0])} hidden sizes, but "
                f"num_layers is {layers}: give one size per hidden layer, or drop num_layers "
                "(each list's length is then the number of hidden layers)"
            )
        return False, f"num_layers {layers} (constant) agrees with every hidden_size list"
    if "num_layers" in parsed.parameters and any(len(value) > 1 for value in lists):
        raise SweepConfigError(
            f"sweep parameter {source!r} lists hidden sizes per layer ({lists[0]}), but "
            f"num_layers is swept too ({parsed.sources['num_layers']!r}): drop num_layers "
            "(each list's length is then the number of hidden layers)"
        )
    if "num_layers" in parsed.parameters:
        return False, f"{source} lists of one size: that size in every hidden layer"
    return True, (
        f"num_layers is the length of each {source} list (a number alone keeps "
        f"{defaults()['num_layers']} layers of that size)"
    )


# ------------------------------------------------------------------- the whole file


def _stripped(raw: Any) -> Any:
    """The config with every key and text trimmed (``'relu '``, ``hidden_size :``)."""
    if isinstance(raw, Mapping):
        return {str(k).strip(): _stripped(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_stripped(v) for v in raw]
    return raw.strip() if isinstance(raw, str) else raw


def _json_compatible(raw: Any) -> Any:
    """The config with values JSON cannot hold (YAML dates and times) as strings, the way
    they are written; Optuna and sweep.json store the config as JSON."""
    if isinstance(raw, Mapping):
        return {str(key): _json_compatible(value) for key, value in raw.items()}
    if isinstance(raw, list):
        return [_json_compatible(value) for value in raw]
    if isinstance(raw, (datetime.date, datetime.time)):
        return raw.isoformat()
    return raw


def parse_param_map(entries: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``--param_map OLD=NEW`` entries as a mapping (``OLD=``: drop OLD).

    Raises:
        SweepConfigError: an entry without ``=`` or without OLD.
    """
    if entries is None:
        return {}
    if isinstance(entries, Mapping):
        items = [(str(old), "" if new is None else str(new)) for old, new in entries.items()]
    else:
        items = []
        for entry in entries:
            old, equals, new = str(entry).partition("=")
            if not equals or not old.strip():
                raise SweepConfigError(
                    f"--param_map takes OLD=NEW (a config's parameter name = a fastmlp "
                    f"setting; OLD= drops it), got {entry!r}"
                )
            items.append((old, new))
    return {old.strip(): new.strip() for old, new in items}


def _top_level(config: Mapping[str, Any]) -> list[Ignored]:
    """Check the top-level keys; what the local engine ignores among them."""
    ignored = []
    for name in config:
        if name in TOP_LEVEL_KEYS:
            continue
        if name in WANDB_ONLY_KEYS:
            ignored.append(Ignored(f"{name}:", f"{WANDB_ONLY_KEYS[name]}; no use locally"))
            continue
        close = difflib.get_close_matches(name, [*TOP_LEVEL_KEYS, *WANDB_ONLY_KEYS], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SweepConfigError(
            f"sweep config key {name!r} is not a W&B sweep key{hint}; W&B's are "
            f"{', '.join([*TOP_LEVEL_KEYS[:-1], *WANDB_ONLY_KEYS])}"
        )
    if "program" in config:
        ignored.append(
            Ignored(f"program: {config['program']}", f"W&B's agent runs it; {RUNS_ITSELF}")
        )
    return ignored


def _metric(raw: Any) -> tuple[str, str, str]:
    """The metric, its goal, and its name as written."""
    if not isinstance(raw, Mapping) or "name" not in raw:
        raise SweepConfigError("sweep config needs metric: {name: val_accuracy, goal: maximize}")
    if "target" in raw:
        raise SweepConfigError(
            "metric.target (end the sweep when a trial reaches it) is not supported by the "
            "local engine: drop it, or use --engine wandb"
        )
    unknown = [k for k in raw if k not in ("name", "goal")]
    if unknown:
        raise SweepConfigError(f"metric key {unknown[0]!r} is not a W&B metric key (name, goal)")
    goal = str(raw.get("goal", "minimize")).strip().lower()
    if goal not in GOALS:
        raise SweepConfigError(f"metric goal must be maximize or minimize, got {raw['goal']!r}")
    return resolve_metric(raw["name"]), goal, str(raw["name"])


def _method(raw: Any) -> str:
    method = str(raw).strip().lower() if raw is not None else None
    if method not in METHODS:
        close = difflib.get_close_matches(str(method), METHODS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SweepConfigError(
            f"sweep config method must be grid, random or bayes, got {raw!r}{hint}"
        )
    return method


def parse_sweep_config(
    raw: Any,
    default_name: str = "sweep",
    param_map: Sequence[str] | Mapping[str, str] | None = None,
) -> SweepConfig:
    """Check a W&B sweep configuration mapping and translate it.

    Args:
        raw: the config as read from YAML.
        default_name: the sweep's name when the config has none.
        param_map: ``--param_map`` entries (``OLD=NEW``), added to the config's own
            ``param_map`` (and kept with it).

    Raises:
        SweepConfigError: naming the first key that is wrong or that the local engine
            cannot honour.
    """
    if not isinstance(raw, Mapping):
        raise SweepConfigError(
            "a sweep config must be a mapping with method, metric and parameters"
        )
    raw = _json_compatible(raw)
    mapping = {**parse_param_map(raw.get("param_map")), **parse_param_map(param_map)}
    if mapping:
        raw = {**raw, "param_map": mapping}
    config = _stripped(raw)
    ignored = _top_level(config)
    method = _method(config.get("method"))
    metric, goal, metric_source = _metric(config.get("metric"))
    name = str(config.get("name") or default_name)
    if not NAME_PATTERN.fullmatch(name):
        raise SweepConfigError(
            f"sweep name {name!r} may only use letters, digits, '_', '.' and '-'"
        )
    specs = config.get("parameters")
    if not isinstance(specs, Mapping) or not specs:
        raise SweepConfigError("sweep config needs parameters: a mapping of setting names to specs")

    parsed = _Parsed(grid=method == "grid", param_map=mapping)
    for key_name in ("project", "entity"):
        value = config.get(key_name)
        if value is not None and not isinstance(value, (str, int)) or isinstance(value, bool):
            raise SweepConfigError(f"sweep config {key_name} must be a name, got {value!r}")
        if value is not None:
            parsed.constants[f"wandb_{key_name}"] = str(value)
    for path, spec in _leaves(specs):
        if path[-1] == "":
            parsed.nested.add(".".join(path[:-1]))
        else:
            _parameter(parsed, path, spec)
    for key_name in ("project", "entity"):
        setting = f"wandb_{key_name}"
        if config.get(key_name) is not None:
            parsed.sources.setdefault(setting, f"{key_name}:")
    warnings = parsed.warnings
    if "command" in config:
        unknown = _command_constants(parsed, config["command"])
        if unknown:
            warnings.append(
                f"command flags that are not fastmlp settings are ignored: {', '.join(unknown)}"
            )
    unused = [old for old in mapping if not {old, key(old)} & parsed.used_map]
    if unused:
        raise SweepConfigError(
            f"--param_map {unused[0]}=...: the config has no parameter or command flag "
            f"{unused[0]!r}"
        )
    layers_from_sizes, layers_note = _layers(parsed)

    hyperband = None
    if config.get("early_terminate") is not None:
        hyperband = parse_hyperband(config["early_terminate"])
        if metric in FINAL_METRICS:
            raise SweepConfigError(
                f"early_terminate prunes on a metric measured every epoch, but {metric} is "
                "measured once, after training: drop early_terminate, or optimise val_accuracy"
            )
    run_cap = number(config.get("run_cap"))
    if run_cap is not None and (
        isinstance(run_cap, bool) or not isinstance(run_cap, int) or run_cap < 1
    ):
        raise SweepConfigError(f"run_cap must be a positive integer, got {config['run_cap']!r}")
    if metric in FINAL_METRICS:
        warnings.append(
            f"metric {metric_source} picks the trial with the best test accuracy: the test set "
            "then selects the model, and its accuracy overstates what a new set would give; "
            "optimise val_accuracy instead"
        )
    sweep = SweepConfig(
        name=name,
        method=method,
        metric=metric,
        goal=goal,
        parameters=parsed.parameters,
        constants=parsed.constants,
        hyperband=hyperband,
        run_cap=run_cap,
        raw=dict(raw),
        metric_source=metric_source,
        sources=parsed.sources,
        names=parsed.names,
        nested=frozenset(parsed.nested),
        layers_from_sizes=layers_from_sizes,
        layers_note=layers_note,
        ignored=(*ignored, *parsed.ignored),
        warnings=(*warnings, *_log_uniform_warnings(sweep_parameters=parsed.parameters)),
    )
    if method == "grid":
        size = sweep.grid_size()
        if size > MAX_GRID_POINTS:
            raise SweepConfigError(
                f"the grid has {size:,} points, more than {MAX_GRID_POINTS:,}: give fewer "
                "values, or use method random or bayes"
            )
    _check_together(sweep)
    if hyperband is not None and hyperband.min_iter > sweep.max_epochs():
        raise SweepConfigError(
            f"early_terminate min_iter {hyperband.min_iter} exceeds the trials' "
            f"{sweep.max_epochs()} epochs: Hyperband could never stop a trial"
        )
    if metric.startswith("val_") and sweep.constants.get("val_fraction") == 0:
        raise SweepConfigError(f"metric {metric} needs a validation split, but val_fraction is 0")
    return sweep


def _log_uniform_warnings(sweep_parameters: Mapping[str, Parameter]) -> list[str]:
    """A warning for each log_uniform whose min and max look like values, not logarithms
    (both in (0, 1): every value then lies between 1 and e)."""
    warnings = []
    for parameter in sweep_parameters.values():
        if parameter.distribution in ("log_uniform", "q_log_uniform") and (
            1 < parameter.low and parameter.high < math.e
        ):
            warnings.append(
                f"sweep parameter {parameter.source!r}: {parameter.distribution} takes min and "
                f"max as natural logarithms, so its values lie in [{parameter.low:.4g}, "
                f"{parameter.high:.4g}]; for values between min and max use "
                f"{parameter.distribution}_values"
            )
    return warnings


def _check_together(config: SweepConfig) -> None:
    """Raise if the constants cannot make a valid run with any value of the swept
    parameters (checked with each parameter's first value): every trial would fail."""
    sample = {name: parameter.first_value() for name, parameter in config.parameters.items()}
    try:
        normalize_config(config.completed(sample))
    except ConfigError as error:
        raise SweepConfigError(f"the sweep's settings do not make a valid run: {error}") from None


def read_sweep_config(
    path: str | PathLike[str],
    name: str | None = None,
    param_map: Sequence[str] | Mapping[str, str] | None = None,
) -> SweepConfig:
    """Read and check a sweep configuration file (YAML, or JSON which is YAML too).

    ``name`` overrides the file's ``name`` (default: the file name without its suffix);
    ``param_map`` holds ``--param_map OLD=NEW`` entries.
    """
    path = Path(path)
    try:
        raw = parse_yaml(read_text_file(path, "sweep config"), path, "sweep config")
    except ConfigError as error:
        raise SweepConfigError(str(error)) from None
    if name is not None and isinstance(raw, Mapping):
        raw = {**raw, "name": name}
    return parse_sweep_config(raw, default_name=path.stem, param_map=param_map)
