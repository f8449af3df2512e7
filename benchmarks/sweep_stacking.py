"""Trials per minute of a sweep with and without ``--stack``, each sweep in its own process.

    python benchmarks/sweep_stacking.py --count 12 --stack 6 --rounds 2 --epochs 1 [--grid]

Runs the classic search space (``sweeps/classic.yaml``, with ``epochs`` fixed to
``--epochs`` and no Hyperband, which could not prune such short trials) on Fashion-MNIST;
with ``--grid``, a grid over its per-model settings (learning rate x weight decay) and
optimizer (adam, nadam) for one of its networks (3 x 64 ReLU, Xavier, batch 32), where a
stacked sweep trains exactly the trials of the unstacked one;
alternating the unstacked and the stacked sweep round by round (each a fresh sweep of
``--count`` trials, in a subprocess of its own), and prints one JSON line per sweep plus the
medians: seconds, trials per minute, the best validation accuracy, and how many trials
trained in stacks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def space(epochs: int, grid: bool) -> dict:
    config = yaml.safe_load((REPO / "sweeps" / "classic.yaml").read_text())
    config.pop("early_terminate", None)
    config.pop("run_cap", None)
    parameters = config["parameters"]
    parameters["epochs"] = {"value": epochs}
    if grid:
        config["method"] = "grid"
        fixed = {"num_layers": 3, "hidden_size": 64, "batch_size": 32, "weight_init": "Xavier",
                 "activation": "ReLU"}  # fmt: skip
        parameters.update({name: {"value": value} for name, value in fixed.items()})
        parameters["optimizer"] = {"values": ["adam", "nadam"]}
    return config


def one_sweep(config: Path, out: Path, name: str, count: int, stack: int, data_dir: str | None):
    command = [sys.executable, "-m", "fastmlp", "sweep", str(config), "--name", name,
               "--out", str(out), "--count", str(count), "--stack", str(stack),
               "--wandb_mode", "disabled"]  # fmt: skip
    if data_dir:
        command += ["--data_dir", data_dir]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=REPO)
    seconds = time.perf_counter() - started
    import optuna

    study = optuna.load_study(
        study_name=name,
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(out / name / "study.journal"))
        ),
    )
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    stacked = sum(1 for t in complete if t.user_attrs.get("stack_size"))
    return {
        "stack": stack,
        "seconds": round(seconds, 1),
        "trials": len(complete),
        "trials_per_minute": round(60 * len(complete) / seconds, 2),
        # repeats are recorded without training: the trials trained per minute leave them out
        "trained_per_minute": round(
            60 * sum(1 for t in complete if "repeat_of" not in t.user_attrs) / seconds, 2
        ),
        "best_val_accuracy": max((t.value for t in complete), default=None),
        "trials_in_stacks": stacked,
        "repeats": sum(1 for t in complete if "repeat_of" in t.user_attrs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--stack", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--data_dir")
    parser.add_argument("--grid", action="store_true")
    args = parser.parse_args()
    results: dict[int, list[dict]] = {1: [], args.stack: []}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        config = out / "classic-short.yaml"
        config.write_text(yaml.safe_dump(space(args.epochs, args.grid)))
        for round_index in range(args.rounds):
            for stack in (1, args.stack):
                row = one_sweep(config, out, f"s{stack}r{round_index}", args.count, stack,
                                args.data_dir)  # fmt: skip
                results[stack].append(row)
                print(json.dumps(row), flush=True)
    medians = {
        key: {stack: statistics.median(row[key] for row in rows)
              for stack, rows in results.items()}
        for key in ("trials_per_minute", "trained_per_minute")
    }  # fmt: skip
    ratios = {key: round(values[args.stack] / values[1], 2) for key, values in medians.items()}
    print(json.dumps({"medians": medians, "ratios": ratios}))


if __name__ == "__main__":
    main()
