"""Run tracking: a local run directory (always) and Weights & Biases (when available)."""

from fastmlp.tracking.naming import format_number, run_name
from fastmlp.tracking.run_directory import RunDirectory, RunDirectoryError
from fastmlp.tracking.wandb_run import (
    WANDB_MODES,
    WandbRun,
    new_run_id,
    resolve_wandb_mode,
    warn_once,
)

__all__ = [
    "WANDB_MODES",
    "RunDirectory",
    "RunDirectoryError",
    "WandbRun",
    "format_number",
    "new_run_id",
    "resolve_wandb_mode",
    "run_name",
    "warn_once",
]
