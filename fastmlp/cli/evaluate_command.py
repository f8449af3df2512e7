"""``fastmlp evaluate``: test accuracy, per-class precision/recall/F1 and figures of a model."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from fastmlp import data as datasets
from fastmlp.backends import get_backend
from fastmlp.cli.parsing import UsageError
from fastmlp.cli.targets import resolve_checkpoint
from fastmlp.data.sources import canonical_dataset
from fastmlp.files import atomic_write_json
from fastmlp.nn.checkpoint import load_checkpoint
from fastmlp.nn.inputs import to_device_inputs
from fastmlp.runs import RunDirectory
from fastmlp.runs.experiment import figure_title, plot_test_figures
from fastmlp.runs.metrics import confusion_matrix, per_class_metrics

DESCRIPTION = (
    "Evaluate a trained model on the test set: accuracy, loss, per-class precision, recall "
    "and F1, a confusion matrix (counts + row-normalised colours) and a gallery of the most "
    "confident mistakes."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="RUN_DIR_OR_CHECKPOINT",
        help="a run directory (its best epoch, best.npz, when it has one) or a checkpoint .npz",
    )
    parser.add_argument(
        "-d", "--dataset", help="dataset (default: the one the model was trained on)"
    )
    parser.add_argument("--data_dir", metavar="DIR", help="look for the dataset files here first")
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="where to write figures and evaluation.json (default: evaluate/DATASET/ beside "
        "the checkpoint, so that a run's own figures stay as training drew them)",
    )


def format_report(class_names: list[str], metrics: dict, accuracy: float, loss: float) -> str:
    """A per-class table of precision, recall, F1 and support, with macro averages."""
    width = max(len(name) for name in [*class_names, "macro average"])
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for index, name in enumerate(class_names):
        lines.append(
            f"{name:<{width}}  {metrics['precision'][index]:9.4f}  {metrics['recall'][index]:6.4f}"
            f"  {metrics['f1'][index]:6.4f}  {metrics['support'][index]:7d}"
        )
    lines.append(
        f"{'macro average':<{width}}  {metrics['macro_precision']:9.4f}  "
        f"{metrics['macro_recall']:6.4f}"
        f"  {metrics['macro_f1']:6.4f}  {int(metrics['support'].sum()):7d}"
    )
    lines.append(f"\ntest accuracy {accuracy:.4f}   test loss {loss:.4f}")
    return "\n".join(lines)


def _check_fits(model: Any, dataset: Any, checkpoint_path: Path) -> None:
    """Raise unless the model can classify this dataset's images."""
    features = int(np.prod(dataset.x_test.shape[1:]))
    if model.input_size != features or model.output_size != dataset.num_classes:
        raise UsageError(
            f"{checkpoint_path} is a model of {model.input_size} inputs and "
            f"{model.output_size} classes; {dataset.name} has {features} pixels and "
            f"{dataset.num_classes} classes: evaluate it on the dataset it was trained for"
        )


def _model_name(checkpoint_path: Path, epoch: int | None) -> str:
    """What the figures call the model: its run's name (the checkpoint's folder, when that is
    a run directory) or the checkpoint's file name, with the epoch when it is known."""
    folder = checkpoint_path.parent
    name = folder.name if (folder / RunDirectory.CONFIG).is_file() else checkpoint_path.name
    return name if epoch is None else f"{name} (epoch {epoch})"


def run(args: argparse.Namespace) -> int:
    checkpoint_path = resolve_checkpoint(args.target)
    checkpoint = load_checkpoint(checkpoint_path, device=get_backend(args.device))
    model = checkpoint.model
    if checkpoint_path.name == RunDirectory.BEST and Path(args.target).is_dir():
        print(
            f"evaluating the best epoch, {checkpoint.epoch} (by "
            f"{checkpoint.extra.get('monitor', 'validation')}), from {checkpoint_path}; give "
            f"{checkpoint_path.with_name(RunDirectory.CHECKPOINT)} for the last epoch"
        )
    trained_on = checkpoint.extra.get("dataset")
    dataset_name = canonical_dataset(args.dataset or trained_on or "fashion_mnist")
    if isinstance(trained_on, str) and trained_on != dataset_name:
        print(
            f"fastmlp evaluate: warning: {checkpoint_path} was trained on {trained_on}; "
            f"evaluating it on {dataset_name} as asked",
            file=sys.stderr,
        )
    # Not the checkpoint's own folder: a run directory holds the figures training drew.
    out = Path(args.out) if args.out else checkpoint_path.parent / "evaluate" / dataset_name
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; give --out a folder for the figures and report")
    dataset = datasets.load(dataset_name, data_dir=args.data_dir)
    _check_fits(model, dataset, checkpoint_path)
    x_test = to_device_inputs(model.backend, dataset.x_test, model.dtype)
    loss, accuracy = model.evaluate(x_test, dataset.y_test)
    probabilities = model.backend.to_numpy(model.forward(x_test))
    finite = bool(np.isfinite(probabilities).all())
    if not finite:
        bad = int((~np.isfinite(model.backend.to_numpy(model.params))).sum())
        print(
            f"fastmlp evaluate: warning: {bad} of {model.num_params} parameters of "
            f"{checkpoint_path} are not finite (a diverged run?): its predictions are "
            "meaningless; no figures drawn",
            file=sys.stderr,
        )
    predictions = probabilities.argmax(axis=1)
    classes = list(dataset.class_names)
    confusion = confusion_matrix(dataset.y_test, predictions, len(classes))
    metrics = per_class_metrics(confusion)
    print(format_report(classes, metrics, accuracy, loss))

    title = figure_title(_model_name(checkpoint_path, checkpoint.epoch), dataset)
    written = list(plot_test_figures(dataset, probabilities, out, title).values()) if finite else []
    report = {
        "checkpoint": str(checkpoint_path),
        "dataset": dataset.name,
        "test_accuracy": accuracy,
        "test_loss": loss if math.isfinite(loss) else None,
        "classes": {
            name: {
                "precision": float(metrics["precision"][index]),
                "recall": float(metrics["recall"][index]),
                "f1": float(metrics["f1"][index]),
                "support": int(metrics["support"][index]),
            }
            for index, name in enumerate(classes)
        },
        "macro_f1": metrics["macro_f1"],
        "confusion_matrix": confusion.tolist(),
    }
    atomic_write_json(out / "evaluation.json", report)
    print("saved " + ", ".join(str(path) for path in [*written, out / "evaluation.json"]))
    return 0
