"""Q8: the best configurations trained with cross-entropy and with squared error over
seeds, the verdict from their spread, and the logit-gradient numbers that explain it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fastmlp.nn.losses import LOSSES
from fastmlp.report.context import Context, describe_network, run_spec
from fastmlp.report.figures import Line, Panel, plot_curves, plot_spread
from fastmlp.report.loss_gradients import gradient_norms
from fastmlp.report.page import Figure, Paragraph, Section, Table
from fastmlp.report.runner import FinishedRun
from fastmlp.report.sections import class_probabilities
from fastmlp.report.sweep_results import SweepResult, distinct_configs

# The two losses Q8 compares, and how their runs are named.
LOSS_SHORT = {"cross_entropy": "ce", "mean_squared_error": "mse"}


LossRuns = dict[tuple[int, str], list[FinishedRun]]

# Said when no configuration shows a difference beyond the seeds' spread.
NO_DIFFERENCE = (
    " A uniformly smaller gradient need not mean a smaller step: RMSprop, Adam and NAdam "
    "divide each step by a running RMS of the gradient, which undoes a rescaling of the "
    "loss; where the two losses still differ is in how hard they push on mistakes (below)."
)


def _train_loss_runs(ctx: Context, chosen: list[Any], sweep: SweepResult) -> LossRuns:
    """Each chosen configuration with each loss and seed: (rank, loss) -> runs by seed."""
    results: LossRuns = {}
    total = len(chosen) * len(LOSS_SHORT) * ctx.budget.loss_seeds
    for rank, row in enumerate(chosen, start=1):
        base = sweep.best_config(row)
        for loss in LOSS_SHORT:
            for seed in range(ctx.budget.loss_seeds):
                settings = {**base, "loss": loss, "seed": seed, "epochs": ctx.budget.loss_epochs}
                spec = run_spec(f"q8-{rank}-{LOSS_SHORT[loss]}-seed{seed}", settings, ctx)
                done = sum(map(len, results.values())) + 1
                results.setdefault((rank, loss), []).append(ctx.run(spec, f"[q8 {done}/{total}]"))
    return results


def _relative(curve: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """A loss curve divided by its first epoch's value (empty when that is 0 or missing)."""
    if not curve or not curve[0][1]:
        return []
    return [(epoch, value / curve[0][1]) for epoch, value in curve]


def _loss_figures(ctx: Context, results: LossRuns) -> tuple[Path, Path]:
    """The curves of both losses and the spread of their test accuracies."""
    accuracy, losses, spread = [], [], []
    for (rank, loss), runs in results.items():
        colour, style = rank - 1, "-" if loss == "cross_entropy" else "--"
        label = f"config {rank}, {LOSSES.get(loss).title}"
        accuracy.append(Line(label, [run.curve("val_accuracy") for run in runs], colour, style))
        losses.append(
            Line(label, [_relative(run.curve("train_loss")) for run in runs], colour, style)
        )
        spread.append((label, [run.test_accuracy or 0.0 for run in runs]))
    curves = plot_curves(
        [
            Panel("validation accuracy", "accuracy", accuracy, percent=True),
            Panel("training loss, relative to epoch 1", "loss / loss of epoch 1", losses),
        ],
        ctx.figures / "q8_loss_curves.png",
        f"Cross-entropy (solid) against squared error (dashed), {ctx.budget.loss_seeds} seeds each",
    )
    return curves, plot_spread(
        spread, ctx.figures / "q8_test_spread.png", "Test accuracy of every seed", "test accuracy"
    )


def loss_verdict(cross_entropy: np.ndarray, squared: np.ndarray) -> str:
    """Which loss is better on test accuracies over seeds: a difference of the means counts
    when it exceeds twice the larger standard deviation."""
    gap = cross_entropy.mean() - squared.mean()
    noise = max(cross_entropy.std(), squared.std(), 1e-4)
    if gap > 2 * noise:
        return "cross-entropy better"
    return "squared error better" if -gap > 2 * noise else "no clear difference"


def _loss_table(ctx: Context, chosen: list[Any], results: LossRuns) -> tuple[Table, list[str]]:
    rows, verdicts = [], []
    for rank, row in enumerate(chosen, start=1):
        ce, mse = (
            np.array([run.test_accuracy or 0.0 for run in results[(rank, loss)]])
            for loss in LOSS_SHORT
        )
        verdicts.append(loss_verdict(ce, mse))
        ctx.numbers.setdefault("cross_entropy_vs_mse", {})[f"config_{rank}"] = {
            "cross_entropy": float(ce.mean()),
            "mean_squared_error": float(mse.mean()),
        }
        rows.append(
            (
                f"config {rank} (trial {row.number})",
                f"{100 * ce.mean():.2f}% ± {100 * ce.std():.2f}",
                f"{100 * mse.mean():.2f}% ± {100 * mse.std():.2f}",
                f"{100 * (ce.mean() - mse.mean()):+.2f} points",
                verdicts[-1],
            )
        )
    table = Table(
        ("configuration", "cross-entropy", "squared error", "difference", "verdict"),
        tuple(rows),
        caption="Test accuracy, mean ± standard deviation over seeds; a difference counts "
        "when it exceeds twice the larger standard deviation:",
    )
    return table, verdicts


def section_q8(ctx: Context, sweep: SweepResult, dataset: Any) -> Section:
    chosen = distinct_configs(sweep, ctx.budget.loss_configs)
    results = _train_loss_runs(ctx, chosen, sweep)
    curves, spread = _loss_figures(ctx, results)
    table, verdicts = _loss_table(ctx, chosen, results)
    counts = ", ".join(
        f"{verdict} for {verdicts.count(verdict)} of {len(verdicts)}"
        for verdict in sorted(set(verdicts))
    )
    configs = "; ".join(
        f"config {rank}: trial {row.number}, {describe_network(sweep.best_config(row))}, "
        f"{row.values.get('optimizer')}"
        for rank, row in enumerate(chosen, start=1)
    )
    seeds = f"0-{ctx.budget.loss_seeds - 1}"
    return Section("q8", "Q8. Cross-entropy against squared error").add(
        Paragraph(
            f"The sweep's {len(chosen)} best distinct configurations ({configs}), each trained "
            f"with both losses for {ctx.budget.loss_epochs} epochs with seeds {seeds}: the "
            "same initial weights and shuffling for both losses."
        ),
        Figure(curves, "Validation accuracy and relative training loss, mean and range over seeds"),
        Figure(spread, "Test accuracy of each seed (dots) and their mean (bar)"),
        table,
        Paragraph(
            f"Verdict: {counts} configurations."
            + (NO_DIFFERENCE if set(verdicts) == {"no clear difference"} else "")
        ),
        Paragraph(_gradient_evidence(results[(1, "mean_squared_error")][0], dataset, ctx)),
        ctx.provenance(
            f"{sum(map(len, results.values()))} runs",
            sum(run.seconds for runs in results.values() for run in runs),
            seeds,
        ),
    )


def _gradient_evidence(run: FinishedRun, dataset: Any, ctx: Context) -> str:
    """Why the losses differ, in numbers: the logit gradient each loss gives the squared-error
    model's validation predictions (see :mod:`fastmlp.report.loss_gradients`)."""
    probabilities = class_probabilities(run.path, run.summary, dataset.x_val, ctx.device)
    norms = gradient_norms(probabilities, dataset.y_val)
    wrong = probabilities.argmax(axis=1) != dataset.y_val
    confident = wrong & (probabilities.max(axis=1) > 0.9)
    uniform = np.full((1, len(dataset.class_names)), 1 / len(dataset.class_names))
    start = gradient_norms(uniform, np.array([0]))
    text = (
        "Why: both losses see the same softmax output P, but squared error's gradient with "
        "respect to the logits passes through the softmax Jacobian, 2 J (P - y) with "
        "J = diag(P) - P P^T, which vanishes as P saturates, while cross-entropy's is P - y. "
        f"At a uniform start, |dL/dz| is {start['cross_entropy'][0]:.3f} for cross-entropy and "
        f"{start['mean_squared_error'][0]:.3f} for squared error, "
        f"{start['cross_entropy'][0] / start['mean_squared_error'][0]:.1f} times smaller. "
    )

    def medians(rows: np.ndarray) -> tuple[float, float]:
        """Median |dL/dz| over ``rows`` under cross-entropy and under squared error."""
        ce, mse = (float(np.median(norms[loss][rows])) for loss in LOSS_SHORT)
        return ce, mse

    if wrong.any():
        ce, mse = medians(wrong)
        text += (
            f"On the {int(wrong.sum())} validation images the trained squared-error model "
            f"(config 1, seed 0) gets wrong, the median |dL/dz| is {mse:.3f} under squared error "
            f"against {ce:.3f} had it been cross-entropy ({ce / max(mse, 1e-12):.1f} times larger)"
        )
        if confident.any():
            ce_c, mse_c = medians(confident)
            text += (
                f"; on the {int(confident.sum())} it gets wrong with over 90% confidence, "
                f"{mse_c:.4f} against {ce_c:.3f}: squared error barely corrects confident mistakes"
            )
        text += "."
    return text
