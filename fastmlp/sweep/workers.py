"""Sweep workers as separate processes: started, limited to their share of the CPU, stopped.

``run_in_processes(target, specs)`` runs ``target(spec)`` in one freshly spawned process per
spec (spawn, not fork: safe with CUDA and with threads) and waits for all of them.

* CPU share: NumPy's BLAS starts one busy-waiting thread per core in every process, so K
  workers on C cores would fight over them (10-50x slower). Each worker limits its BLAS and
  OpenMP thread pools to ``max(1, C // K)`` threads with threadpoolctl.
* Ctrl-C: workers run in their own process group, so the terminal's Ctrl-C reaches only the
  parent, which passes one SIGINT to each worker: each stops its trial cleanly (the trial
  is recorded as interrupted) and exits. A second Ctrl-C terminates them at once; their
  trials are then marked failed the next time the sweep starts.
* Errors: a worker that fails with a user error (``fastmlp.errors.is_user_error``) sends
  its one-line message back; the parent raises it once all workers have ended. A bug
  prints its traceback in the worker. SIGTERM to a worker stops its trial like Ctrl-C.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastmlp.errors import MissingDependencyError, describe, is_user_error
from fastmlp.interrupts import signals_as_interrupts
from fastmlp.sweep.study import SweepError

Spec = TypeVar("Spec")


def blas_threads(workers: int) -> int:
    """BLAS threads per worker so that ``workers`` processes share the CPU cores."""
    return max(1, (os.cpu_count() or 1) // workers)


def _worker_main(target: Callable[[Any], None], spec: Any, threads: int, errors: Any) -> None:
    """Entry point of a worker process."""
    if hasattr(os, "setpgrp"):
        os.setpgrp()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads), signals_as_interrupts():
        try:
            target(spec)
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as error:
            if not is_user_error(error):
                raise  # a bug: its traceback is printed and the worker exits with status 1
            errors.put(describe(error))
            sys.exit(2)


def _join(processes: Sequence[Any]) -> None:
    for process in processes:
        process.join()


def run_in_processes(target: Callable[[Spec], None], specs: Sequence[Spec]) -> None:
    """Run ``target(spec)`` for every spec, each in its own process, and wait for them.

    Raises:
        KeyboardInterrupt: after Ctrl-C, once every worker has stopped.
        SweepError: a worker's user error, or a worker that crashed.
    """
    try:
        import threadpoolctl  # noqa: F401  (the workers need it; fail here, not in each of them)
    except ImportError:
        raise MissingDependencyError(
            'parallel sweep workers need threadpoolctl: pip install "fastmlp[sweep]"'
        ) from None
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    threads = blas_threads(len(specs))
    processes = [
        context.Process(
            target=_worker_main,
            args=(target, spec, threads, errors),
            name=f"fastmlp-sweep-worker-{index}",
        )
        for index, spec in enumerate(specs)
    ]
    for process in processes:
        process.start()
    try:
        _join(processes)
    except KeyboardInterrupt as interrupt:
        print(
            "stopping: the running trials are saved as interrupted (Ctrl-C again to kill them)",
            file=sys.stderr,
            flush=True,
        )
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        try:
            _join(processes)
        except KeyboardInterrupt:
            for process in processes:
                process.terminate()
            _join(processes)
        raise interrupt from None

    messages = []
    while True:
        try:
            messages.append(errors.get_nowait())
        except queue.Empty:
            break
    if messages:
        raise SweepError(messages[0])
    crashed = [process for process in processes if process.exitcode not in (0, 130)]
    if crashed:
        codes = ", ".join(f"{process.name}: {process.exitcode}" for process in crashed)
        raise SweepError(
            f"sweep workers ended abnormally (exit status {codes}); see the messages above"
        )
