"""File helpers: atomic writes (temporary file, fsync, rename) and checksums.

Every file fastmlp writes that a later run reads (data downloads, checkpoints, a run's
config.json and summary.json, sweep files) goes through :func:`atomic_write`, so a kill or a
full disk at any instant leaves the old file or the complete new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import Any, BinaryIO

_CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_write(path: str | PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path``; rename it onto ``path`` only on success.

    Readers see either the old file or the complete new one, never a partial file; when the
    body raises, the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; nothing written here is secret
        os.replace(temporary, path)
        _fsync_directory(path.parent)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError) and error.filename is None and error.errno is not None:
            # a failed write (a full disk) names no file: name the one being written
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


def atomic_write_text(path: str | PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_write(path) as stream:
        stream.write(text.encode("utf-8"))
    return Path(path)


def atomic_write_json(path: str | PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented, key-sorted JSON (one trailing newline) atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def file_digest(path: str | PathLike[str], algorithm: str) -> str:
    """The hex digest (``"sha256"``, ``"md5"``, ...) of a file's bytes."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
