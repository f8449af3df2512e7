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

Files are written atomically (``fastmlp.files.atomic_write``): a crash or a full disk never
leaves half a file.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from fastmlp.backends import Backend
from fastmlp.errors import UserError, one_line
from fastmlp.files import atomic_write, parse_json
from fastmlp.nn.mlp import MLP

FORMAT = "fastmlp-checkpoint-1"

# The keys of MLP.config a checkpoint's config must hold, and those it may hold (added after
# the first checkpoint format: older files load with their defaults).
MODEL_KEYS = frozenset(
    ("input_size", "hidden_sizes", "output_size", "activation", "weight_init", "loss")
    + ("weight_decay", "dtype")
)
OPTIONAL_MODEL_KEYS = frozenset(("activation_options", "dropout", "label_smoothing", "n_models"))


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
    make_parents: bool = True,
) -> Path:
    """Write ``model`` (plus optimizer state, epoch and ``extra``) atomically to ``path``;
    ``make_parents``: create missing folders (False: a missing folder is an error)."""
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
    with atomic_write(path, make_parents=make_parents) as stream:
        np.savez(stream, **arrays)
    return path


# Largest JSON entry (config, optimizer, extra) a checkpoint may hold, in characters.
_MAX_JSON_CHARACTERS = 1 << 20

_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


class _Archive:
    """The entries of a checkpoint ``.npz``, each checked before it is read."""

    def __init__(self, path: Path, archive: zipfile.ZipFile) -> None:
        self.path = path
        self.zip = archive
        self.keys = {
            name.removesuffix(".npy") for name in archive.namelist() if name.endswith(".npy")
        }

    def _header(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        try:
            with self.zip.open(f"{key}.npy") as stream:
                version = np.lib.format.read_magic(stream)
                reader = _HEADER_READERS.get(version)
                if reader is None:
                    raise ValueError(f"unsupported .npy format version {version}")
                shape, _fortran, dtype = reader(stream)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
            raise CheckpointError(
                f"checkpoint {self.path}: entry {key!r} is corrupt ({one_line(error)})"
            ) from None
        return shape, dtype

    def array(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Entry ``key`` as a numeric array, of ``shape`` when given (checked before the data
        is read, so a hostile header cannot make NumPy allocate what it claims)."""
        found, dtype = self._header(key)
        if dtype.hasobject or dtype.kind not in "fiub":
            raise CheckpointError(f"checkpoint {self.path}: entry {key!r} is not numeric")
        if shape is not None and found != shape:
            raise CheckpointError(
                f"checkpoint {self.path}: entry {key!r} has shape {found}, expected {shape}"
            )
        return self._read(key)

    def text(self, key: str) -> str:
        """Entry ``key``: a string, at most ``_MAX_JSON_CHARACTERS`` long."""
        shape, dtype = self._header(key)
        if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * _MAX_JSON_CHARACTERS:
            raise CheckpointError(f"checkpoint {self.path}: entry {key!r} is not a short string")
        return str(self._read(key))

    def json(self, key: str, kind: type = dict) -> Any:
        """Entry ``key`` parsed as JSON, which must be a ``kind``."""
        try:
            value = parse_json(self.text(key), f"checkpoint {self.path}: entry {key!r}")
        except UserError as error:
            raise CheckpointError(str(error)) from None
        if not isinstance(value, kind):
            raise CheckpointError(
                f"checkpoint {self.path}: entry {key!r} must be a JSON {kind.__name__}"
            )
        return value

    def _read(self, key: str) -> np.ndarray:
        try:
            with self.zip.open(f"{key}.npy") as stream:
                return np.lib.format.read_array(stream, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
            raise CheckpointError(
                f"checkpoint {self.path}: entry {key!r} is corrupt ({one_line(error)})"
            ) from None


def _open_archive(path: Path) -> zipfile.ZipFile:
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a .npz file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as stream:
            start = stream.read(6)
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror}") from None
    if start == b"\x93NUMPY":
        raise CheckpointError(
            f"{path} is a single NumPy array (.npy), not a fastmlp checkpoint (.npz archive "
            "written by model.save)"
        )
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise CheckpointError(
            f"{path} is not a fastmlp checkpoint: not an .npz archive (truncated, or another "
            "kind of file)"
        ) from None


def _model(archive: _Archive, device: str | Backend | None) -> MLP:
    config = archive.json("config")
    unknown = sorted(set(config) - MODEL_KEYS - OPTIONAL_MODEL_KEYS)
    missing = sorted(MODEL_KEYS - set(config))
    if unknown or missing:
        problem = f"unknown keys {', '.join(unknown)}" if unknown else ""
        problem += ("; " if problem and missing else "") + (
            f"missing keys {', '.join(missing)}" if missing else ""
        )
        raise CheckpointError(
            f"checkpoint {archive.path} holds a model config with {problem} "
            "(written by another version of fastmlp?)"
        )
    try:
        model = MLP(**config, device=device or "cpu")
    except (TypeError, ValueError, OverflowError, MemoryError) as error:
        raise CheckpointError(
            f"checkpoint {archive.path} holds an invalid model config: {one_line(error)}"
        ) from None
    params = archive.array("params", shape=(model.num_params,))
    model.params[...] = model.backend.asarray(params, dtype=model.dtype)
    return model


def _optimizer(archive: _Archive, num_params: int) -> Any:
    from fastmlp import optim

    state = archive.json("optimizer")
    try:
        optimizer = optim.create(state["name"], **state["hyperparameters"])
        state["buffers"] = {
            key.partition("/")[2]: archive.array(key, shape=(num_params,))
            for key in sorted(archive.keys)
            if key.startswith("optimizer/")
        }
        missing = sorted(set(optimizer.buffers) - set(state["buffers"]))
        if missing and int(state["steps"]) > 0:
            raise ValueError(f"no state buffer {', '.join(missing)}")
        optimizer.load_state_dict(state)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(
            f"checkpoint {archive.path} holds invalid optimizer state ({one_line(error)})"
        ) from None
    return optimizer


def load_checkpoint(path: str | PathLike[str], device: str | Backend | None = None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` onto ``device`` (default CPU).

    Every entry is checked before it is used: the format marker, the model config (its keys
    and values), each array's shape and dtype (read from its header before its data).

    Raises:
        CheckpointError: the file is missing, truncated, or not a (valid) fastmlp checkpoint;
            the message names the file and what is wrong.
    """
    path = Path(path)
    with _open_archive(path) as zipped:
        archive = _Archive(path, zipped)
        if "format" not in archive.keys or archive.text("format") != FORMAT:
            raise CheckpointError(f"{path} is not a fastmlp checkpoint (no {FORMAT!r} marker)")
        if "config" not in archive.keys or "params" not in archive.keys:
            raise CheckpointError(f"checkpoint {path} has no model config or parameters")
        model = _model(archive, device)
        optimizer = _optimizer(archive, model.num_params) if "optimizer" in archive.keys else None
        epoch = None
        if "epoch" in archive.keys:
            value = archive.array("epoch", shape=())
            if value.dtype.kind not in "iu" or int(value) < 0:
                raise CheckpointError(f"checkpoint {path}: epoch must be a whole number >= 0")
            epoch = int(value)
        extra = archive.json("extra") if "extra" in archive.keys else {}
    return Checkpoint(model=model, optimizer=optimizer, epoch=epoch, extra=extra)
