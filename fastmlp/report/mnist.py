"""Q10: three Fashion-MNIST configurations, chosen by a stated rule, trained on MNIST."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastmlp.data.errors import DataError
from fastmlp.data.locate import locate
from fastmlp.data.sources import get_source
from fastmlp.report.budgets import MNIST_CONFIGS
from fastmlp.report.context import Context, describe_network, percent, run_spec
from fastmlp.report.figures import Line, Panel, plot_curves
from fastmlp.report.page import Bullets, Code, Figure, Paragraph, Section, Table
from fastmlp.report.sweep_results import SweepResult, distinct_configs


def pick_mnist_configs(sweep: SweepResult) -> tuple[list[Any], str]:
    """Three configurations for MNIST from the Fashion-MNIST sweep, and the rule used."""
    rule = (
        "the best Fashion-MNIST trial; then the best trial whose optimizer and activation pair "
        "differs from those already chosen; then the next such one (falling back to the next "
        "best distinct configuration when the sweep has too few pairs): MNIST is an easier "
        "task of the same shape, so what ranks well on Fashion-MNIST should transfer, and "
        "different optimizer/activation pairs hedge against a choice that does not"
    )
    candidates = distinct_configs(sweep, len(sweep.complete))
    chosen: list[Any] = []
    pairs: set[tuple[Any, Any]] = set()
    for row in candidates:
        pair = (row.values.get("optimizer"), row.values.get("activation"))
        if pair not in pairs:
            chosen.append(row)
            pairs.add(pair)
        if len(chosen) == MNIST_CONFIGS:
            return chosen, rule
    for row in candidates:
        if row not in chosen and len(chosen) < MNIST_CONFIGS:
            chosen.append(row)
    return chosen, rule


def section_q10(ctx: Context, sweep: SweepResult, mnist_dir: str | None) -> Section:
    chosen, rule = pick_mnist_configs(sweep)
    section = Section("q10", "Q10. Three configurations for MNIST")
    section.add(Paragraph(f"The rule: {rule}."))
    configs = [(row, sweep.best_config(row)) for row in chosen]
    section.add(
        Bullets(
            tuple(
                f"config {index}: trial {row.number} ({percent(row.value)} on Fashion-MNIST): "
                f"{describe_network(settings)}, {settings['optimizer']}, learning rate "
                f"{settings['learning_rate']:g}"
                for index, (row, settings) in enumerate(configs, start=1)
            )
        )
    )
    command = f"fastmlp report --budget {ctx.budget.name} --out {ctx.out} --mnist_dir DIR"
    try:
        located = locate(get_source("mnist"), data_dir=mnist_dir, download=mnist_dir is None)
    except DataError as error:
        ctx.numbers["mnist"] = None
        return section.add(
            Paragraph(
                "Not trained: the MNIST files are not on this machine and could not be "
                f"downloaded ({error})."
            ),
            Code(
                command,
                "Once the four MNIST files (train-images-idx3-ubyte.gz, "
                "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                "t10k-labels-idx1-ubyte.gz) are in a folder DIR, this trains the three "
                "configurations and reuses everything else:",
            ),
        )
    where = str(Path(next(iter(located.files.values()))).parent)
    rows, runs = [], []
    for index, (row, settings) in enumerate(configs, start=1):
        settings = {**settings, "dataset": "mnist", "epochs": ctx.budget.mnist_epochs, "seed": 0}
        run = ctx.run(
            run_spec(f"q10-{index}", settings, ctx, data_dir=where), f"[q10 {index}/{len(configs)}]"
        )
        runs.append(run)
        rows.append(
            (
                f"config {index}",
                percent(row.value),
                percent(run.best_val_accuracy),
                percent(run.test_accuracy),
            )
        )
    ctx.numbers["mnist"] = {
        f"config_{index}": run.test_accuracy for index, run in enumerate(runs, start=1)
    }
    path = plot_curves(
        [
            Panel(
                "MNIST validation accuracy",
                "accuracy",
                [
                    Line(f"config {i}", [run.curve("val_accuracy")], i - 1)
                    for i, run in enumerate(runs, start=1)
                ],
                percent=True,
            )
        ],
        ctx.figures / "q10_mnist.png",
        f"The three configurations on MNIST, {ctx.budget.mnist_epochs} epochs",
    )
    return section.add(
        Table(
            ("configuration", "Fashion-MNIST validation", "MNIST validation", "MNIST test"),
            tuple(rows),
        ),
        Figure(path, "Validation accuracy of the three configurations on MNIST"),
        ctx.provenance(f"three MNIST runs from {where}", sum(run.seconds for run in runs), "0"),
    )
