"""The names sweep configs use for fastmlp's settings and metrics, and how they are resolved.

A sweep parameter may be named like any spelling that ``fastmlp train`` accepts for a
setting, since its flags come from :func:`fastmlp.runs.config.settings` (``num_layers``,
``--num_layers``, ``-nhl``, ``nhl``), or like one of the names that public assignment
configs use for the same setting (:data:`PARAMETER_ALIASES`: ``n_epoch``,
``hidden_layer_size``, ``lr``...). Lookups ignore case, leading dashes and ``-`` versus
``_``. ``--param_map OLD=NEW`` maps any other name; ``OLD=`` (nothing after ``=``) drops a
parameter that has no fastmlp counterpart.

A nested W&B parameter (``optimizer: {parameters: {lr: ...}}``) and a dotted name
(``hyperparams.lr``) are resolved by their last part (``lr``); a last part that only says
"which one" (``name``, ``type``...) stands for its parent (``optimizer.name`` ->
``optimizer``).

Metric names are resolved the same way against :data:`METRIC_ALIASES` (``val_acc``,
``validation_accuracy``, ``val/accuracy``, ``accuracy`` -> ``val_accuracy``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import cache

from fastmlp.runs.config import settings
from fastmlp.sweep.errors import SweepConfigError

# Names real sweep configs give to fastmlp settings, beyond the settings' own names and flags
# (found in public CS6910 / DA6401 assignment-1 configs and the W&B documentation).
PARAMETER_ALIASES: dict[str, tuple[str, ...]] = {
    "epochs": ("epoch", "n_epoch", "n_epochs", "num_epochs", "nepochs", "max_epochs"),
    "num_layers": (
        "num_hidden_layers", "hidden_layers", "n_hidden_layers", "hidden_layer",
        "hidden_layers_count", "no_of_hidden_layers", "n_layers", "num_hidden",
    ),
    "hidden_size": (
        "hidden_layer_size", "size_hidden_layer", "hidden_sizes", "hidden_layer_sizes",
        "hidden_dim", "hidden_units", "num_neurons", "neurons", "layer_size",
    ),
    "learning_rate": ("lr", "eta", "learningrate"),
    "weight_decay": ("wd", "l2", "l2_reg", "l2_lambda", "l2_regpara", "weightdecay"),
    "batch_size": ("bs", "batch", "batchsize"),
    "optimizer": ("opt", "optim", "optimiser"),
    "activation": (
        "activation_function", "act", "activation_fn", "activations", "hidden_activation",
    ),
    "weight_init": (
        "init", "weight_initialization", "weight_initialisation", "initialization",
        "initialisation", "init_method", "initialization_method", "initializer",
        "weight_initializer",
    ),
    "loss": ("loss_function", "loss_fn", "criterion"),
    "dataset": ("data", "dataset_name"),
    "val_fraction": ("val_ratio", "val_split", "validation_split", "validation_fraction"),
    "seed": ("random_seed",),
    "beta1": ("beta_1",),
    "beta2": ("beta_2",),
    "dropout": ("dropout_rate", "dropout_prob"),
    "wandb_project": ("project",),
    "wandb_entity": ("entity",),
}  # fmt: skip

# The last part of a nested or dotted name that stands for its parent ("optimizer.name").
GENERIC_LEAVES = frozenset({"name", "type", "kind", "choice", "value", "method"})

# Every spelling of each metric a sweep can optimise (after key(): lower case, "_" for
# "-", "/", "." and spaces).
METRIC_ALIASES: dict[str, tuple[str, ...]] = {
    "val_accuracy": (
        "val_acc", "validation_accuracy", "validation_acc", "valid_accuracy", "valid_acc",
        "accuracy", "acc",
    ),
    "val_loss": ("validation_loss", "valid_loss"),
    "train_accuracy": ("train_acc", "training_accuracy", "training_acc"),
    "train_loss": ("training_loss",),
    "test_accuracy": ("test_acc",),
}  # fmt: skip

# Metrics measured once, after training, rather than after every epoch.
FINAL_METRICS = ("test_accuracy",)


class UnknownNameError(SweepConfigError):
    """A parameter or metric name that no setting or metric answers to."""


def key(name: object) -> str:
    """The lookup key of a name: trimmed, lower case, no leading dashes, ``_`` for ``-``,
    ``/``, ``.`` and spaces."""
    text = str(name).strip().lower().lstrip("-")
    for separator in ("-", "/", "."):
        text = text.replace(separator, "_")
    return "_".join(text.split())


@cache
def parameter_names() -> dict[str, str]:
    """Every accepted parameter name (as a lookup key) -> the fastmlp setting it names.

    Raises:
        ValueError: two settings claim one spelling (a bug in the tables, not user input).
    """
    table: dict[str, str] = {}

    def add(spelling: str, setting: str) -> None:
        owner = table.setdefault(key(spelling), setting)
        if owner != setting:
            raise ValueError(f"parameter name {spelling!r} is claimed by {owner} and {setting}")

    known = settings()
    for name, setting in known.items():
        add(name, name)
        for flag in setting.flags:
            add(flag, name)
    for name, aliases in PARAMETER_ALIASES.items():
        if name not in known:
            raise ValueError(f"PARAMETER_ALIASES names {name!r}, which is not a setting")
        for alias in aliases:
            add(alias, name)
    return table


def _close_matches(name: str, table: Mapping[str, str]) -> str:
    close = difflib.get_close_matches(key(name), list(table), n=4, cutoff=0.6)
    shown = [spelling if table[spelling] == spelling else f"{spelling} ({table[spelling]})"
             for spelling in close]  # fmt: skip
    return f" (close: {', '.join(shown)})" if shown else ""


def close_matches(name: str) -> str:
    """`` (close: hidden_layers (num_layers), ...)`` for a parameter name, or nothing."""
    return _close_matches(name, parameter_names())


def parts(name: str) -> tuple[str, ...]:
    """The parts of a dotted name: ``hyperparams.lr`` -> ("hyperparams", "lr")."""
    return tuple(part for part in name.split(".") if part.strip()) or (name,)


def resolve_parameter(path: tuple[str, ...]) -> str | None:
    """The setting a parameter at ``path`` (its nested keys and dotted parts) names, or None.

    The last part decides, unless it only says "which one" (:data:`GENERIC_LEAVES`): then
    its parent does.
    """
    table = parameter_names()
    leaf = path[-1]
    if len(path) > 1 and key(leaf) in GENERIC_LEAVES:
        leaf = path[-2]
    return table.get(key(leaf))


def unknown_parameter(source: str) -> UnknownNameError:
    """The error for a parameter name that nothing resolves, with the close matches."""
    leaf = parts(source)[-1]
    return UnknownNameError(
        f"sweep parameter {source!r} is not a fastmlp setting"
        f"{close_matches(leaf)}; map it with --param_map "
        f"{source}=SETTING, or drop it with --param_map {source}="
    )


@cache
def metric_names() -> dict[str, str]:
    """Every accepted metric name (as a lookup key) -> the metric it names."""
    table = {}
    for metric, aliases in METRIC_ALIASES.items():
        for spelling in (metric, *aliases):
            table[key(spelling)] = metric
    return table


def resolve_metric(name: object) -> str:
    """The fastmlp metric a sweep config's ``metric.name`` means.

    Raises:
        UnknownNameError: no metric answers to it (the message lists close matches).
    """
    table = metric_names()
    found = table.get(key(name))
    if found is None:
        raise UnknownNameError(
            f"unknown metric name {name!r}{_close_matches(str(name), table)}; fastmlp "
            f"measures {', '.join(METRIC_ALIASES)}"
        )
    return found
