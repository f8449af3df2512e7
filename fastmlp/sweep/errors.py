"""The error of a sweep configuration that cannot be run as written."""

from __future__ import annotations

from fastmlp.runs.config import ConfigError


class SweepConfigError(ConfigError):
    """The sweep configuration is invalid; the message names the offending key."""
