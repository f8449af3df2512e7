"""One registry per concept: names, aliases and hyperparameters declared once.

Optimizers, activations, losses, weight initialisations and datasets each have a
:class:`Registry`. An entry declares its canonical name, its aliases and its
:class:`Hyperparameter` s (default and valid range); everything else is derived from that:
the command line's choices and help, the checks of a run configuration
(``fastmlp.runs.config``), the sweep-parameter checks, the README tables (a test compares
them) and the tests' tables. Adding an entry is writing its one declaration: the file that
makes it (an optimizer's module in ``fastmlp/optim/``, an activation's in
``fastmlp/nn/activations/``) registers it when imported.
"""

from __future__ import annotations

import difflib
import importlib
import math
import pkgutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from fastmlp.errors import UserError, shown

Entry = TypeVar("Entry")

# The largest whole-number setting accepted (epochs, patience...): far beyond any real run,
# and small enough for every integer type a kernel or a file format may store it in.
LARGEST_INTEGER = 2**31 - 1


def import_entry_modules(package: str, path: Iterable[str], first: Iterable[str]) -> None:
    """Import every module of ``package`` (its ``__path__``) so that each registers its
    entry: the ``first`` ones in that order (the command line's order of choices), then
    every other file by name. A module that declares no entry may be among them."""
    for name in (*first, *sorted(m.name for m in pkgutil.iter_modules(path))):
        importlib.import_module(f"{package}.{name}")


class UnknownChoiceError(UserError):
    """A name that no entry of a registry has; the message lists the choices."""


@dataclass(frozen=True)
class Hyperparameter:
    """A number an entry takes, with its default and valid range.

    ``name`` is the keyword the entry's code takes; ``setting`` the name of the run setting
    (and long command-line flag) that sets it, ``flags`` its other command-line spellings.
    The value must satisfy ``low <= value <= high`` (``<`` where ``low_open`` /
    ``high_open``); ``integer`` ones must be whole numbers.
    """

    name: str
    default: float
    help: str
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    setting: str | None = None
    flags: tuple[str, ...] = ()

    @property
    def setting_name(self) -> str:
        """The run setting (and long flag) that sets this hyperparameter."""
        return self.setting or self.name

    def describe_range(self) -> str:
        """``in [0, 1)``, ``> 0``, ``>= 0``, or ``a number``: what a value must be."""
        if math.isinf(self.low) and math.isinf(self.high):
            return "a number"
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"

    def check(self, value: Any, label: str | None = None) -> float | int:
        """``value`` as a number in range (an int for ``integer``), or a UserError naming it
        as ``label`` (default: the hyperparameter's name)."""
        label = label or self.name
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(str(value).strip())
            except (ValueError, OverflowError):
                raise UserError(
                    f"{label} must be {self.describe_range()}, got {shown(value)}"
                ) from None
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise UserError(
                f"{label} must be {self.describe_range()}, got {shown(value)}"
            ) from None
        if self.integer and abs(number) > LARGEST_INTEGER:
            raise UserError(f"{label} must be at most {LARGEST_INTEGER}, got {shown(value)}")
        low_ok = number > self.low if self.low_open else number >= self.low
        high_ok = number < self.high if self.high_open else number <= self.high
        if not math.isfinite(number) or not low_ok or not high_ok:
            raise UserError(f"{label} must be {self.describe_range()}, got {shown(value)}")
        if self.integer:
            if number != int(number):
                raise UserError(f"{label} must be a whole number, got {shown(value)}")
            return int(number)
        return number


def checked_values(
    kind: str, name: str, declared: Iterable[Hyperparameter], values: Mapping[str, Any]
) -> dict[str, Any]:
    """Every ``declared`` hyperparameter's value: the one in ``values`` checked, or its
    default when absent or None; a TypeError for a keyword none declares (``kind`` and
    ``name`` say whose: "optimizer", "adam")."""
    parameters = {parameter.name: parameter for parameter in declared}
    unknown = sorted(set(values) - set(parameters))
    if unknown:
        raise TypeError(f"{kind} {name!r} has no hyperparameter {unknown[0]!r}")
    return {
        key: parameter.default if values.get(key) is None else parameter.check(values[key])
        for key, parameter in parameters.items()
    }


def per_model_values(values: Mapping[str, Any]) -> tuple[int, list[dict[str, Any]] | None]:
    """(K, the K models' values) when some value is a sequence of K (one per model of a
    stack: an optimizer's or a schedule's hyperparameters), else (1, None); a ValueError for
    sequences of different or zero lengths."""
    lengths = {
        key: len(value)
        for key, value in values.items()
        if isinstance(value, (list, tuple, np.ndarray))
    }
    if not lengths:
        return 1, None
    if len(set(lengths.values())) > 1 or 0 in lengths.values():
        given = ", ".join(f"{key}: {length}" for key, length in lengths.items())
        raise ValueError(
            f"per-model hyperparameters need one value per model, the same number for each "
            f"(got {given})"
        )
    models = next(iter(lengths.values()))
    return models, [
        {key: (value[index] if key in lengths else value) for key, value in values.items()}
        for index in range(models)
    ]


def checked_or_per_model(
    kind: str,
    name: str,
    declared: Iterable[Hyperparameter],
    values: Mapping[str, Any],
    make: Any,
) -> tuple[int, list[Any] | None, dict[str, Any]]:
    """(K, members, checked) of an entry built from ``values`` (an optimizer, a schedule):
    for one model (1, None, :func:`checked_values`); with a sequence of K for some value
    (one per model of a stack), the K members ``make(**model_values)`` and the entry's
    values from theirs: a tuple of the K where ``values`` had a sequence, else the value
    all share."""
    n_models, models = per_model_values(values)
    if models is None:
        return 1, None, checked_values(kind, name, declared, values)
    members = [make(**model) for model in models]
    member_values = [member.hyperparameter_values() for member in members]
    checked = {
        key: (tuple(one[key] for one in member_values)
              if isinstance(values.get(key), (list, tuple, np.ndarray)) else value)
        for key, value in member_values[0].items()
    }  # fmt: skip
    return n_models, members, checked


def values_of(entry: Any, declared: Iterable[Hyperparameter]) -> dict[str, Any]:
    """The keyword arguments that rebuild ``entry`` (JSON-serialisable): its value of each
    ``declared`` hyperparameter, a list of one per model where they differ across a stack."""
    return {
        parameter.name: (list(value) if isinstance(value, tuple) else value)
        for parameter in declared
        for value in (getattr(entry, parameter.name),)
    }


def entry_repr(entry: Any) -> str:
    """``Adam(lr=0.001, ...)``: the entry's class and hyperparameter values, a per-model
    value as ``[0.1, 0.5]``."""

    def shown(value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(f"{item:g}" for item in value) + "]"
        return f"{value:g}"

    values = ", ".join(
        f"{key}={shown(value)}" for key, value in entry.hyperparameter_values().items()
    )
    return f"{type(entry).__name__}({values})"


def own_values(
    kind: str, name: str, own: set[str], shared: set[str], values: Mapping[str, Any]
) -> dict[str, Any]:
    """The given values of an entry's ``own`` hyperparameters (None: left to the default);
    one that only other entries of the registry have (``shared``) is ignored, since callers
    such as the command line pass the same set to every entry; anything else is a TypeError."""
    kwargs = {}
    for key, value in values.items():
        if key in own:
            if value is not None:
                kwargs[key] = value
        elif key not in shared:
            raise TypeError(f"{kind} {name!r} has no hyperparameter {key!r}")
    return kwargs


@dataclass
class Registry(Generic[Entry]):
    """Entries of one concept by canonical name, with their aliases (any case)."""

    concept: str
    entries: dict[str, Entry] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def key(name: Any) -> str:
        """The lookup key of a name: lower case, spaces trimmed, ``-`` and spaces as ``_``."""
        return "_".join(str(name).strip().lower().replace("-", "_").split())

    def register(self, name: str, entry: Entry, aliases: tuple[str, ...] = ()) -> Entry:
        """Add ``entry`` under ``name`` and ``aliases``; a name may be registered once."""
        for spelling in (name, *aliases):
            key = self.key(spelling)
            owner = self.aliases.get(key)
            if owner is not None and owner != name:
                raise ValueError(f"{self.concept} name {spelling!r} is already taken by {owner!r}")
            self.aliases[key] = name
        self.entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry and its aliases (tests add and remove throwaway entries)."""
        self.entries.pop(name, None)
        for key in [key for key, owner in self.aliases.items() if owner == name]:
            del self.aliases[key]

    def canonical(self, name: Any) -> str:
        """The canonical name of ``name`` or one of its aliases (any case, ``-`` or ``_``)."""
        found = self.aliases.get(self.key(name))
        if found is None:
            close = difflib.get_close_matches(self.key(name), list(self.aliases), n=3)
            hint = f" (did you mean {', '.join(sorted({self.aliases[c] for c in close}))}?)"
            raise UnknownChoiceError(
                f"unknown {self.concept} {name!r}: choose one of {', '.join(self.names())}"
                + (hint if close else "")
            )
        return found

    def get(self, name: Any) -> Entry:
        """The entry of ``name`` (canonical or alias)."""
        return self.entries[self.canonical(name)]

    def names(self) -> list[str]:
        """The canonical names, in registration order."""
        return list(self.entries)

    def aliases_of(self, name: str) -> list[str]:
        """The other spellings that resolve to ``name`` (lookup keys)."""
        return sorted(key for key, owner in self.aliases.items() if owner == name and key != name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __contains__(self, name: Any) -> bool:
        return self.key(name) in self.aliases

    def __len__(self) -> int:
        return len(self.entries)
