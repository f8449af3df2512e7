"""The one exception type of the data package."""

from __future__ import annotations


class DataError(ValueError):
    """A data set cannot be found, downloaded or read.

    The message names the file, directory or URL involved and what is wrong with it
    (wrong magic number, truncated file, wrong checksum, wrong shape, ...). It is a
    ``ValueError`` so callers that already catch bad input keep working.
    """
