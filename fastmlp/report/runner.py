"""The report's own runs: each trained once, reused when finished, resumed when interrupted.

Every run of a report has a fixed name inside the report's folder (``runs/q3-adam``,
``runs/q8-1-mse-seed2``...), so running the report again finds it: a finished run is read
back, an interrupted one is resumed from its checkpoint (repaired as ``fastmlp train
--resume`` repairs it), and a missing one is trained.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from fastmlp.errors import UserError
from fastmlp.runs import RunDirectory
from fastmlp.runs.experiment import COMPLETE, run_experiment


@dataclass(frozen=True)
class RunSpec:
    """One run of the report: its name (its folder in ``runs/``), its settings (long flag
    names, as ``fastmlp train --config`` reads them) and where its data is (None: the
    usual search)."""

    name: str
    settings: dict[str, Any]
    data_dir: str | None = None


@dataclass
class FinishedRun:
    """A finished run as the report uses it: its folder, summary.json, metrics.jsonl rows
    and config.json."""

    name: str
    path: Path
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    config: dict[str, Any]

    @property
    def test_accuracy(self) -> float | None:
        return self.summary.get("test_accuracy")

    @property
    def best_val_accuracy(self) -> float | None:
        return self.summary.get("best_val_accuracy")

    @property
    def seconds(self) -> float:
        return float(self.summary.get("train_seconds") or 0.0)

    def curve(self, key: str) -> list[tuple[int, float]]:
        """(epoch, value) of one metric (``val_accuracy``, ``train_loss``...) per epoch."""
        return [(row["epoch"], row[key]) for row in self.history if row.get(key) is not None]


def read_finished(path: str | PathLike[str]) -> FinishedRun | None:
    """The run in ``path`` if it has finished (its summary says so), else None."""
    run_dir = RunDirectory(path)
    if not run_dir.file(RunDirectory.SUMMARY).is_file():
        return None
    try:
        summary = run_dir.read_summary()
    except UserError:  # a torn summary: the run is finished again on resume
        return None
    if summary.get("status") not in COMPLETE:
        return None
    return FinishedRun(
        name=run_dir.name,
        path=run_dir.path,
        summary=summary,
        history=run_dir.read_metrics(),
        config=run_dir.read_config(),
    )


def ensure_run(
    spec: RunSpec,
    out: str | PathLike[str],
    *,
    group: str,
    wandb_mode: str | None,
    label: str,
) -> FinishedRun:
    """The finished run ``out/spec.name``: read back, resumed or trained as needed.

    ``label`` prefixes the one line printed about it ("q3 2/6"). A Ctrl-C or SIGTERM
    stops the run cleanly (its checkpoint kept) and is raised again.
    """
    path = Path(out) / spec.name
    finished = read_finished(path)
    if finished is not None:
        print(f"  {label} {spec.name}: done before, reused", flush=True)
        return finished
    resume = path if path.joinpath(RunDirectory.CONFIG).is_file() else None
    started = time.monotonic()
    result = run_experiment(
        None if resume is not None else spec.settings,
        out=out,
        data_dir=spec.data_dir,
        wandb_mode=wandb_mode,
        progress=False,
        verbose=False,
        resume=resume,
        group=group,
        name=spec.name,
    )
    if result.interrupt is not None:
        raise result.interrupt
    finished = read_finished(result.run_dir.path)
    if finished is None:
        raise UserError(f"run {result.run_dir.path} ended {result.status}: see its summary.json")
    how = "resumed and finished" if resume is not None else "trained"
    accuracy = finished.best_val_accuracy
    shown = (
        f"best val {100 * accuracy:.2f}%" if accuracy is not None else finished.summary["status"]
    )
    print(
        f"  {label} {spec.name}: {how} in {time.monotonic() - started:.0f} s, {shown}",
        flush=True,
    )
    return finished
