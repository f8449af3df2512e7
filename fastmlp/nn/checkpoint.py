"""Checkpoints: one ``.npz`` with the model config, flat parameters, and resume state.

Layout of the archive (no pickles; ``np.load(allow_pickle=False)`` reads it):

=======================  ==============================================================
key                      content
=======================  ==============================================================
``format``               ``"fastmlp-checkpoint-1"``
``config``               JSON of ``MLP.config``
``params``               the flat parameter buffer, in the model dtype
``optimizer``            JSON: name, hyperparameters, steps, scalars (optional)
``optimizer/<buffer>``   each optimizer state buffer (optional)
``epoch``                epochs completed (optional)
``extra``                JSON of anything else the caller stores (optional)
=======================  ==============================================================

Files are written to a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from fastmlp.backends import Backend
from fastmlp.errors import UserError
from fastmlp.nn.mlp import MLP

FORMAT = "fastmlp-checkpoint-1"


class CheckpointError(UserError):
    """A file is missing, unreadable, or not a fastmlp checkpoint."""


@dataclass
class Checkpoint:
    """What a checkpoint holds, rebuilt: the model, the optimizer (if saved), the epoch."""

    model: MLP
    optimizer: Any = None
    epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | PathLike[str],
    model: MLP,
    optimizer: Any = None,
    epoch: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (plus optimizer state, epoch and ``extra``) atomically to ``path``."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "config": np.array(json.dumps(model.config)),
        "params": model.backend.to_numpy(model.params),
    }
    if optimizer is not None:
        state = optimizer.state_dict()
        buffers = state.pop("buffers")
        arrays["optimizer"] = np.array(json.dumps(state))
        for key, buffer in buffers.items():
            arrays[f"optimizer/{key}"] = buffer
    if epoch is not None:
        arrays["epoch"] = np.array(int(epoch))
    if extra:
        arrays["extra"] = np.array(json.dumps(extra))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | PathLike[str], device: str | Backend | None = None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` onto ``device`` (default CPU).

    Raises:
        CheckpointError: the file is missing, truncated, or not a fastmlp checkpoint.
    """
    from fastmlp import optim

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated ({error})") from None
    if str(contents.get("format", "")) != FORMAT:
        raise CheckpointError(f"{path} is not a fastmlp checkpoint (no {FORMAT!r} marker)")
    config = json.loads(str(contents["config"]))
    model = MLP(**config, device=device or "cpu")
    params = contents["params"]
    if params.shape != (model.num_params,):
        raise CheckpointError(
            f"checkpoint {path} holds {params.shape} parameters, "
            f"its config needs {model.num_params}"
        )
    model.params[...] = model.backend.asarray(params, dtype=model.dtype)

    optimizer = None
    if "optimizer" in contents:
        state = json.loads(str(contents["optimizer"]))
        state["buffers"] = {
            key.partition("/")[2]: value
            for key, value in contents.items()
            if key.startswith("optimizer/")
        }
        optimizer = optim.create(state["name"], **state["hyperparameters"])
        optimizer.load_state_dict(state)
    epoch = int(contents["epoch"]) if "epoch" in contents else None
    extra = json.loads(str(contents["extra"])) if "extra" in contents else {}
    return Checkpoint(model=model, optimizer=optimizer, epoch=epoch, extra=extra)
