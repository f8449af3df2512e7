"""The report's sweep (Q4-Q7): run or read, its trials ranked, its own report made."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastmlp.report.context import Context, ReportError


@dataclass
class SweepResult:
    """The sweep's directory, configuration, trials, report files and best trial."""

    directory: Path
    config: Any
    rows: list[Any]
    complete: list[Any]
    files: dict[str, Path]
    notes: list[str]
    seconds: float

    @property
    def best(self) -> Any:
        return self.complete[0]

    def best_config(self, row: Any) -> dict[str, Any]:
        from fastmlp.sweep.report import best_config

        return best_config(self.config, row.params, row.blas_threads)

    def run_dir(self, row: Any) -> Path:
        return self.directory / row.run_dir


def sweep_workers(device: str | None) -> int | None:
    """Trials run side by side: two on a CPU with two cores or more (each with one BLAS
    thread); None on a CUDA device, where ``fastmlp.sweep.placement`` puts one per GPU."""
    return None if (device or "").startswith("cuda") else min(2, os.cpu_count() or 1)


def run_sweep(ctx: Context, sweep_dir: str | None) -> SweepResult:
    """Run (or continue) the budget's sweep, or read the given one; then its report."""
    from fastmlp.sweep import parse_sweep_config, run_local_sweep
    from fastmlp.sweep.report import load_trials, require_report_dependencies, write_report

    require_report_dependencies()
    if sweep_dir is None:
        config = parse_sweep_config(ctx.budget.sweep_config())
        print(f"[sweep] {config.name}: {ctx.budget.sweep_trials} trials", flush=True)
        run_local_sweep(
            config,
            out=ctx.out / "sweeps",
            count=ctx.budget.sweep_trials,
            workers=sweep_workers(ctx.device),
            data_dir=ctx.data_dir,
            wandb_mode=ctx.wandb_mode,
            device=ctx.device,
            figures=False,
        )
        directory = ctx.out / "sweeps" / config.name
    else:
        directory = Path(sweep_dir)
    config, rows = load_trials(directory)
    report = write_report(directory, wandb_mode="disabled")
    if config.metric != "val_accuracy":  # the report ranks by validation accuracy
        rows = [dataclasses.replace(row, value=row.val_accuracy) for row in rows]
    complete = sorted(
        (row for row in rows if row.state == "COMPLETE" and finite(row.value)),
        key=lambda row: -row.value,
    )
    if not complete:
        raise ReportError(f"the sweep in {directory} has no complete trial to report on")
    seconds = sum(row.seconds or 0.0 for row in rows)
    return SweepResult(directory, config, rows, complete, report.files, report.notes, seconds)


def finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def distinct_configs(sweep: SweepResult, count: int) -> list[Any]:
    """The ``count`` best complete trials with different settings."""
    chosen, seen = [], set()
    for row in sweep.complete:
        key = json.dumps(row.values, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            chosen.append(row)
        if len(chosen) == count:
            break
    return chosen
