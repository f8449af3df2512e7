"""``make_report``: run what the report needs, then write its page (Q1-Q10).

The report's folder::

    OUT/index.html      the page, one self-contained file
    OUT/report.md       the same in Markdown, with the figures beside it
    OUT/figures/*.png   every figure of the page
    OUT/report.json     the key numbers (best validation and test accuracy, CE vs MSE, ...)
    OUT/sweeps/report-BUDGET/   the sweep (unless --sweep names another one)
    OUT/runs/           the other runs: q3-*, q8-*, q10-*

Every run has a fixed name derived from what it trains, so the same command run again
reuses every finished run, resumes an interrupted one, and trains only what is missing; a
sweep continues from its storage. All runs share one W&B group, ``report-BUDGET``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import platform
import shlex
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

import fastmlp
from fastmlp import data as datasets
from fastmlp import optim
from fastmlp.data.errors import DataError
from fastmlp.data.locate import locate
from fastmlp.data.sources import get_source
from fastmlp.errors import UserError
from fastmlp.files import atomic_write_json, atomic_write_text
from fastmlp.nn.losses import LOSSES
from fastmlp.report import observations
from fastmlp.report.budgets import COMPARED_OPTIMIZERS, MNIST_CONFIGS, Budget
from fastmlp.report.figures import Line, Panel, plot_curves, plot_spread
from fastmlp.report.loss_gradients import gradient_norms
from fastmlp.report.page import (
    Bullets,
    Code,
    Figure,
    Paragraph,
    Section,
    Table,
    render_html,
    render_markdown,
)
from fastmlp.report.plan import describe_plan, format_duration, plan_steps, seconds_per_epoch
from fastmlp.report.runner import FinishedRun, RunSpec, ensure_run, read_finished
from fastmlp.runs import resolve_wandb_mode

# The two losses Q8 compares, and how their runs are named.
LOSS_SHORT = {"cross_entropy": "ce", "mean_squared_error": "mse"}

# Settings a report run may be told on the command line that do not change what it computes.
NOT_HASHED = ("device", "name", "tags", "wandb_project", "wandb_entity")


class ReportError(UserError):
    """The report cannot be made as asked (a sweep folder that is not one, no trials)."""


@dataclass
class Context:
    """What every step of the report shares."""

    budget: Budget
    out: Path
    data_dir: str | None
    device: str | None
    wandb_mode: str
    group: str
    command: str
    figures: Path
    machine: str
    wandb_project: str = "fastmlp"
    wandb_entity: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)
    finished: list[FinishedRun] = field(default_factory=list)

    @property
    def runs_dir(self) -> Path:
        return self.out / "runs"

    def run(self, spec: RunSpec, label: str) -> FinishedRun:
        finished = ensure_run(
            spec, self.runs_dir, group=self.group, wandb_mode=self.wandb_mode, label=label
        )
        self.finished.append(finished)
        return finished

    def provenance(self, what: str, seconds: float, seeds: str) -> Paragraph:
        """The "what was run" line every section has."""
        return Paragraph(
            f"What was run: {what}. Budget {self.budget.name}; seeds {seeds}; Fashion-MNIST's "
            "60,000 training images split 90/10 into training and validation (split seed 0), "
            f"the 10,000 test images for test accuracy; {self.machine}; fastmlp "
            f"{fastmlp.__version__}; {format_duration(seconds)} of training. Reproduce: "
            f"`{self.command}`."
        )


@dataclass
class ReportResult:
    """What :func:`make_report` wrote, and the key numbers of the page."""

    directory: Path
    index: Path
    markdown: Path
    numbers: dict[str, Any]
    seconds: float
    sections: list[Section] = field(default_factory=list)


def settings_key(settings: dict[str, Any]) -> str:
    """Six hex digits naming what ``settings`` train: a run's name carries them, so a
    changed configuration is a new run and never a reused one."""
    kept = {key: value for key, value in sorted(settings.items()) if key not in NOT_HASHED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:6]


def _spec(
    name: str, settings: dict[str, Any], ctx: Context, data_dir: str | None = None
) -> RunSpec:
    settings = {
        **settings,
        "device": ctx.device or "auto",
        "wandb_project": ctx.wandb_project,
        "wandb_entity": ctx.wandb_entity,
    }
    return RunSpec(
        name=f"{name}-{settings_key(settings)}",
        settings=settings,
        data_dir=ctx.data_dir if data_dir is None else data_dir,
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.2f}%"


def _copy_figure(source: Path, ctx: Context, name: str) -> Path:
    target = ctx.figures / name
    shutil.copyfile(source, target)
    return target


def _machine() -> str:
    from fastmlp.runs.environment import processor_name

    return f"{os.cpu_count()}-core {platform.machine()} ({processor_name() or 'unknown CPU'})"


# ------------------------------------------------------------------ the sweep


@dataclass
class SweepResult:
    """The sweep's directory, configuration, trials, report files and best trial."""

    directory: Path
    config: Any
    rows: list[Any]
    complete: list[Any]
    files: dict[str, Path]
    notes: list[str]
    seconds: float

    @property
    def best(self) -> Any:
        return self.complete[0]

    def best_config(self, row: Any) -> dict[str, Any]:
        from fastmlp.sweep.report import best_config

        return best_config(self.config, row.params, row.blas_threads)

    def run_dir(self, row: Any) -> Path:
        return self.directory / row.run_dir


def run_sweep(ctx: Context, sweep_dir: str | None) -> SweepResult:
    """Run (or continue) the budget's sweep, or read the given one; then its report."""
    from fastmlp.sweep import parse_sweep_config, run_local_sweep
    from fastmlp.sweep.report import load_trials, require_report_dependencies, write_report

    require_report_dependencies()
    if sweep_dir is None:
        config = parse_sweep_config(ctx.budget.sweep_config())
        workers = None if (ctx.device or "").startswith("cuda") else min(2, os.cpu_count() or 1)
        print(f"[sweep] {config.name}: {ctx.budget.sweep_trials} trials", flush=True)
        run_local_sweep(
            config,
            out=ctx.out / "sweeps",
            count=ctx.budget.sweep_trials,
            workers=workers,
            data_dir=ctx.data_dir,
            wandb_mode=ctx.wandb_mode,
            device=ctx.device,
            figures=False,
        )
        directory = ctx.out / "sweeps" / config.name
    else:
        directory = Path(sweep_dir)
    config, rows = load_trials(directory)
    report = write_report(directory, wandb_mode="disabled")
    if config.metric != "val_accuracy":  # the report ranks by validation accuracy
        rows = [dataclasses.replace(row, value=row.val_accuracy) for row in rows]
    complete = sorted(
        (row for row in rows if row.state == "COMPLETE" and _finite(row.value)),
        key=lambda row: -row.value,
    )
    if not complete:
        raise ReportError(f"the sweep in {directory} has no complete trial to report on")
    seconds = sum(row.seconds or 0.0 for row in rows)
    return SweepResult(directory, config, rows, complete, report.files, report.notes, seconds)


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def distinct_configs(sweep: SweepResult, count: int) -> list[Any]:
    """The ``count`` best complete trials with different settings."""
    chosen, seen = [], set()
    for row in sweep.complete:
        key = json.dumps(row.values, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            chosen.append(row)
        if len(chosen) == count:
            break
    return chosen


# ------------------------------------------------------------------ sections


def section_q1(ctx: Context, dataset: Any) -> Section:
    from fastmlp.runs.figures import plot_class_samples

    path = plot_class_samples(
        dataset.x_train, dataset.y_train, dataset.class_names, ctx.figures / "q1_samples.png"
    )
    return Section("q1", "Q1. One sample image per class").add(
        Paragraph(
            f"One image of each of the {len(dataset.class_names)} Fashion-MNIST classes, drawn "
            f"from the {len(dataset.y_train):,} training images (seed 0)."
        ),
        Figure(path, "One training image per Fashion-MNIST class"),
        Code("fastmlp samples --dataset fashion_mnist --seed 0", "The same grid, logged to W&B:"),
    )


def section_q2(ctx: Context, sweep: SweepResult) -> Section:
    from fastmlp.nn.mlp import MLP

    lines, first = inspect.getsourcelines(MLP._build_layers)
    best = sweep.best_config(sweep.best)
    return Section("q2", "Q2. A network whose depth and width are one setting each").add(
        Paragraph(
            "The number of hidden layers and their sizes are two settings: `-nhl/--num_layers` "
            "and `-sz/--hidden_size` (one size for every layer, or one per layer). In Python "
            "they are `fastmlp.MLP(hidden_sizes=...)`. The model is a list of layers built "
            "from them by `MLP._build_layers`:"
        ),
        Code("".join(lines).rstrip(), f"fastmlp/nn/mlp.py, lines {first}-{first + len(lines) - 1}"),
        Code(
            "fastmlp train -nhl 4 -sz 64              # 4 hidden layers of 64 units\n"
            "fastmlp train -nhl 3 -sz 256 128 64      # one size per layer\n"
            "python -c 'import fastmlp; print(fastmlp.MLP(hidden_sizes=(256, 128, 64)))'",
            "Changing the architecture:",
        ),
        Paragraph(f"The sweep's best network: {_describe(best)}."),
    )


def _architecture_recipe() -> str | None:
    """The "An optimizer" paragraph of docs/ARCHITECTURE.md, when the source tree has it."""
    path = Path(fastmlp.__file__).resolve().parent.parent / "docs" / "ARCHITECTURE.md"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    start = text.find("**An optimizer**")
    if start < 0:
        return None
    end = text.find("\n\n", start)
    paragraph = " ".join(text[start:end].replace("**", "").split())
    return "From docs/ARCHITECTURE.md: " + paragraph.removeprefix("An optimizer: ")


def section_q3(ctx: Context, sweep: SweepResult) -> Section:
    base = sweep.best_config(sweep.best)
    runs = {}
    for index, name in enumerate(COMPARED_OPTIMIZERS):
        tried = [row for row in sweep.complete if row.values.get("optimizer") == name]
        rate = tried[0].values["learning_rate"] if tried else base["learning_rate"]
        settings = {**base, "optimizer": name, "learning_rate": rate}
        settings.update(epochs=ctx.budget.compare_epochs, seed=0)
        spec = _spec(f"q3-{name}", settings, ctx)
        runs[name] = (
            ctx.run(spec, f"[q3 {index + 1}/{len(COMPARED_OPTIMIZERS)}]"),
            rate,
            bool(tried),
        )
    path = plot_curves(
        [
            Panel(
                "validation accuracy",
                "accuracy",
                [
                    Line(name, [run.curve("val_accuracy")], i)
                    for i, (name, (run, _, _)) in enumerate(runs.items())
                ],
                percent=True,
            ),
            Panel(
                f"training loss ({LOSSES.get(base['loss']).title})",
                "mean loss over the epoch",
                [
                    Line(name, [run.curve("train_loss")], i)
                    for i, (name, (run, _, _)) in enumerate(runs.items())
                ],
            ),
        ],
        ctx.figures / "q3_optimizers.png",
        f"Six optimizers on the same network, {ctx.budget.compare_epochs} epochs",
    )
    ranked = sorted(runs.items(), key=lambda item: -(item[1][0].best_val_accuracy or 0))
    table = Table(
        ("optimizer", "learning rate", "from", "best val accuracy", "test accuracy", "time"),
        tuple(
            (
                name,
                f"{rate:g}",
                "the sweep's best trial with it" if tried else "the best trial (not tried)",
                _percent(run.best_val_accuracy),
                _percent(run.test_accuracy),
                format_duration(run.seconds),
            )
            for name, (run, rate, tried) in ranked
        ),
    )
    ctx.numbers["optimizers"] = {name: run.best_val_accuracy for name, (run, _, _) in runs.items()}
    registry = Table(
        ("optimizer", "what it is", "file", "lines"),
        tuple(
            (
                name,
                optim.optimizer_class(name).summary,
                f"fastmlp/optim/{Path(inspect.getfile(optim.optimizer_class(name))).name}",
                len(inspect.getsourcelines(inspect.getmodule(optim.optimizer_class(name)))[0]),
            )
            for name in optim.OPTIMIZERS.names()
        ),
    )
    example = inspect.getsource(inspect.getmodule(optim.optimizer_class("adamw")))
    recipe = _architecture_recipe()
    seconds = sum(run.seconds for run, _, _ in runs.values())
    section = Section("q3", "Q3. Backpropagation with six optimizers, and adding a seventh")
    section.add(
        Paragraph(
            "Backpropagation is written out by hand (no autodiff): each layer's backward pass "
            "fills its slice of one flat gradient buffer, and one fused kernel updates every "
            "parameter. Every optimizer is one file with its hyperparameters and a "
            "per-element update formula; its trajectory is tested against torch.optim."
        ),
        registry,
        Paragraph(
            "Adding an optimizer is one new file in `fastmlp/optim/`; nothing else changes. "
            + (recipe or 'See docs/ARCHITECTURE.md, "How to add ...", in the source tree.')
        ),
        Paragraph(
            "Eve (Koushik and Hayashi, 2016) is Adam with the step divided by a running "
            "ratio of successive losses. Its per-element update is Adam's with one more "
            "scalar, so it is such a file, except that the scalar needs each step's loss, "
            "which `Optimizer.step` does not receive today (the training loop keeps the loss "
            "on the device, so that a step costs no host sync): Eve also needs the loss "
            "passed to `step` in `fastmlp/training.py`."
        ),
        Code(example.rstrip(), "fastmlp/optim/adamw.py, a whole optimizer:"),
        Paragraph(
            f"The six optimizers trained the sweep's best network ({_describe(base)}) for "
            f"{ctx.budget.compare_epochs} epochs from the same initial weights and shuffling "
            "(seed 0), each at the learning rate of the sweep's best trial that used it:"
        ),
        Figure(path, "Validation accuracy and training loss of the six optimizers"),
        table,
        ctx.provenance("six runs, one per optimizer", seconds, "0"),
    )
    return section


def _describe(settings: dict[str, Any]) -> str:
    """A configuration's network in words: "4 hidden layers of 64 relu units, ..."."""
    sizes = list(settings["hidden_size"])
    width = sizes[0] if len(set(sizes)) == 1 else sizes
    return (
        f"{settings['num_layers']} hidden layers of {width} {settings['activation']} units, "
        f"{settings['weight_init']} init, batch {settings['batch_size']}, weight decay "
        f"{settings['weight_decay']:g}"
    )


def section_q4(ctx: Context, sweep: SweepResult, given: bool) -> Section:
    import yaml

    states: dict[str, int] = {}
    for row in sweep.rows:
        states[row.state] = states.get(row.state, 0) + 1
    counted = ", ".join(f"{count} {state.lower()}" for state, count in sorted(states.items()))
    names = [Path(row.run_dir).name for row in sweep.complete[:5]]
    # lists of values on one line each: [5, 10]
    config_text = yaml.safe_dump(sweep.config.raw, sort_keys=False, default_flow_style=None)
    config_file = atomic_write_text(ctx.out / "sweep.yaml", config_text)
    command = f"fastmlp sweep {config_file} --out {sweep.directory.parent}"
    return Section("q4", "Q4. The hyperparameter sweep").add(
        Paragraph(
            f"Sweep {sweep.config.name}: {len(sweep.rows)} trials ({counted}), "
            f"{sweep.config.method} search for the {sweep.config.goal[:3]}imum of "
            f"{sweep.config.metric} on the 10% "
            "validation split. Each trial is a normal run with a name made of the settings "
            "that differ from the defaults, e.g.:"
        ),
        Bullets(tuple(f"`{name}`" for name in names)),
        Code(config_text.rstrip(), f"The sweep config ({config_file}):"),
        ctx.provenance(
            f"the sweep in {sweep.directory}" + (" (given with --sweep)" if given else ""),
            sweep.seconds,
            "0 for every trial",
        ),
        Code(command, "The same sweep on its own (it continues from its storage when run again):"),
    )


def section_q5(ctx: Context, sweep: SweepResult) -> Section:
    best = sweep.best
    ctx.numbers["best_val_accuracy"] = best.value
    ctx.numbers["best_trial"] = best.number
    section = Section("q5", "Q5. The best validation accuracy").add(
        Paragraph(
            f"Best validation accuracy: {_percent(best.value)}, trial {best.number} "
            f"({_describe(sweep.best_config(best))}, {best.values.get('optimizer')}, learning "
            f"rate {best.values.get('learning_rate')}, {best.values.get('epochs')} epochs)."
        )
    )
    if "accuracy_vs_time" in sweep.files:
        path = _copy_figure(sweep.files["accuracy_vs_time"], ctx, "q5_accuracy_vs_time.png")
        section.add(Figure(path, "Validation accuracy of every trial as the sweep went on"))
    section.add(
        Table(
            ("trial", "val accuracy", "optimizer", "activation", "layers", "size", "lr"),
            tuple(
                (
                    row.number,
                    _percent(row.value),
                    row.values.get("optimizer"),
                    row.values.get("activation"),
                    row.values.get("num_layers"),
                    row.values.get("hidden_size"),
                    row.values.get("learning_rate"),
                )
                for row in sweep.complete[:10]
            ),
            caption="The ten best trials:",
        ),
        ctx.provenance(f"the sweep in {sweep.directory}", sweep.seconds, "0 for every trial"),
    )
    return section


def section_q6(ctx: Context, sweep: SweepResult) -> Section:
    trials = [observations.Trial(row.number, row.values, row.value) for row in sweep.complete]
    section = Section("q6", "Q6. What worked and what did not")
    for key, name, caption in (
        (
            "parallel_coordinates",
            "q6_parallel_coordinates.png",
            "Every complete trial through its settings",
        ),
        (
            "importance",
            "q6_importance.png",
            "Parameter importance (fANOVA) and rank correlation with validation accuracy",
        ),
    ):
        if key in sweep.files:
            section.add(Figure(_copy_figure(sweep.files[key], ctx, name), caption))
    section.add(
        Paragraph(f"Observations from the {len(trials)} complete trials:"),
        Bullets(tuple(observations.observe(trials, 10, "validation accuracy"))),
    )
    if sweep.notes:
        section.add(Paragraph("Caution: " + "; ".join(sweep.notes) + "."))
    section.add(
        ctx.provenance(f"the sweep in {sweep.directory}", sweep.seconds, "0 for every trial"),
        Code(f"fastmlp sweep report {sweep.directory}", "The sweep's own report:"),
    )
    return section


def _probabilities(
    run_dir: Path, summary: dict[str, Any], x: Any, device: str | None
) -> np.ndarray:
    """The class probabilities, as a host array, of the weights a run's test accuracy used."""
    from fastmlp.nn import load_checkpoint

    best = run_dir / "best.npz"
    path = best if summary.get("restore_best") and best.exists() else run_dir / "checkpoint.npz"
    model = load_checkpoint(path, device=device or "auto").model
    return model.backend.to_numpy(model.forward(x))


def section_q7(ctx: Context, sweep: SweepResult, dataset: Any) -> Section:
    from fastmlp.runs import figures
    from fastmlp.runs.metrics import confusion_matrix, per_class_metrics

    best = sweep.best
    run_dir = sweep.run_dir(best)
    finished = read_finished(run_dir)
    if finished is None:
        raise ReportError(f"the best trial's run {run_dir} has no finished summary")
    probabilities = _probabilities(run_dir, finished.summary, dataset.x_test, ctx.device)
    predictions = probabilities.argmax(axis=1)
    confusion = confusion_matrix(dataset.y_test, predictions, len(dataset.class_names))
    metrics = per_class_metrics(confusion)
    accuracy = float(metrics["accuracy"])
    ctx.numbers["test_accuracy"] = accuracy
    title = f"Best trial ({best.number}) on the Fashion-MNIST test set"
    names = dataset.class_names
    paths = {
        "confusion": figures.plot_confusion_matrix(
            confusion, names, ctx.figures / "q7_confusion_matrix.png", title=title
        ),
        "per_class": figures.plot_per_class_metrics(
            confusion, names, ctx.figures / "q7_per_class.png", title=title
        ),
        "pairs": figures.plot_confused_pairs(
            dataset.x_test,
            dataset.y_test,
            predictions,
            names,
            ctx.figures / "q7_confused_pairs.png",
            title=title,
        ),
        "mistakes": figures.plot_confident_mistakes(
            dataset.x_test,
            dataset.y_test,
            predictions,
            probabilities.max(axis=1),
            names,
            ctx.figures / "q7_confident_mistakes.png",
        ),
    }
    off = confusion.astype(np.float64).copy()
    np.fill_diagonal(off, 0)
    true, predicted = np.unravel_index(int(off.argmax()), off.shape)
    worst = int(np.argmin(metrics["recall"]))
    return Section("q7", "Q7. The best model on the test set").add(
        Paragraph(
            f"Test accuracy of the best trial (trial {best.number}, best validation accuracy "
            f"{_percent(best.value)}): {_percent(accuracy)} on {int(confusion.sum()):,} test "
            f"images. The hardest class is {names[worst]} (recall "
            f"{_percent(float(metrics['recall'][worst]))}); the most frequent confusion is "
            f"{names[true]} taken for {names[predicted]} ({int(off[true, predicted])} images)."
        ),
        Figure(paths["confusion"], "Confusion matrix, with each class's recall and precision"),
        Figure(paths["per_class"], "Precision, recall and F1 of each class"),
        Figure(paths["pairs"], "The most frequent confusions, with examples"),
        Figure(paths["mistakes"], "The mistakes made with the highest confidence"),
        ctx.provenance(
            f"trial {best.number} of the sweep, {run_dir}",
            finished.seconds,
            str(finished.config.get("seed")),
        ),
        Code(f"fastmlp evaluate {run_dir}", "The same evaluation of this run:"),
    )


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
                spec = _spec(f"q8-{rank}-{LOSS_SHORT[loss]}-seed{seed}", settings, ctx)
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
        f"config {rank}: trial {row.number}, {_describe(sweep.best_config(row))}, "
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
    probabilities = _probabilities(run.path, run.summary, dataset.x_val, ctx.device)
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
    if wrong.any():
        ce, mse = (
            float(np.median(norms["cross_entropy"][wrong])),
            float(np.median(norms["mean_squared_error"][wrong])),
        )
        text += (
            f"On the {int(wrong.sum())} validation images the trained squared-error model "
            f"(config 1, seed 0) gets wrong, the median |dL/dz| is {mse:.3f} under squared error "
            f"against {ce:.3f} had it been cross-entropy ({ce / max(mse, 1e-12):.1f} times larger)"
        )
        if confident.any():
            ce_c, mse_c = (
                float(np.median(norms["cross_entropy"][confident])),
                float(np.median(norms["mean_squared_error"][confident])),
            )
            text += (
                f"; on the {int(confident.sum())} it gets wrong with over 90% confidence, "
                f"{mse_c:.4f} against {ce_c:.3f}: squared error barely corrects confident mistakes"
            )
        text += "."
    return text


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


def section_q9(ctx: Context) -> Section:
    from fastmlp.runs.environment import git_commit

    commit = git_commit()
    location = Path(fastmlp.__file__).resolve().parent.parent
    url = _remote_url(location)
    lines = [
        f"fastmlp {fastmlp.__version__}" + (f", commit {commit}" if commit else ""),
        f"source: {url}" if url else f"source: {location} (this machine's copy)",
        "the network: fastmlp/nn/ (layers/, mlp.py, losses.py); the optimizers: "
        "fastmlp/optim/; the training loop: fastmlp/training.py; this report: fastmlp/report/",
    ]
    return Section("q9", "Q9. The code").add(Bullets(tuple(lines)))


def _remote_url(location: Path) -> str | None:
    import subprocess

    try:
        found = subprocess.run(
            ["git", "-C", str(location), "remote", "get-url", "origin"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    url = found.stdout.strip()
    return url if found.returncode == 0 and url else None


def section_q10(ctx: Context, sweep: SweepResult, mnist_dir: str | None) -> Section:
    chosen, rule = pick_mnist_configs(sweep)
    section = Section("q10", "Q10. Three configurations for MNIST")
    section.add(Paragraph(f"The rule: {rule}."))
    configs = [(row, sweep.best_config(row)) for row in chosen]
    section.add(
        Bullets(
            tuple(
                f"config {index}: trial {row.number} ({_percent(row.value)} on Fashion-MNIST): "
                f"{_describe(settings)}, {settings['optimizer']}, learning rate "
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
            _spec(f"q10-{index}", settings, ctx, data_dir=where), f"[q10 {index}/{len(configs)}]"
        )
        runs.append(run)
        rows.append(
            (
                f"config {index}",
                _percent(row.value),
                _percent(run.best_val_accuracy),
                _percent(run.test_accuracy),
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


# ------------------------------------------------------------------ the whole report


def make_report(
    budget: Budget,
    *,
    out: str | PathLike[str] = "report",
    sweep_dir: str | PathLike[str] | None = None,
    data_dir: str | PathLike[str] | None = None,
    mnist_dir: str | PathLike[str] | None = None,
    wandb_mode: str | None = None,
    device: str | None = None,
    command: str | None = None,
    wandb_report: bool = False,
    wandb_project: str = "fastmlp",
    wandb_entity: str | None = None,
) -> ReportResult:
    """Run what the report needs and write it (see the module docstring).

    Args:
        budget: what to train (``BUDGETS.get("quick")``, or a Budget of your own).
        out: the report's folder.
        sweep_dir: a finished local sweep to report on instead of running the budget's.
        data_dir: where to look for Fashion-MNIST first; mnist_dir: where MNIST is (None:
            the usual search, then a download).
        wandb_mode: online / offline / disabled (None: resolved as for fastmlp train).
        device: where to train (None: auto).
        command: the command line shown as the way to reproduce the report.
        wandb_report: also create a W&B Report (when W&B is online; else one line says
            why not); wandb_project, wandb_entity: where every run and the Report go.

    Raises:
        UserError: bad input or missing data, with a one-line message.
        KeyboardInterrupt: Ctrl-C or SIGTERM, after the running run saved its checkpoint.
    """
    from fastmlp.report import wandb_report as wandb_page

    started = time.monotonic()
    out = Path(out)
    wandb_report = wandb_report and wandb_page.check_wandb_report(wandb_mode)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file; give a folder for the report")
    dataset = datasets.load("fashion_mnist", data_dir=data_dir, val_fraction=0.1)
    figures_dir = out / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        budget=budget,
        out=out,
        data_dir=None if data_dir is None else str(data_dir),
        device=device,
        wandb_mode=resolve_wandb_mode(wandb_mode),
        group=budget.sweep_name,
        command=command or f"fastmlp report --budget {budget.name} --out {shlex.quote(str(out))}",
        figures=figures_dir,
        machine=_machine(),
        wandb_project=wandb_project,
        wandb_entity=wandb_entity,
    )
    epoch_seconds = seconds_per_epoch(dataset, device)
    workers = 1 if (device or "").startswith("cuda") else min(2, os.cpu_count() or 1)
    steps = plan_steps(budget, epoch_seconds, workers, sweep_dir is not None)
    print(describe_plan(budget, steps, epoch_seconds, str(sweep_dir or "")), flush=True)

    sweep = run_sweep(ctx, None if sweep_dir is None else str(sweep_dir))
    print("[q3] the six optimizers", flush=True)
    sections = [section_q1(ctx, dataset), section_q2(ctx, sweep), section_q3(ctx, sweep)]
    sections += [section_q4(ctx, sweep, sweep_dir is not None), section_q5(ctx, sweep)]
    sections += [section_q6(ctx, sweep), section_q7(ctx, sweep, dataset)]
    print("[q8] cross-entropy against squared error", flush=True)
    sections.append(section_q8(ctx, sweep, dataset))
    sections.append(section_q9(ctx))
    print("[q10] MNIST", flush=True)
    sections.append(section_q10(ctx, sweep, None if mnist_dir is None else str(mnist_dir)))
    title = "fastmlp report: a from-scratch MLP on Fashion-MNIST"
    if wandb_report:
        ctx.numbers["wandb_report_url"] = wandb_page.create_wandb_report(
            sections, project=wandb_project, entity=wandb_entity, group=ctx.group, title=title
        )
    ctx.numbers["training_seconds"] = {
        "sweep_trials": round(sweep.seconds, 1),
        "other_runs": round(sum(run.seconds for run in ctx.finished), 1),
    }
    result = write_page(ctx, title, sections, time.monotonic() - started)
    if ctx.wandb_mode != "disabled":
        wandb_page.log_page(
            sections,
            result.numbers,
            result.index,
            mode=ctx.wandb_mode,
            project=wandb_project,
            entity=wandb_entity,
            group=ctx.group,
            directory=out,
        )
    return result


def write_page(
    ctx: Context, title: str, sections: Sequence[Section], seconds: float
) -> ReportResult:
    """index.html, report.md and report.json in the report's folder."""
    trained = ctx.numbers["training_seconds"]
    meta = [
        f"Budget {ctx.budget.name}: {ctx.budget.summary}.",
        *(f"Note: {note}." for note in ctx.budget.notes),
        f"Made {time.strftime('%Y-%m-%d %H:%M %Z')} on {ctx.machine} with fastmlp "
        f"{fastmlp.__version__}. Training: {format_duration(trained['sweep_trials'])} in the "
        f"sweep's trials (summed over its workers), {format_duration(trained['other_runs'])} "
        f"in the {len(ctx.finished)} other runs; this invocation took "
        f"{format_duration(seconds)}. `{ctx.command}` makes it again, reusing finished runs.",
    ]
    index = atomic_write_text(ctx.out / "index.html", render_html(title, meta, sections))
    markdown = atomic_write_text(
        ctx.out / "report.md", render_markdown(title, meta, sections, ctx.out)
    )
    numbers = {"budget": ctx.budget.name, "fastmlp_version": fastmlp.__version__, **ctx.numbers}
    atomic_write_json(ctx.out / "report.json", numbers)
    return ReportResult(ctx.out, index, markdown, numbers, seconds, list(sections))
