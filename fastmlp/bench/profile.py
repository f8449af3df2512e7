"""``fastmlp bench --profile``: where a training step of the reference network spends its time.

One epoch of R (784-128-128-128-10 ReLU, Adam, float32) with every backend call timed by
what it does. Times are exclusive (a kernel called inside the optimizer step counts as the
optimizer's, not as an elementwise kernel), so the categories add up to the epoch, and
"Python and the rest" is what is left: the training loop, the layers' dispatch, argument
checks. On a GPU the calls are
asynchronous, so there each category is the host time of its launches, not device time.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import fastmlp
from fastmlp.bench.compare import benchmark_data
from fastmlp.bench.competitors import HIDDEN, LEARNING_RATE

# Backend methods by what they do.
CATEGORIES = {
    "gather_": "gather",
    "column_sums_": "bias gradients",
    "cross_entropy_": "loss",
    "mean_squared_error_": "loss",
    "run_formula_": "elementwise kernels",
    "add_scaled_": "elementwise kernels",
    "uniform_": "elementwise kernels",
}
ORDER = (
    "matmul", "elementwise kernels", "bias gradients", "loss", "optimizer", "gather",
    "Python and the rest",
)  # fmt: skip


@dataclass
class StepProfile:
    """Seconds per training step by category, at one batch size."""

    batch_size: int
    steps: int
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


class _Timer:
    """Exclusive time by category: a call inside a timed call is subtracted from it, except
    inside an ``OWNING`` category (the optimizer's kernels are the optimizer's time)."""

    OWNING = frozenset({"optimizer"})

    def __init__(self) -> None:
        self.exclusive: dict[str, float] = {}
        self.stack: list[list[Any]] = []  # [category, started, time of timed calls inside]

    @contextmanager
    def timing(self, category: str) -> Iterator[None]:
        if self.stack and self.stack[-1][0] in self.OWNING:
            yield
            return
        self.stack.append([category, time.perf_counter(), 0.0])
        try:
            yield
        finally:
            _, started, inner = self.stack.pop()
            elapsed = time.perf_counter() - started
            self.exclusive[category] = self.exclusive.get(category, 0.0) + elapsed - inner
            if self.stack:
                self.stack[-1][2] += elapsed

    def wrap(self, function: Callable[..., Any], category: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.timing(category):
                return function(*args, **kwargs)

        return timed


def profile_epoch(batch_size: int, device: str, x: np.ndarray, y: np.ndarray) -> StepProfile:
    """One timed epoch of R at ``batch_size`` on ``device`` (after an untimed warm-up)."""
    timer = _Timer()
    backend = copy.copy(fastmlp.get_backend(device))  # its timed methods stay its own
    for method, category in CATEGORIES.items():
        setattr(backend, method, timer.wrap(getattr(backend, method), category))
    bind = backend.bind_formula
    backend.bind_formula = lambda *a, **k: timer.wrap(bind(*a, **k), "elementwise kernels")
    model = fastmlp.MLP(784, HIDDEN, 10, device=backend, seed=0)
    optimizer = fastmlp.optim.Adam(lr=LEARNING_RATE)
    optimizer.step = timer.wrap(optimizer.step, "optimizer")
    x_device, y_device = backend.asarray(x), backend.asarray(y)
    options: dict[str, Any] = dict(batch_size=batch_size, seed=0, progress=False, verbose=False)
    fastmlp.train(model, optimizer, x_device, y_device, epochs=1, **options)
    xp, matmul = backend.xp, backend.xp.matmul
    xp.matmul = timer.wrap(matmul, "matmul")
    timer.exclusive.clear()
    try:
        backend.synchronize()
        started = time.perf_counter()
        fastmlp.train(model, optimizer, x_device, y_device, epochs=1, start_epoch=1, **options)
        backend.synchronize()
        total = time.perf_counter() - started
    finally:
        xp.matmul = matmul
    steps = -(-len(x) // batch_size)
    seconds = {name: timer.exclusive.get(name, 0.0) / steps for name in ORDER[:-1]}
    seconds["Python and the rest"] = total / steps - sum(seconds.values())
    return StepProfile(batch_size, steps, seconds)


def profile(
    batch_sizes: Sequence[int], device: str = "cpu", samples: int = 16384, data_dir: Any = None
) -> list[StepProfile]:
    """A :class:`StepProfile` per batch size."""
    x, y, _ = benchmark_data(samples, data_dir)
    return [profile_epoch(batch_size, device, x, y) for batch_size in batch_sizes]


def profile_table(profiles: Sequence[StepProfile]) -> str:
    """Microseconds per step by category (and share of the step), one row per batch size."""
    header = ["batch", "step (us)", *ORDER]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in profiles:
        cells = [str(row.batch_size), f"{1e6 * row.total:,.0f}"]
        cells += [
            f"{1e6 * row.seconds[name]:,.0f} ({100 * row.seconds[name] / row.total:.0f}%)"
            for name in ORDER
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
