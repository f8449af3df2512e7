"""What a report will train, and how long that should take on this machine.

The estimate rests on a calibration: one training pass of a mid-sized network of the classic
space (4 hidden layers of 96 ReLU units, Adam, batch 32) over a slice of the training set,
scaled to the whole set. Trials of the sweep run side by side in its workers; every other run
trains alone. Hyperband stops weak trials early, so a sweep with it is estimated at its
longest (every trial to its last epoch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastmlp.report.budgets import Budget

# Samples of the calibration pass (after a warm-up pass that compiles the kernels).
CALIBRATION_SAMPLES = 4096
# Seconds each run spends outside its epochs (loading, test evaluation, files), on average.
RUN_OVERHEAD_SECONDS = 1.5
# What a second sweep worker adds on a machine with as many cores as workers.
WORKER_EFFICIENCY = 0.7


def seconds_per_epoch(dataset: Any, device: str | None) -> float:
    """Seconds of one epoch over ``dataset``'s training set of the calibration network on
    ``device``, measured on a slice of it."""
    from fastmlp.backends import get_backend
    from fastmlp.runs.experiment import build_model_and_optimizer
    from fastmlp.training import train

    settings = {"num_layers": 4, "hidden_size": [96], "batch_size": 32, "device": device}
    backend = get_backend(device or "auto")
    model, optimizer = build_model_and_optimizer(settings, backend, dataset)
    x, y = dataset.x_train, dataset.y_train
    count = min(CALIBRATION_SAMPLES, len(x))
    options: dict[str, Any] = dict(epochs=1, batch_size=32, seed=0, progress=False, verbose=False)
    train(model, optimizer, x[:256], y[:256], **options)  # compiles the kernels
    started = time.perf_counter()
    train(model, optimizer, x[:count], y[:count], **options)
    return (time.perf_counter() - started) * len(x) / count


@dataclass(frozen=True)
class Step:
    """One step of the plan: what it trains (runs, epochs at most) and its estimate."""

    key: str
    what: str
    runs: int
    epochs: int
    seconds: float


def plan_steps(
    budget: Budget, epoch_seconds: float, sweep_workers: int, sweep_reused: bool
) -> list[Step]:
    """The budget's steps with their estimated seconds on this machine."""
    epochs, runs = budget.training_epochs(), budget.runs()
    speedup = 1 + WORKER_EFFICIENCY * (sweep_workers - 1)
    what = {
        "sweep": f"sweep of {budget.sweep_trials} {budget.sweep_method} trials, epochs "
        f"{'/'.join(map(str, budget.sweep_epochs))}"
        + (", Hyperband" if budget.hyperband else "")
        + f", {sweep_workers} worker(s) (Q4-Q7)",
        "optimizers": f"the six optimizers, {budget.compare_epochs} epochs each (Q3)",
        "losses": f"cross-entropy and squared error: {budget.loss_configs} configurations x "
        f"{budget.loss_seeds} seeds x {budget.loss_epochs} epochs (Q8)",
        "mnist": f"three configurations on MNIST, {budget.mnist_epochs} epochs each (Q10)",
    }
    steps = []
    for key in ("sweep", "optimizers", "losses", "mnist"):
        seconds = epochs[key] * epoch_seconds + runs[key] * RUN_OVERHEAD_SECONDS
        if key == "sweep":
            seconds = 0.0 if sweep_reused else seconds / speedup
        steps.append(Step(key, what[key], runs[key], epochs[key], seconds))
    return steps


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``1 h 05 min``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def describe_plan(budget: Budget, steps: list[Step], epoch_seconds: float, reused: str) -> str:
    """The plan as printed before the report starts."""
    lines = [
        f"report plan, budget {budget.name}: {budget.summary}",
        f"  calibration: one epoch of 4x96 ReLU units at batch 32 takes {epoch_seconds:.1f} s here",
    ]
    for step in steps:
        estimate = "reused" if step.key == "sweep" and reused else format_duration(step.seconds)
        lines.append(f"  {step.what}: {step.runs} runs, at most {estimate}")
    total = sum(step.seconds for step in steps)
    lines.append(
        f"  total: at most about {format_duration(total)} (finished runs are reused; "
        "Ctrl-C stops cleanly and the same command continues)"
    )
    if reused:
        lines.append(f"  using the finished sweep in {reused}")
    return "\n".join(lines)
