"""What every step of the report shares: its context, run names, and small helpers."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastmlp
from fastmlp.errors import UserError
from fastmlp.report.budgets import Budget
from fastmlp.report.page import Paragraph
from fastmlp.report.plan import format_duration
from fastmlp.report.runner import FinishedRun, RunSpec, ensure_run

# Settings a report run may be told on the command line that do not change what it computes.
NOT_HASHED = ("device", "name", "tags", "wandb_project", "wandb_entity")


class ReportError(UserError):
    """The report cannot be made as asked (a sweep folder that is not one, no trials)."""


@dataclass
class Context:
    """What every step of the report shares."""

    budget: Budget
    out: Path
    data_dir: str | None
    device: str | None
    wandb_mode: str
    group: str
    command: str
    figures: Path
    machine: str
    wandb_project: str = "fastmlp"
    wandb_entity: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)
    finished: list[FinishedRun] = field(default_factory=list)

    @property
    def runs_dir(self) -> Path:
        return self.out / "runs"

    def run(self, spec: RunSpec, label: str) -> FinishedRun:
        finished = ensure_run(
            spec, self.runs_dir, group=self.group, wandb_mode=self.wandb_mode, label=label
        )
        self.finished.append(finished)
        return finished

    def provenance(self, what: str, seconds: float, seeds: str) -> Paragraph:
        """The "what was run" line every section has."""
        return Paragraph(
            f"What was run: {what}. Budget {self.budget.name}; seeds {seeds}; Fashion-MNIST's "
            "60,000 training images split 90/10 into training and validation (split seed 0), "
            f"the 10,000 test images for test accuracy; {self.machine}; fastmlp "
            f"{fastmlp.__version__}; {format_duration(seconds)} of training. Reproduce: "
            f"`{self.command}`."
        )


def settings_key(settings: dict[str, Any]) -> str:
    """Six hex digits naming what ``settings`` train: a run's name carries them, so a
    changed configuration is a new run and never a reused one."""
    kept = {key: value for key, value in sorted(settings.items()) if key not in NOT_HASHED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:6]


def run_spec(
    name: str, settings: dict[str, Any], ctx: Context, data_dir: str | None = None
) -> RunSpec:
    settings = {
        **settings,
        "device": ctx.device or "auto",
        "wandb_project": ctx.wandb_project,
        "wandb_entity": ctx.wandb_entity,
    }
    return RunSpec(
        name=f"{name}-{settings_key(settings)}",
        settings=settings,
        data_dir=ctx.data_dir if data_dir is None else data_dir,
    )


def percent(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.2f}%"


def copy_figure(source: Path, ctx: Context, name: str) -> Path:
    target = ctx.figures / name
    shutil.copyfile(source, target)
    return target


def machine_line() -> str:
    from fastmlp.runs.environment import processor_name

    return f"{os.cpu_count()}-core {platform.machine()} ({processor_name() or 'unknown CPU'})"


def describe_network(settings: dict[str, Any]) -> str:
    """A configuration's network in words: "4 hidden layers of 64 relu units, ..."."""
    sizes = list(settings["hidden_size"])
    width = sizes[0] if len(set(sizes)) == 1 else sizes
    return (
        f"{settings['num_layers']} hidden layers of {width} {settings['activation']} units, "
        f"{settings['weight_init']} init, batch {settings['batch_size']}, weight decay "
        f"{settings['weight_decay']:g}"
    )
