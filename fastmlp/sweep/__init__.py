"""Hyperparameter sweeps: W&B sweep configs run locally with Optuna, or on W&B.

* :mod:`~fastmlp.sweep.config`   -- the W&B sweep YAML, checked and translated for Optuna;
* :mod:`~fastmlp.sweep.aliases`, :mod:`~fastmlp.sweep.command` -- parameter and metric names
  of real configs, and the fixed flags of their ``command:``;
* :mod:`~fastmlp.sweep.distributions`, :mod:`~fastmlp.sweep.quantiles` -- every W&B
  distribution, sampled with W&B's meaning;
* :mod:`~fastmlp.sweep.hyperband` -- W&B's early_terminate as Optuna's HyperbandPruner;
* :mod:`~fastmlp.sweep.dry_run`  -- ``--dry_run``: how a config was understood;
* :mod:`~fastmlp.sweep.errors`   -- the sweep's one-line errors;
* :mod:`~fastmlp.sweep.local`    -- the local engine (journal file or database, K workers);
* :mod:`~fastmlp.sweep.wandb_engine` -- ``wandb.sweep`` + ``wandb.agent``;
* :mod:`~fastmlp.sweep.trial`    -- one trial as a normal fastmlp run;
* :mod:`~fastmlp.sweep.study`    -- the sweep directory, the Optuna study, trial bookkeeping;
* :mod:`~fastmlp.sweep.workers`  -- worker processes sharing the CPU;
* :mod:`~fastmlp.sweep.placement` -- which GPU each worker trains on;
* :mod:`~fastmlp.sweep.report`, :mod:`~fastmlp.sweep.plots` -- ``fastmlp sweep report``;
* :mod:`~fastmlp.sweep.dashboard` -- ``fastmlp sweep dashboard`` (optuna-dashboard).

Needs ``pip install "fastmlp[sweep]"`` (Optuna, PyYAML, matplotlib, threadpoolctl,
scikit-learn, optuna-dashboard); a PostgreSQL storage ``"fastmlp[postgres]"``.
"""

from fastmlp.sweep.config import (
    SweepConfig,
    SweepConfigError,
    parse_sweep_config,
    read_sweep_config,
)
from fastmlp.sweep.local import SweepSummary, run_local_sweep
from fastmlp.sweep.report import Report, write_report
from fastmlp.sweep.study import SweepDirectory, SweepError
from fastmlp.sweep.wandb_engine import run_wandb_sweep

__all__ = [
    "Report",
    "SweepConfig",
    "SweepConfigError",
    "SweepDirectory",
    "SweepError",
    "SweepSummary",
    "parse_sweep_config",
    "read_sweep_config",
    "run_local_sweep",
    "run_wandb_sweep",
    "write_report",
]
