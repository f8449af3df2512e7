"""Resolving what a user points a command at: a run directory or a checkpoint file."""

from __future__ import annotations

from pathlib import Path

from fastmlp.cli.parsing import UsageError
from fastmlp.runs import RunDirectory


def resolve_checkpoint(target: str) -> Path:
    """The checkpoint file of ``target``: a ``.npz`` checkpoint itself, or a run directory's
    ``best.npz`` (the best epoch of its monitored validation metric) when it has one, else
    its ``checkpoint.npz`` (the last epoch)."""
    path = Path(target)
    if path.is_dir():
        run_dir = RunDirectory(path)
        if run_dir.best_path.is_file():
            return run_dir.best_path
        checkpoint = run_dir.checkpoint_path
        if not checkpoint.is_file():
            raise UsageError(
                f"{path} has no {RunDirectory.CHECKPOINT}: is it a finished run directory?"
            )
        return checkpoint
    if not path.exists():
        raise UsageError(f"checkpoint {path} does not exist")
    return path
