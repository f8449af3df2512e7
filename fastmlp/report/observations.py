"""Observations on a sweep, written from its trials (Q6): never canned text.

Each function takes the sweep's complete trials (their setting values and metric) and
returns sentences with the numbers behind them, or nothing when the data do not support a
sentence. The rules are stated in the sentences themselves, so a reader can check them:

* far below the rest: a trial whose metric is under the midpoint between chance level
  (1 / classes) and the best trial; the settings that doom a trial are the values (tried
  at least twice) whose every trial is far below; the settings the weak trials share are
  the values that at least half of them have and that are at least 1.5 times as common
  among them as among the other trials;
* variance explained by a parameter on its own: eta squared, the share of the metric's
  variance across trials that its values' means account for (between-group sum of squares
  over the total);
* which value wins: the value with the highest mean metric among values tried at least
  twice, against the one with the lowest (means, not medians: in a small sweep where many
  trials fail, every median is the failure level), with the best trial of each.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# A value must be this many times more common among the weak trials to count as shared.
LIFT = 1.5
# ... and at least this share of the weak trials must have it.
SHARED = 0.5


@dataclass(frozen=True)
class Trial:
    """A complete trial: its number, its swept settings' values and its metric."""

    number: int
    values: dict[str, Any]
    metric: float


def _key(value: Any) -> str:
    """A setting value as a group key and as shown (lists as JSON text, numbers with %g)."""
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def swept_names(trials: Sequence[Trial]) -> list[str]:
    """The settings that take more than one value among ``trials``, in name order."""
    names = sorted({name for trial in trials for name in trial.values})
    return [name for name in names if len({_key(trial.values.get(name)) for trial in trials}) > 1]


def weak_threshold(trials: Sequence[Trial], classes: int) -> float:
    """The metric under which a trial is far below the rest (see the module docstring)."""
    return (1.0 / classes + max(trial.metric for trial in trials)) / 2


def weak_trials_share(trials: Sequence[Trial], classes: int, metric: str) -> list[str]:
    """What the trials far below the rest have in common, with their numbers."""
    threshold = weak_threshold(trials, classes)
    weak = [trial for trial in trials if trial.metric < threshold]
    strong = [trial for trial in trials if trial.metric >= threshold]
    if not weak:
        return [
            f"No trial is far below the rest: all {len(trials)} reach {_percent(threshold)} "
            f"{metric} (halfway from chance, {_percent(1 / classes)}, to the best trial)."
        ]
    worst = min(weak, key=lambda trial: trial.metric)
    lines = [
        f"{len(weak)} of {len(trials)} trials are far below the rest (under "
        f"{_percent(threshold)} {metric}, halfway from chance to the best trial); the "
        f"worst, trial {worst.number}, reached {_percent(worst.metric)}."
    ]
    doomed, shared = [], []
    for name in swept_names(trials):
        for value in sorted({_key(trial.values.get(name)) for trial in weak}):
            with_value = [trial for trial in trials if _key(trial.values.get(name)) == value]
            in_weak = sum(_key(trial.values.get(name)) == value for trial in weak) / len(weak)
            in_strong = sum(_key(t.values.get(name)) == value for t in strong) / max(len(strong), 1)
            if len(with_value) >= 2 and all(trial.metric < threshold for trial in with_value):
                doomed.append((len(with_value), name, value, max(t.metric for t in with_value)))
            elif in_weak >= SHARED and in_weak >= LIFT * in_strong:
                shared.append((in_weak, name, value, in_strong))
    for count, name, value, best in sorted(doomed, key=lambda item: -item[0])[:4]:
        lines.append(
            f"Every one of the {count} trials with {name} = {value} is far below the rest "
            f"(the best of them reached {_percent(best)})."
        )
    for in_weak, name, value, in_strong in sorted(shared, key=lambda item: -item[0])[:4]:
        lines.append(
            f"{_percent(in_weak)} of the weak trials have {name} = {value}, against "
            f"{_percent(in_strong)} of the others."
        )
    if len(lines) == 1:
        lines.append(
            "They share no single setting (none is held by half of them and 1.5 times as "
            "common among them as among the others): their failures come from combinations."
        )
    return lines


def variance_explained(trials: Sequence[Trial]) -> list[tuple[str, float]]:
    """Each swept setting's eta squared for the metric, largest first."""
    metric = np.array([trial.metric for trial in trials], dtype=np.float64)
    if np.ptp(metric) == 0:
        return []
    total = float(((metric - metric.mean()) ** 2).sum())
    shares = []
    for name in swept_names(trials):
        groups: dict[str, list[float]] = {}
        for trial in trials:
            groups.setdefault(_key(trial.values.get(name)), []).append(trial.metric)
        between = sum(len(g) * (float(np.mean(g)) - metric.mean()) ** 2 for g in groups.values())
        shares.append((name, between / total))
    return sorted(shares, key=lambda item: -item[1])


def variance_sentences(trials: Sequence[Trial], metric: str) -> list[str]:
    shares = variance_explained(trials)
    if not shares:
        return [f"Every trial reached the same {metric}: no setting explains anything."]
    named = ", ".join(f"{name} {_percent(share)}" for name, share in shares[:4])
    return [
        f"Share of the variance of {metric} across the {len(trials)} trials that each "
        f"setting explains on its own (eta squared): {named}.",
    ]


def _groups(trials: Sequence[Trial], name: str) -> dict[str, list[float]]:
    """The metrics of ``trials`` by their value of setting ``name``."""
    groups: dict[str, list[float]] = {}
    for trial in trials:
        groups.setdefault(_key(trial.values.get(name)), []).append(trial.metric)
    return groups


def winning_values(trials: Sequence[Trial], metric: str) -> list[str]:
    """For each swept setting, its best and worst value by mean metric."""
    lines = []
    for name, _ in variance_explained(trials):
        tried = {value: g for value, g in _groups(trials, name).items() if len(g) >= 2}
        if len(tried) < 2:
            continue
        means = {value: float(np.mean(g)) for value, g in tried.items()}
        best = max(means, key=lambda value: means[value])
        worst = min(means, key=lambda value: means[value])
        lines.append(
            f"{name}: {best} is best (mean {_percent(means[best])} over {len(tried[best])} "
            f"trials, best {_percent(max(tried[best]))}), {worst} worst (mean "
            f"{_percent(means[worst])} over {len(tried[worst])}, best "
            f"{_percent(max(tried[worst]))})."
        )
    return lines


def recommendation(trials: Sequence[Trial], metric: str) -> list[str]:
    """The best trial's settings, and the combination of each setting's best value."""
    best = max(trials, key=lambda trial: trial.metric)
    names = swept_names(trials)
    settings = ", ".join(f"{name} {_key(best.values.get(name))}" for name in names)
    lines = [
        f"Recommended configuration: that of trial {best.number}, the best "
        f"({_percent(best.metric)} {metric}): {settings}."
    ]
    differs = []
    for name in names:
        groups = _groups(trials, name)
        value = max(groups, key=lambda value: float(np.mean(groups[value])))
        if value != _key(best.values.get(name)):
            differs.append(f"{name} {value}")
    if differs:
        lines.append(
            "Taking each setting's value with the best mean instead would change "
            f"{', '.join(differs)}: a combination worth one more run, since means ignore "
            "how the settings interact."
        )
    return lines


def observe(trials: Sequence[Trial], classes: int, metric: str) -> list[str]:
    """Every observation on ``trials`` (complete, finite metric), in reading order."""
    trials = [trial for trial in trials if math.isfinite(trial.metric)]
    if len(trials) < 2:
        return [f"Only {len(trials)} complete trial(s): too few to observe anything."]
    return [
        *variance_sentences(trials, metric),
        *winning_values(trials, metric),
        *weak_trials_share(trials, classes, metric),
        *recommendation(trials, metric),
    ]
