"""The README's reference tables, generated from the registries and the run settings.

``python -m fastmlp.runs.docs README.md`` rewrites every section of the README that lies
between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` markers with the table of that
name; ``tests/test_readme.py`` fails when the README differs from what this module
generates, so the documented flags, optimizers and activations are always the real ones.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastmlp.nn.activations import ACTIVATIONS
from fastmlp.nn.init import WEIGHT_INITS
from fastmlp.nn.losses import LOSSES
from fastmlp.optim import OPTIMIZERS
from fastmlp.registry import Registry
from fastmlp.schedules import SCHEDULES


def _label(registry: Registry[Any], name: str) -> str:
    """``name`` as the tables spell it: in backticks, its aliases in brackets."""
    aliases = registry.aliases_of(name)
    return f"`{name}`" + (f" ({', '.join(aliases)})" if aliases else "")


def _spellings(registry: Registry[Any]) -> str:
    return ", ".join(_label(registry, name) for name in registry.names())


def train_flags_table() -> str:
    """Every ``fastmlp train`` flag, read from the parser itself, by help section."""
    from fastmlp.cli.train_command import build_parser

    lines = ["| flag | meaning | default |", "| --- | --- | --- |"]
    for group in build_parser()._action_groups:
        actions = [a for a in group._group_actions if a.option_strings and a.dest != "help"]
        if not actions:
            continue
        lines.append(f"| **{group.title}** | | |")
        for action in actions:
            flags = "/".join(action.option_strings)
            if action.metavar and action.metavar.startswith("{"):
                flags += f" {action.metavar}"
            meaning, default = action.help, "-"
            match = _DEFAULT.match(action.help)
            if match:
                meaning, owners, default = match.groups()
                if owners:
                    meaning += f" ({owners})"
            lines.append(f"| `{flags}` | {meaning} | {default} |")
    return "\n".join(lines)


def optimizers_table() -> str:
    """Every registered optimizer: its hyperparameters (with defaults) and what it is."""
    lines = ["| optimizer | hyperparameters (defaults) | what it is |", "| --- | --- | --- |"]
    for name, cls in OPTIMIZERS.entries.items():
        values = ", ".join(f"{p.name}={p.default:g}" for p in cls.hyperparameters)
        label = _label(OPTIMIZERS, name)
        lines.append(f"| {label} | {values} | {cls.summary} |")
    return "\n".join(lines)


def activations_table() -> str:
    """Every registered activation: f(z), its hyperparameters, how its gradient is written."""
    lines = [
        "| activation | f(z) | hyperparameters (defaults) | gradient written from |",
        "| --- | --- | --- | --- |",
    ]
    for name, declaration in ACTIVATIONS.entries.items():
        label = _label(ACTIVATIONS, name)
        values = ", ".join(f"{p.name}={p.default:g}" for p in declaration.hyperparameters)
        lines.append(
            f"| {label} | {declaration.maths} | {values or '-'} | the {declaration.backward_from} |"
        )
    return "\n".join(lines)


def schedules_table() -> str:
    """Every registered learning-rate schedule: its hyperparameters, per step or epoch."""
    lines = [
        "| `--lr_schedule` | hyperparameters: flag (default) | updated | what it does |",
        "| --- | --- | --- | --- |",
    ]
    for name, cls in SCHEDULES.entries.items():
        label = _label(SCHEDULES, name)
        values = ", ".join(f"`--{p.setting_name}` ({p.default:g})" for p in cls.hyperparameters)
        when = "per step" if cls.per_step else "per epoch"
        lines.append(f"| {label} | {values or '-'} | {when} | {cls.summary} |")
    return "\n".join(lines)


def choices_table() -> str:
    """Losses and weight initialisations, with their aliases."""
    return "\n".join(
        [
            "| setting | choices (aliases) |",
            "| --- | --- |",
            f"| loss | {_spellings(LOSSES)} |",
            f"| weight_init | {_spellings(WEIGHT_INITS)} |",
        ]
    )


TABLES: dict[str, Callable[[], str]] = {
    "train_flags": train_flags_table,
    "optimizers": optimizers_table,
    "schedules": schedules_table,
    "activations": activations_table,
    "choices": choices_table,
}

# "meaning (default: X)" or "meaning (who has it; default: X)"
_DEFAULT = re.compile(r"(.*) \((?:([^()]*); )?default: (.*)\)$", re.S)
_SECTION = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end: \2 -->)", re.S)


def render(text: str) -> str:
    """``text`` with every generated section replaced by its current table."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise KeyError(f"no generated table named {name!r}")
        return f"{match.group(1)}{TABLES[name]()}\n{match.group(4)}"

    return _SECTION.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    """Rewrite the generated sections of the given markdown files in place."""
    for name in argv if argv is not None else sys.argv[1:]:
        path = Path(name)
        path.write_text(render(path.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
