"""``fastmlp sweep CONFIG.yaml --dry_run``: how fastmlp understood a sweep config.

It shows the engine, the sampler and the pruner the config makes, every swept parameter
with its fastmlp setting, the name it came from, its distribution and values or range and
what Optuna samples for it, the constants and where they came from, how num_layers relates
to list-valued hidden sizes, the number of trials, what the local engine ignores and why,
and the warnings. It only reads the config: nothing is trained, created or written.
"""

from __future__ import annotations

import json
import math
from os import PathLike
from pathlib import Path
from typing import Any

from fastmlp.runs.stack_experiment import PER_MODEL_SETTINGS
from fastmlp.sweep.config import SweepConfig
from fastmlp.sweep.study import storage_label


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    """Rows as aligned columns (the last one left ragged)."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return [
        indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]
        for row in rows
    ]


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _origin(source: str) -> str:
    """Where a constant came from: ``command: --dataset mnist``, ``project:``, or a
    parameter of the config."""
    if source.startswith("command:") or source.endswith(":"):
        return source
    return f"parameter {source}"


def _sampler(config: SweepConfig, engine: str) -> str:
    if engine == "wandb":
        return f"W&B's {config.method} search, on W&B's servers"
    if config.method == "grid":
        return "GridSampler (method grid): every combination once, in random order"
    if config.method == "random":
        return "RandomSampler (method random): W&B's distributions, sampled independently"
    return "TPESampler (method bayes), constant_liar so that parallel workers differ"


def _pruner(config: SweepConfig, engine: str) -> str:
    hyperband = config.hyperband
    if hyperband is None:
        return "none (no early_terminate): every trial trains all its epochs"
    written = ", ".join(
        f"{key} {value}"
        for key, value in (
            ("min_iter", hyperband.min_iter),
            ("max_iter", hyperband.max_iter),
            ("s", hyperband.s),
            ("eta", hyperband.eta),
        )
        if value is not None
    )
    if engine == "wandb":
        return f"W&B's hyperband ({written})"
    bands = ", ".join(map(str, hyperband.bands(config.max_epochs()))) or "none"
    return (
        f"HyperbandPruner(min_resource={hyperband.min_iter}, "
        f"max_resource={hyperband.max_iter or config.max_epochs()}, "
        f"reduction_factor={hyperband.eta}) on {config.metric} per epoch; W&B's hyperband "
        f"({written}) would cut at epochs {bands}, Optuna's most aggressive bracket too"
    )


def _trials(config: SweepConfig, engine: str, count: int | None) -> str:
    if engine == "wandb":
        cap = f"W&B ends the sweep at run_cap {config.run_cap}" if config.run_cap else ""
        ours = (
            f"{count} trials in this command's agents (--count)"
            if count
            else "agents run until W&B ends the sweep"
        )
        return "; ".join(part for part in (ours, cap) if part)
    if config.method == "grid":
        sizes = " x ".join(str(p.grid_size()) for p in config.parameters.values()) or "1"
        size = config.grid_size()
        limit = count or config.run_cap
        if limit is not None and limit < size:
            why = "--count" if count else "run_cap"
            return f"{limit} ({why}) of the grid's {sizes} = {size:,} points"
        return f"the grid's {sizes} = {size:,} points"
    if count is not None:
        return f"{count} (--count)"
    if config.run_cap is not None:
        return f"{config.run_cap} (run_cap)"
    return f"none given: a {config.method} sweep needs --count N (or run_cap in the config)"


def describe(
    config: SweepConfig,
    *,
    path: str | PathLike[str] | None = None,
    engine: str = "local",
    count: int | None = None,
    out: str | PathLike[str] = "sweeps",
    storage: str | None = None,
    stack: int = 1,
) -> str:
    """The text ``--dry_run`` prints for ``config`` (read from ``path``), run with
    ``--engine``, ``--count``, ``--out``, ``--storage`` and ``--stack`` as given."""
    lines = [f"sweep {config.name}" + (f" from {path}" if path is not None else "")]
    if engine == "wandb":
        where = "a W&B sweep (wandb.sweep, then wandb.agent in each worker)"
    else:
        where = storage_label(storage) if storage else Path(out) / config.name / "study.journal"
        where = f"local: Optuna, the study in {where}"
    metric = config.metric
    if config.metric_source != config.metric:
        sent = "; sent so to W&B: the name fastmlp logs" if engine == "wandb" else ""
        metric += f" (written {config.metric_source}{sent})"
    lines += _table(
        [
            ("engine", where),
            ("sampler", _sampler(config, engine)),
            ("pruner", _pruner(config, engine)),
            ("metric", f"{metric}, {config.goal}"),
            ("trials", _trials(config, engine, count)),
        ],
        indent="",
    )
    if config.parameters:
        lines.append(f"swept parameters ({len(config.parameters)}):")
        if engine == "wandb":  # W&B samples them
            rows = [("setting", "from", "distribution and values")]
            rows += [(name, p.source, p.describe()) for name, p in config.parameters.items()]
        else:
            rows = [("setting", "from", "distribution and values", "Optuna samples")]
            rows += [
                (name, p.source, p.describe(), p.sampled_as(config.method))
                for name, p in config.parameters.items()
            ]
        lines += _table(rows)
    else:
        lines.append("swept parameters: none (every trial alike)")
    if config.constants:
        lines.append(f"constants ({len(config.constants)}):")
        lines += _table(
            [
                (name, _shown(value), f"from {_origin(config.sources.get(name, name))}")
                for name, value in config.constants.items()
            ]
        )
    if stack > 1:
        lines.append(f"stacks: {_stacks(config, stack)}")
    if config.layers_note:
        lines.append(f"layers: {config.layers_note}")
    if config.ignored:
        lines.append("ignored:")
        lines += _table([(item.what, item.why) for item in config.ignored])
    for warning in config.warnings:
        lines.append(f"warning: {warning}")
    lines.append("dry run: nothing was trained, created or written")
    return "\n".join(lines)


def _stacks(config: SweepConfig, stack: int) -> str:
    """How ``--stack K`` groups this sweep's trials."""
    per_model = [name for name in config.parameters if name in PER_MODEL_SETTINGS]
    shared = [name for name in config.parameters if name not in PER_MODEL_SETTINGS]
    if not per_model:
        return (
            f"up to {stack} trials at a time, but no swept setting can differ inside a stack "
            "(optimizer and schedule hyperparameters, weight_decay, dropout): trials run alone"
        )
    fixed = f"sharing {', '.join(shared)}" if shared else "(every swept setting per model)"
    return (
        f"up to {stack} trials {fixed} trained as one stack of models; "
        f"{', '.join(per_model)} differ per model; {_companions(config, per_model)}"
    )


def _companions(config: SweepConfig, per_model: list[str]) -> str:
    """How a stack's companions get their per-model values (see ``local._next_trials``)."""
    from fastmlp.sweep.local import listed_choices

    if config.method == "grid":
        return "companions: the grid points not yet taken that share the first trial's values"
    distributions = config.distributions()
    choices = listed_choices(distributions, [name for name in per_model if name in distributions])
    if choices is not None:
        points = math.prod(len(values) for values in choices)
        return (
            f"companions: the {points} points of {' x '.join(per_model)} that the first "
            "trial's network has not tried, in random order (none repeats a trial)"
        )
    return "companions: the sampler's proposals for the per-model settings"
