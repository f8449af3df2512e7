"""Run tracking: a local run directory (always) and Weights & Biases (when available)."""

from fastmlp.tracking.naming import format_number, run_name
from fastmlp.tracking.run_directory import RunDirectory
from fastmlp.tracking.wandb_run import WANDB_MODES, WandbRun, resolve_wandb_mode, warn_once

__all__ = [
    "WANDB_MODES",
    "RunDirectory",
    "WandbRun",
    "format_number",
    "resolve_wandb_mode",
    "run_name",
    "warn_once",
]
