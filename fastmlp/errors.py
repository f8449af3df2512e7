"""What fastmlp reports as a user's mistake, and how it says it in one line.

:class:`UserError` (a ``ValueError``) is the base of every error caused by input or by the
machine rather than by a bug: a bad setting, a missing or corrupt file, a busy run
directory. Its message names the value or file and says how to fix it. The command line
prints such errors (and :class:`InsufficientMemoryError`, and a missing GPU) as one line
with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import reprlib


class UserError(ValueError):
    """Bad input or an environment problem the user can fix; the message says how."""


class MissingDependencyError(UserError, ImportError):
    """An optional dependency is not installed; the message gives the pip command."""


class InsufficientMemoryError(MemoryError):
    """Something would need more memory than the machine has; the message gives both sizes."""


# OSErrors that come from the machine or the user's paths, not from a bug.
_ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ENOSPC",
        "EDQUOT",
        "EROFS",
        "EACCES",
        "EPERM",
        "ENOENT",
        "EISDIR",
        "ENOTDIR",
        "EEXIST",
        "ENAMETOOLONG",
        "EMFILE",
        "ENFILE",
        "EIO",
        "ENXIO",
        "EBUSY",
        "ETXTBSY",
    )
    if hasattr(errno, name)
)


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is the user's or the machine's (shown as one line), not a bug."""
    if isinstance(error, (UserError, MemoryError)):
        return True
    return isinstance(error, OSError) and error.errno in _ENVIRONMENT_ERRNOS


def describe(error: BaseException) -> str:
    """One line for a user error: the message, or for a system error what failed where."""
    if isinstance(error, OSError) and error.strerror and not isinstance(error, UserError):
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    if isinstance(error, MemoryError) and not isinstance(error, InsufficientMemoryError):
        return f"ran out of memory ({one_line(error)})"
    return one_line(error)


def one_line(error: BaseException) -> str:
    """The first line of an error's message (its type name when the message is empty)."""
    message = str(error).strip()
    return message.splitlines()[0] if message else type(error).__name__


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60
_SHOWN.maxlist = _SHOWN.maxdict = _SHOWN.maxlevel = 3


def shown(value: object) -> str:
    """``repr(value)`` cut to a readable length (a hostile value never floods a message)."""
    text = _SHOWN.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_bytes(count: float) -> str:
    """A byte count for people: ``1.5 GB``, ``320 MB``, ``12 kB`` (powers of 1000)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            value = count / size
            return f"{value:,.0f} {unit}" if value >= 1000 else f"{value:.3g} {unit}"
    return f"{int(count)} bytes"
