"""Training speed of two (or more) fastmlp source trees, each in its own process, interleaved.

Measures what a change to a hot path did: every tree trains the reference network R
(784-128-128-128-10, ReLU, Xavier, softmax cross-entropy, Adam lr 1e-3, float32) on the same
Fashion-MNIST images, in a fresh process per measurement, alternating the trees' order from
round to round. Each process first trains one untimed epoch (Numba compilation, buffers), then
times ``--epochs`` epochs and reports the best rate (interference from other processes on a
shared machine only ever slows an epoch down). The report gives, per device and batch
size, each tree's median samples/s and the median over rounds of the per-round ratio against
the first tree (both sides of a ratio measured seconds apart), with its range.

    git worktree add /tmp/before <commit>
    python benchmarks/compare_versions.py before=/tmp/before after=. \\
        --devices cpu numpy --batch_sizes 32 64 256 1024 --rounds 7 \\
        --out benchmarks/results/layers-before-after

Only the API both trees share is used: ``fastmlp.MLP``, ``fastmlp.optim.create``,
``fastmlp.train`` and ``fastmlp.data.load``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def worker(device: str, batch_size: int, samples: int, epochs: int) -> dict:
    """Runs inside the measured tree's process: one warm-up epoch, then ``epochs`` timed."""
    import fastmlp

    data = fastmlp.data.load("fashion_mnist", val_fraction=0.0, download=False)
    x, y = data.x_train[:samples], data.y_train[:samples]
    model = fastmlp.MLP(hidden_sizes=(128, 128, 128), device=device, seed=0)
    optimizer = fastmlp.optim.create("adam", lr=1e-3)
    rates = []
    for epoch in range(epochs + 1):
        started = time.perf_counter()
        fastmlp.train(
            model, optimizer, x, y, epochs=1, batch_size=batch_size, seed=0,
            progress=False, verbose=False, start_epoch=epoch,
        )  # fmt: skip
        model.backend.synchronize()
        if epoch > 0:  # epoch 0 warms up: compilation, buffers, caches
            rates.append(samples / (time.perf_counter() - started))
    return {
        "samples_per_second": max(rates),
        "backend": model.backend.name,
        "fastmlp": str(Path(fastmlp.__file__).parent),
    }


def measure(tree: Path, device: str, batch_size: int, samples: int, epochs: int) -> dict:
    """One measurement in a fresh process that imports fastmlp from ``tree``."""
    environment = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", "--devices", device,
        "--batch_sizes", str(batch_size), "--samples", str(samples), "--epochs", str(epochs),
    ]  # fmt: skip
    # run from an empty folder, so that only PYTHONPATH decides which fastmlp is imported
    finished = subprocess.run(
        command, env=environment, cwd="/", capture_output=True, text=True, check=False
    )
    if finished.returncode != 0:
        raise RuntimeError(f"{tree} {device} batch {batch_size}:\n{finished.stderr}")
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    if not Path(result["fastmlp"]).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"imported {result['fastmlp']}, not the tree {tree}")
    return result


def report(results: dict, names: list[str]) -> str:
    """A markdown table: median samples/s per tree, median per-round ratio to the first."""
    baseline = names[0]
    header = ["device", "batch", *(f"{name} samples/s" for name in names)]
    header += [f"{name} / {baseline} (range)" for name in names[1:]]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for key, rounds in results.items():
        device, batch = key.split("/")
        row = [device, batch]
        for name in names:
            row.append(f"{statistics.median(r[name] for r in rounds):,.0f}")
        for name in names[1:]:
            ratios = [r[name] / r[baseline] for r in rounds]
            row.append(f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="*", metavar="NAME=PATH", help="source trees; first: base")
    parser.add_argument("--devices", nargs="+", default=["cpu", "numpy"])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[32, 64, 256, 1024])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--samples", type=int, default=16384)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per process")
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(args.devices[0], args.batch_sizes[0], args.samples, args.epochs)
        print(json.dumps(result))
        return 0
    trees = dict(spec.split("=", 1) for spec in args.trees)
    names = list(trees)
    if len(names) < 2:
        parser.error("give at least two trees, NAME=PATH")
    results: dict[str, list[dict[str, float]]] = {}
    for round_index in range(args.rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for device in args.devices:
            for batch in args.batch_sizes:
                measured = {}
                for name in order:
                    result = measure(Path(trees[name]), device, batch, args.samples, args.epochs)
                    measured[name] = result["samples_per_second"]
                results.setdefault(f"{device}/{batch}", []).append(measured)
                line = "  ".join(f"{name} {measured[name]:,.0f}" for name in names)
                print(f"round {round_index + 1} {device} batch {batch}: {line}", flush=True)
    table = report(results, names)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"trees": trees, "rounds": args.rounds, "samples": args.samples,
                  "epochs": args.epochs, "results": results}  # fmt: skip
        args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
