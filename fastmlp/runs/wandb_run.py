"""Weights & Biases logging that never prompts, never hangs, and is never required.

The mode is resolved explicitly (:func:`resolve_wandb_mode`):

1. the ``--wandb_mode`` option, if given;
2. else ``WANDB_MODE`` from the environment, if set and not empty;
3. else ``online`` if an API key is configured (``wandb.login(prompt=False, verify=False)``
   only looks, it never asks);
4. else ``offline`` (the run is written under the run directory; ``wandb sync`` uploads it).

An online start that fails or times out falls back to offline with a warning. ``disabled``
is opt-in.

A resumed fastmlp run continues the same W&B run: the run id is chosen before the first
start and kept in the run's ``config.json``, and the resumed part starts with
``resume="allow"`` and logs from the next epoch on, so the two parts are one run with
continuous steps (offline too: ``wandb sync`` of both directories makes one run). A part
that ends by an interrupt is marked preempted (``mark_preempting``), not failed.

Without the ``wandb`` package (``pip install "fastmlp[wandb]"``) training goes on with
local tracking only and says so once.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Sequence
from os import PathLike
from typing import Any

from fastmlp.errors import UserError

WANDB_MODES = ("online", "offline", "disabled")

# Seconds an online wandb.init may take before we fall back to offline.
ONLINE_INIT_TIMEOUT = 30

_ENV_ALIASES = {"dryrun": "offline", "run": "online"}

_warned: set[str] = set()


def warn_once(message: str) -> None:
    """Print a warning to stderr the first time it is given in this process."""
    if message not in _warned:
        _warned.add(message)
        print(f"fastmlp: {message}", file=sys.stderr, flush=True)


def wandb_installed() -> bool:
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def parse_wandb_mode(value: str) -> str:
    """A W&B mode as a user spells it (any case), checked."""
    mode = str(value).strip().lower()
    if mode not in WANDB_MODES:
        raise UserError(f"unknown W&B mode {value!r}: use online, offline or disabled")
    return mode


def resolve_wandb_mode(option: str | None = None) -> str:
    """The W&B mode: the option, else ``$WANDB_MODE``, else online with a key, else offline."""
    if option:
        return parse_wandb_mode(option)
    environment = os.environ.get("WANDB_MODE", "").strip().lower()
    if environment:
        mode = _ENV_ALIASES.get(environment, environment)
        if mode not in WANDB_MODES:
            raise UserError(
                f"WANDB_MODE={environment!r} is not one of online, offline, disabled: "
                "fix or unset it, or pass --wandb_mode"
            )
        return mode
    if not wandb_installed():
        return "disabled"
    import wandb

    try:
        has_key = wandb.login(prompt=False, verify=False)
    except Exception:  # a broken netrc or settings file must not stop training
        has_key = False
    return "online" if has_key else "offline"


class WandbRun:
    """One W&B run (a thin wrapper so callers never touch ``wandb`` directly)."""

    def __init__(self, run: Any, mode: str) -> None:
        self.run = run
        self.mode = mode

    @property
    def directory(self) -> str:
        """The run's local files (``.../wandb/offline-run-*`` or ``run-*``)."""
        return str(self.run.dir).removesuffix("/files")

    @classmethod
    def start(
        cls,
        *,
        mode: str,
        project: str,
        entity: str | None,
        name: str,
        config: dict[str, Any],
        directory: str | PathLike[str],
        group: str | None = None,
        job_type: str | None = None,
        run_id: str | None = None,
        resume: bool = False,
        tags: list[str] | None = None,
    ) -> WandbRun | None:
        """Start a run in ``mode``; None when W&B is disabled or not installed.

        ``run_id``: the W&B run id (see :func:`new_run_id`); ``resume``: continue the run of
        that id if it exists; ``tags``: the run's W&B tags.
        """
        if mode == "disabled":
            return None
        if not wandb_installed():
            warn_once(
                'wandb is not installed; tracking locally only (pip install "fastmlp[wandb]")'
            )
            return None
        import wandb

        def init(run_mode: str) -> Any:
            return wandb.init(
                project=project,
                entity=entity,
                name=name,
                config=config,
                group=group,
                job_type=job_type,
                tags=tags or None,
                dir=str(directory),
                mode=run_mode,
                id=run_id,
                resume="allow" if resume else None,
                reinit="create_new",
                settings=wandb.Settings(init_timeout=ONLINE_INIT_TIMEOUT, silent=True),
            )

        try:
            return cls(init(mode), mode)
        except Exception as error:
            if mode != "online":
                warn_once(f"W&B could not start ({error}); tracking locally only")
                return None
            warn_once(f"W&B online start failed ({error}); logging offline instead")
        try:
            return cls(init("offline"), "offline")
        except Exception as error:
            warn_once(f"W&B could not start offline either ({error}); tracking locally only")
            return None

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.run.log(metrics, step=step)

    def log_image(self, key: str, path: str | PathLike[str], caption: str | None = None) -> None:
        import wandb

        # commit=False: attach to the latest epoch's row instead of starting a new step
        self.run.log({key: wandb.Image(str(path), caption=caption)}, commit=False)

    def log_confusion_matrix(
        self, y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]
    ) -> None:
        import wandb

        chart = wandb.plot.confusion_matrix(
            y_true=list(map(int, y_true)),
            preds=list(map(int, y_pred)),
            class_names=list(class_names),
        )
        self.run.log({"confusion_matrix_chart": chart}, commit=False)

    def update_summary(self, summary: dict[str, Any]) -> None:
        self.run.summary.update(summary)

    def finish(self, exit_code: int = 0, preempted: bool = False) -> None:
        """End the run; ``preempted``: it stopped early and will be resumed (W&B shows it
        as preempted rather than failed)."""
        if preempted:
            self.run.mark_preempting()
        self.run.finish(exit_code=exit_code)


def new_run_id() -> str:
    """A fresh W&B run id: 8 characters of [a-z0-9], as W&B makes them."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(8))
