"""The one exception type of the data package."""

from __future__ import annotations

from fastmlp.errors import UserError


class DataError(UserError):
    """A data set cannot be found, downloaded or read.

    The message names the file, directory or URL involved and what is wrong with it
    (wrong magic number, truncated file, wrong checksum, wrong shape, ...). It is a
    :class:`~fastmlp.errors.UserError`, so a ``ValueError``.
    """
