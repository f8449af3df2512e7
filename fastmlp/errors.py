"""How fastmlp reports an error in one line."""

from __future__ import annotations


def one_line(error: BaseException) -> str:
    """The first line of an error's message (its type name when the message is empty)."""
    message = str(error).strip()
    return message.splitlines()[0] if message else type(error).__name__
