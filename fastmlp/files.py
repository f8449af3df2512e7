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

from fastmlp.errors import UserError, one_line

_CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_write(path: str | PathLike[str], make_parents: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path``; rename it onto ``path`` only on success.

    Readers see either the old file or the complete new one, never a partial file; when the
    body raises, the temporary file is removed and ``path`` is left untouched.
    ``make_parents``: create missing parent folders (False: a missing folder is an error,
    e.g. a run directory deleted while its run still writes).
    """
    path = Path(path)
    if make_parents:
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


def atomic_write_text(path: str | PathLike[str], text: str, make_parents: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_write(path, make_parents=make_parents) as stream:
        stream.write(text.encode("utf-8"))
    return Path(path)


def atomic_write_json(path: str | PathLike[str], data: Any, make_parents: bool = True) -> Path:
    """Write ``data`` as indented, key-sorted JSON (one trailing newline) atomically."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return atomic_write_text(path, text, make_parents=make_parents)


# A settings or state file holding more values than this (counting every occurrence of a
# YAML alias) is not one: it is refused before anything walks through it.
MAX_VALUES = 100_000


def parse_json(text: str, what: str, reject_duplicates: bool = False) -> Any:
    """JSON text as Python data, or a :class:`~fastmlp.errors.UserError` naming ``what``:
    invalid, nested too deeply, an integer too long to convert, or (``reject_duplicates``)
    a key given twice."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise _DuplicateKey(key)
            seen[key] = value
        return seen

    try:
        return json.loads(text, object_pairs_hook=pairs if reject_duplicates else None)
    except _DuplicateKey as duplicate:
        raise UserError(f"{what} gives {duplicate.args[0]!r} twice; keep one") from None
    except RecursionError:
        raise UserError(f"{what} is nested too deeply to be read") from None
    except ValueError as error:
        raise UserError(f"{what} is not valid JSON ({one_line(error)})") from None


class _DuplicateKey(ValueError):
    pass


def check_size(data: Any, what: str, limit: int = MAX_VALUES) -> Any:
    """``data`` unless it holds more than ``limit`` values, counting every occurrence of a
    shared one (a YAML alias "bomb" expands to billions); then a UserError."""
    pending, count = [data], 0
    while pending:
        item = pending.pop()
        count += 1
        if count > limit:
            raise UserError(f"{what} holds more than {limit:,} values; it cannot be settings")
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return data


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
