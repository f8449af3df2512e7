"""The search that chose ``fashion_mnist_best.yaml``: candidates ranked by validation accuracy.

Every candidate trains on the same 54,000 training images and is scored by its best
validation accuracy on the 6,000 held out (``val_fraction`` 0.1, the fixed split); the test
set is never looked at while choosing. ``--confirm FILE`` then trains the chosen recipe with
several seeds and reports test accuracy and wall time (the numbers in the README).

    python recipes/search.py --out search-runs              # the candidates below
    python recipes/search.py --confirm recipes/fashion_mnist_best.yaml --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

# What every candidate shares: a schedule that ends near zero, the best epoch kept.
COMMON: dict[str, Any] = {
    "optimizer": "adam",
    "lr_schedule": "cosine",
    "restore_best": True,
    "batch_size": 128,
    "epochs": 30,
    "wandb_project": "fastmlp-recipe-search",
}

CANDIDATES: dict[str, dict[str, Any]] = {
    "2x512-d0.2": {"num_layers": 2, "hidden_size": [512], "dropout": 0.2},
    "2x512-d0.3-lr2e-3": {"num_layers": 2, "hidden_size": [512], "dropout": 0.3,
                          "learning_rate": 2e-3},
    "1024-512-d0.3": {"num_layers": 2, "hidden_size": [1024, 512], "dropout": 0.3},
    "3x512-d0.3": {"num_layers": 3, "hidden_size": [512], "dropout": 0.3},
    "2x512-d0.2-ls0.1": {"num_layers": 2, "hidden_size": [512], "dropout": 0.2,
                         "label_smoothing": 0.1},
    "2x512-d0.2-e40": {"num_layers": 2, "hidden_size": [512], "dropout": 0.2, "epochs": 40},
    "2x512-d0.2-adamw": {"num_layers": 2, "hidden_size": [512], "dropout": 0.2,
                         "optimizer": "adamw", "weight_decay": 0.05},
}  # fmt: skip


def run(settings: dict[str, Any], out: Path) -> dict[str, Any]:
    """Train one configuration; its summary and wall time (data loading included)."""
    from fastmlp.runs.experiment import run_experiment

    started = time.perf_counter()
    result = run_experiment(settings, out=out, wandb_mode="disabled", progress=False,
                            verbose=False, figures=False)  # fmt: skip
    return {**result.summary, "wall_seconds": time.perf_counter() - started}


def search(names: list[str], out: Path, results_path: Path) -> None:
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in names:
        if name in results:
            continue
        summary = run({**COMMON, **CANDIDATES[name], "name": name}, out)
        results[name] = {
            "settings": {**COMMON, **CANDIDATES[name]},
            "best_epoch": summary.get("best_epoch"),
            "best_epoch_val_accuracy": summary.get("best_epoch_val_accuracy"),
            "wall_seconds": round(summary["wall_seconds"], 1),
        }
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        print(
            name,
            results[name]["best_epoch_val_accuracy"],
            results[name]["wall_seconds"],
            flush=True,
        )
    ranked = sorted(results.items(), key=lambda item: -item[1]["best_epoch_val_accuracy"])
    for name, row in ranked:
        print(f"{name:24} val {row['best_epoch_val_accuracy']:.4f}  epoch {row['best_epoch']:>2}"
              f"  {row['wall_seconds']:.0f} s")  # fmt: skip


def confirm(recipe: Path, seeds: list[int], out: Path, results_path: Path) -> None:
    from fastmlp.runs.config import read_config_file

    settings = read_config_file(recipe)
    rows = []
    for seed in seeds:
        summary = run({**settings, "seed": seed, "name": f"{recipe.stem}-seed{seed}"}, out)
        rows.append({"seed": seed, "test_accuracy": summary["test_accuracy"],
                     "best_epoch_val_accuracy": summary.get("best_epoch_val_accuracy"),
                     "best_epoch": summary.get("best_epoch"),
                     "wall_seconds": round(summary["wall_seconds"], 1)})  # fmt: skip
        print(rows[-1], flush=True)
    accuracies = [row["test_accuracy"] for row in rows]
    report = {
        "recipe": str(recipe),
        "runs": rows,
        "test_accuracy_mean": statistics.mean(accuracies),
        "test_accuracy_min": min(accuracies),
        "test_accuracy_max": max(accuracies),
        "wall_seconds_max": max(row["wall_seconds"] for row in rows),
    }
    results_path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("search-runs"))
    parser.add_argument("--only", nargs="+", choices=sorted(CANDIDATES))
    parser.add_argument("--results", type=Path, default=Path("search-results.json"))
    parser.add_argument("--confirm", type=Path, metavar="RECIPE")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    if args.confirm:
        confirm(args.confirm, args.seeds, args.out, args.results)
    else:
        search(args.only or list(CANDIDATES), args.out, args.results)


if __name__ == "__main__":
    main()
