"""The W&B sweep engine: ``wandb.sweep`` creates the sweep on W&B, ``wandb.agent`` runs it.

W&B's sweep server chooses each trial's parameters (and runs Hyperband); each trial is a
normal fastmlp run in ``SWEEP_DIR/runs/`` whose W&B run belongs to the sweep. A trial that
diverges ends its W&B run with exit code 1, one that raises is marked failed by the agent,
and the agent goes on with the next.

It needs a W&B account: without an API key (``wandb login`` or ``WANDB_API_KEY``), or with
W&B switched to offline/disabled, it stops at once with a one-line error; it never prompts.
The sweep id is kept in ``SWEEP_DIR/sweep.json``, so running the same command again adds
agents to the same W&B sweep. ``--count N`` is the number of trials this command runs,
shared among its ``--workers`` agents; without it the agents run until W&B ends the sweep
(grid done, ``run_cap`` reached) or Ctrl-C.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from fastmlp.errors import one_line
from fastmlp.runs import resolve_wandb_mode
from fastmlp.runs.config import defaults
from fastmlp.runs.wandb_run import wandb_installed
from fastmlp.sweep.config import SweepConfig
from fastmlp.sweep.local import check_device
from fastmlp.sweep.study import SweepDirectory, SweepError
from fastmlp.sweep.trial import TrialOptions, trial_settings
from fastmlp.sweep.workers import blas_threads, run_in_processes


def require_wandb_online(wandb_mode: str | None) -> None:
    """Raise unless wandb is installed, logged in and in online mode (never prompts)."""
    if not wandb_installed():
        raise SweepError(
            '--engine wandb needs wandb: pip install "fastmlp[wandb]", or use --engine local'
        )
    mode = resolve_wandb_mode(wandb_mode)
    if mode != "online":
        raise SweepError(
            f"--engine wandb needs a W&B account and online mode (W&B mode here: {mode}): "
            "run `wandb login` or set WANDB_API_KEY, or use --engine local"
        )


@dataclass(frozen=True)
class AgentSpec:
    """What one agent process needs (picklable). ``count``: its trials; None: until the end."""

    sweep_id: str
    project: str | None
    entity: str | None
    count: int | None
    config: SweepConfig
    options: TrialOptions


def _sweep_params() -> dict[str, object]:
    """The parameters W&B chose for the current trial (the agent writes them to a file)."""
    import yaml

    path = os.environ.get("WANDB_SWEEP_PARAM_PATH")
    if not path:
        raise SweepError("not inside a W&B sweep agent (WANDB_SWEEP_PARAM_PATH is not set)")
    entries = yaml.safe_load(Path(path).read_text()) or {}
    entries.pop("wandb_version", None)
    return {name: entry["value"] for name, entry in entries.items()}


def _trial_function(spec: AgentSpec) -> Callable[[], None]:
    def run_trial() -> None:
        from fastmlp.runs.experiment import run_experiment

        options = spec.options
        settings = trial_settings(spec.config, _sweep_params(), options, chosen_by_wandb=True)
        run_experiment(
            settings,
            out=options.sweep_dir / "runs",
            data_dir=options.data_dir,
            wandb_mode=options.wandb_mode,
            progress=False,
            verbose=False,
            group=options.group,
            figures=options.figures,
        )

    return run_trial


def run_agent(spec: AgentSpec) -> None:
    """Run trials of the W&B sweep ``spec.sweep_id`` in this process."""
    import wandb

    wandb.agent(
        spec.sweep_id,
        function=_trial_function(spec),
        project=spec.project,
        entity=spec.entity,
        count=spec.count,
    )


def _shares(count: int | None, workers: int) -> list[int | None]:
    """``count`` trials split among ``workers`` agents (None: each runs until the end)."""
    if count is None:
        return [None] * workers
    shares = [count // workers + (index < count % workers) for index in range(workers)]
    return [share for share in shares if share > 0]


def run_wandb_sweep(
    config: SweepConfig,
    *,
    out: str | PathLike[str] = "sweeps",
    count: int | None = None,
    workers: int = 1,
    data_dir: str | PathLike[str] | None = None,
    wandb_mode: str | None = None,
    device: str | None = None,
    figures: bool = True,
) -> str:
    """Create (or continue) the W&B sweep of ``config`` and run agents; returns its id.

    Raises:
        SweepError: W&B is not usable here, or the sweep could not be created.
    """
    check_device(device, config)
    require_wandb_online(wandb_mode)
    import wandb

    directory = SweepDirectory(Path(out) / config.name)
    info = directory.read_info() if (directory.path / SweepDirectory.INFO).is_file() else {}
    if info and info.get("engine") != "wandb":
        raise SweepError(
            f"{directory.path} holds a local sweep; pass --name NEW_NAME for a W&B one"
        )
    project = config.constants.get("wandb_project", defaults()["wandb_project"])
    entity = config.constants.get("wandb_entity")
    sweep_id = info.get("wandb_sweep_id")
    if sweep_id is None:
        try:
            sweep_id = wandb.sweep(
                sweep={**config.wandb_config(), "name": config.name},
                project=project,
                entity=entity,
            )
        except Exception as error:
            raise SweepError(f"W&B could not create the sweep: {one_line(error)}") from None
        directory.update_info(
            name=config.name,
            engine="wandb",
            wandb_sweep_id=sweep_id,
            wandb_project=project,
            wandb_entity=entity,
            config=config.raw,
        )
    options = TrialOptions(
        sweep_dir=directory.path,
        group=config.name,
        data_dir=None if data_dir is None else str(data_dir),
        wandb_mode="online",
        device=device,
        figures=figures,
        blas_threads=blas_threads(workers),
    )
    specs = [
        AgentSpec(
            sweep_id=sweep_id,
            project=project,
            entity=entity,
            count=share,
            config=config,
            options=options,
        )
        for share in _shares(count, workers)
    ]
    if len(specs) == 1:
        run_agent(specs[0])
    else:
        run_in_processes(run_agent, specs)
    return sweep_id
