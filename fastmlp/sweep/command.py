"""W&B's ``command:`` list: the fixed flags it passes to every run become sweep constants.

W&B's agent starts each run with ``command`` (default ``${env} ${interpreter} ${program}
${args}``), where the macros stand for the interpreter, the program and the sampled
hyperparameters. fastmlp runs every trial itself, so the macros and the words before the
first flag (the interpreter and the program: ``python src/train.py``) mean nothing to it;
fixed flags do: ``--dataset mnist``, ``-e 5``, ``--entity=team`` and ``--hidden_size 128 128
128`` (a list) set those settings in every trial, and a flag without a value is ``true``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fastmlp.sweep.distributions import number
from fastmlp.sweep.errors import SweepConfigError

MACRO = re.compile(r"\$\{[^}]*\}")
# The macros that insert the sampled hyperparameters.
ARGS_MACROS = (
    "${args}", "${args_no_hyphens}", "${args_no_boolean_flags}", "${args_json}",
    "${args_json_file}",
)  # fmt: skip


@dataclass(frozen=True)
class Flag:
    """A fixed flag of the command: its name as written (``--dataset``), its value (a list
    for several), and whether it comes after the sampled ``${args}`` (then it overrides a
    sampled parameter of the same setting, as argparse takes the last value)."""

    name: str
    value: Any
    after_args: bool


@dataclass
class Command:
    """What a ``command:`` list holds: the fixed flags, and what fastmlp skips in it."""

    flags: list[Flag] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    macros: list[str] = field(default_factory=list)


def _is_flag(word: str) -> bool:
    """``--name`` or ``-n``, but not a negative number."""
    return word.startswith("-") and len(word) > 1 and not isinstance(number(word), (int, float))


def parse_command(raw: Any) -> Command:
    """Split a ``command:`` list into fixed flags, macros and the words before the flags.

    Raises:
        SweepConfigError: ``command`` is not a list of words.
    """
    if not isinstance(raw, list) or any(isinstance(word, (list, dict)) for word in raw):
        raise SweepConfigError(
            "command must be a list of words, such as [${env}, ${interpreter}, ${program}, ${args}]"
        )
    command = Command()
    after_args = False
    pending: tuple[str, list[Any]] | None = None

    def close() -> None:
        if pending is not None:
            name, values = pending
            value = True if not values else values[0] if len(values) == 1 else values
            command.flags.append(Flag(name, value, after_args))

    for item in raw:
        word = str(item).strip()
        if MACRO.fullmatch(word):
            close()
            pending = None
            command.macros.append(word)
            after_args = after_args or word in ARGS_MACROS
        elif _is_flag(word):
            close()
            name, equals, value = word.partition("=")
            pending = (name, [number(value)] if equals else [])
            if equals:
                close()
                pending = None
        elif pending is not None:
            pending[1].append(number(word))
        elif command.macros and "=" in word.strip("="):
            # KEY=VALUE after a macro (Hydra style, with ${args_no_hyphens}): a fixed flag
            name, _, value = word.partition("=")
            command.flags.append(Flag(name, number(value), after_args))
        else:
            command.skipped.append(word)
    close()
    return command
