"""Stopping cleanly: SIGTERM like Ctrl-C, and blocks that a signal may not cut in half.

Schedulers, ``timeout``, Docker and ``kill PID`` send SIGTERM (a closing terminal sends
SIGHUP); :func:`signals_as_interrupts` turns both into :class:`Terminated`, a
``KeyboardInterrupt``, so every ``except KeyboardInterrupt`` that saves work on Ctrl-C saves
it on these too. :func:`interrupts_deferred` holds all three signals while a block writes
files that belong together (an epoch's metrics line and checkpoint, a trial's result), then
raises the interrupt the block was spared.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# The exit status of a process stopped by Ctrl-C (SIGINT), as shells report it (128 + 2);
# by another signal N: 128 + N.
EXIT_SIGINT = 130

_TERMINATING = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Terminated(KeyboardInterrupt):  # noqa: N818 - an interrupt, as KeyboardInterrupt is
    """The process was asked to stop by SIGTERM or SIGHUP; ``signal`` says which."""

    def __init__(self, number: int = signal.SIGTERM) -> None:
        super().__init__(signal.Signals(number).name)
        self.signal = number


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 128 + N for a signal N that :class:`Terminated` stands for."""
    return 128 + interrupt.signal if isinstance(interrupt, Terminated) else EXIT_SIGINT


def _raise_terminated(number: int, frame: Any) -> None:
    raise Terminated(number)


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Within the block (main thread only), SIGTERM and SIGHUP raise :class:`Terminated`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _raise_terminated) for number in _TERMINATING}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block ends, then raise the first one held
    (KeyboardInterrupt or :class:`Terminated`), so the block's writes happen together or
    not at all. Outside the main thread (where signals cannot be caught) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(number: int, frame: Any) -> None:
        received.append(number)

    numbers = (signal.SIGINT, *_TERMINATING)
    previous = {number: signal.signal(number, hold) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if received:
            if received[0] == signal.SIGINT:
                raise KeyboardInterrupt
            raise Terminated(received[0])
