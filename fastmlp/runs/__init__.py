"""The application layer: a run of ``fastmlp train`` (or of a sweep trial) from settings to
its saved results.

* :mod:`~fastmlp.runs.config`        -- every setting of a run, and ``TrainConfig``;
* :mod:`~fastmlp.runs.experiment`    -- one complete, resumable run;
* :mod:`~fastmlp.runs.run_directory` -- its files on disk, locked while it trains;
* :mod:`~fastmlp.runs.wandb_run`     -- Weights & Biases, never prompting or hanging;
* :mod:`~fastmlp.runs.naming`        -- meaningful run names;
* :mod:`~fastmlp.runs.environment`   -- what besides the settings decides the numbers;
* :mod:`~fastmlp.runs.metrics`, :mod:`~fastmlp.runs.figures` -- what a run reports;
* :mod:`~fastmlp.runs.runs_table`    -- every run under a folder, as ``fastmlp runs`` lists them;
* :mod:`~fastmlp.runs.docs`          -- the README's tables, generated from the registries.

The library (``fastmlp.nn``, ``fastmlp.optim``, ``fastmlp.backends``, ``fastmlp.data``,
``fastmlp.schedules``, ``fastmlp.monitor``, ``fastmlp.training``) knows nothing of this
package.
"""

from fastmlp.runs.naming import format_number, run_name
from fastmlp.runs.run_directory import RunDirectory, RunDirectoryError
from fastmlp.runs.wandb_run import (
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
