"""The sections of the report that need no training of their own: Q1-Q7 and Q9
(Q3 trains the six optimizers), each a :class:`~fastmlp.report.page.Section`."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

import fastmlp
from fastmlp import optim
from fastmlp.files import atomic_write_text
from fastmlp.nn.losses import LOSSES
from fastmlp.report import observations
from fastmlp.report.budgets import COMPARED_OPTIMIZERS
from fastmlp.report.context import (
    Context,
    ReportError,
    copy_figure,
    describe_network,
    percent,
    run_spec,
)
from fastmlp.report.figures import Line, Panel, plot_curves
from fastmlp.report.page import Bullets, Code, Figure, Paragraph, Section, Table
from fastmlp.report.plan import format_duration
from fastmlp.report.runner import read_finished
from fastmlp.report.sweep_results import SweepResult


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
        Paragraph(f"The sweep's best network: {describe_network(best)}."),
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
        spec = run_spec(f"q3-{name}", settings, ctx)
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
                percent(run.best_val_accuracy),
                percent(run.test_accuracy),
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
            f"The six optimizers trained the sweep's best network ({describe_network(base)}) for "
            f"{ctx.budget.compare_epochs} epochs from the same initial weights and shuffling "
            "(seed 0), each at the learning rate of the sweep's best trial that used it:"
        ),
        Figure(path, "Validation accuracy and training loss of the six optimizers"),
        table,
        ctx.provenance("six runs, one per optimizer", seconds, "0"),
    )
    return section


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
            f"Best validation accuracy: {percent(best.value)}, trial {best.number} "
            f"({describe_network(sweep.best_config(best))}, {best.values.get('optimizer')}, "
            f"learning rate {best.values.get('learning_rate')}, {best.values.get('epochs')} "
            "epochs)."
        )
    )
    if "accuracy_vs_time" in sweep.files:
        path = copy_figure(sweep.files["accuracy_vs_time"], ctx, "q5_accuracy_vs_time.png")
        section.add(Figure(path, "Validation accuracy of every trial as the sweep went on"))
    section.add(
        Table(
            ("trial", "val accuracy", "optimizer", "activation", "layers", "size", "lr"),
            tuple(
                (
                    row.number,
                    percent(row.value),
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
            section.add(Figure(copy_figure(sweep.files[key], ctx, name), caption))
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


def class_probabilities(
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
    probabilities = class_probabilities(run_dir, finished.summary, dataset.x_test, ctx.device)
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
            f"{percent(best.value)}): {percent(accuracy)} on {int(confusion.sum()):,} test "
            f"images. The hardest class is {names[worst]} (recall "
            f"{percent(float(metrics['recall'][worst]))}); the most frequent confusion is "
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
