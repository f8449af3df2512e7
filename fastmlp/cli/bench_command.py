"""``fastmlp bench``: training speed side by side with PyTorch and scikit-learn."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fastmlp.bench.compare import COMPETITORS
from fastmlp.bench.competitors import CONTENDERS
from fastmlp.cli.parsing import UsageError, positive_int

DESCRIPTION = (
    "Train the reference network (784-128-128-128-10, ReLU, Adam) with fastmlp, PyTorch "
    "eager (default and fused Adam), scikit-learn, a careful hand-written NumPy trainer and "
    "fastmlp's other paths on the same Fashion-MNIST data, each in its own process, "
    "interleaved, and report samples/s, median per-round ratios and each rate's share of "
    'the matrix-product floor. scikit-learn: pip install "fastmlp[bench]"; PyTorch (CPU '
    "build): pip install torch --index-url https://download.pytorch.org/whl/cpu. A "
    "competitor that is not installed is left out, saying so."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    parser.add_argument(
        "--batch_sizes",
        type=positive_int,
        nargs="+",
        metavar="B",
        help="batch sizes (default: 32 64 256 1024 on cpu, 64 1024 4096 on cuda)",
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=5, help="interleaved rounds (default: 5)"
    )
    parser.add_argument(
        "--samples", type=positive_int, default=16384, help="samples per epoch (default: 16384)"
    )
    parser.add_argument(
        "--competitors",
        nargs="+",
        choices=[name for name in CONTENDERS if name != "fastmlp"],
        default=list(COMPETITORS),
        metavar="NAME",
        help="whom to compare with: "
        + "; ".join(f"{name}: {what}" for name, what in CONTENDERS.items() if name != "fastmlp")
        + f" (default: {' '.join(COMPETITORS)})",
    )
    parser.add_argument(
        "--stack",
        type=positive_int,
        nargs="+",
        metavar="K",
        help="instead of --competitors: stacks of K models trained together (MLP(n_models=K), "
        "each its own learning rate) against one model, in samples per second per model",
    )
    parser.add_argument(
        "--hidden_sizes",
        type=positive_int,
        nargs="+",
        metavar="H",
        help="with --stack: the hidden layers of the network (default: R's 128 128 128)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead: where a fastmlp training step spends its time at each batch size "
        "(matrix products, elementwise kernels, reductions, loss, optimizer, gather, Python)",
    )
    parser.add_argument("--data_dir", metavar="DIR", help="look for Fashion-MNIST here first")
    parser.add_argument(
        "--out", default="bench-results", metavar="DIR", help="where to write JSON and markdown"
    )
    parser.add_argument(
        "--time_to_accuracy",
        type=accuracy,
        metavar="ACC",
        help="instead: seconds from start to this test accuracy (e.g. 0.88) with the default "
        "fastmlp train settings",
    )


def accuracy(value: str) -> float:
    """An argparse ``type``: an accuracy to reach, in (0, 1]."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value!r}") from None
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"must be an accuracy in (0, 1], got {value}")
    return number


def run(args: argparse.Namespace) -> int:
    from fastmlp.backends import get_backend
    from fastmlp.bench import compare, markdown_table, write_report
    from fastmlp.bench.competitors import HIDDEN

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is not a folder; give a folder for the results")
    device = get_backend(args.device).device
    if args.time_to_accuracy is not None:
        return _time_to_accuracy(args.time_to_accuracy, device, args.data_dir)
    batch_sizes = args.batch_sizes or (
        [64, 1024, 4096] if device.startswith("cuda") else [32, 64, 256, 1024]
    )
    if args.profile:
        from fastmlp.bench.profile import profile, profile_table

        profiles = profile(batch_sizes, device=device, samples=args.samples, data_dir=args.data_dir)
        print(profile_table(profiles))
        return 0
    if args.hidden_sizes and not args.stack:
        raise UsageError("--hidden_sizes goes with --stack (the competitors train R only)")
    competitors = args.competitors
    if args.stack:
        from fastmlp.bench.competitors import stack_contender

        competitors = [stack_contender(k) for k in dict.fromkeys(args.stack) if k > 1]
    results, source = compare(
        batch_sizes,
        device=device,
        rounds=args.rounds,
        samples=args.samples,
        competitors=competitors,
        data_dir=args.data_dir,
        hidden_sizes=tuple(args.hidden_sizes or HIDDEN),
    )
    left_out = {name: why for result in results for name, why in result.unavailable.items()}
    for name, why in left_out.items():
        print(f"left out {name}: {why}")
    print(markdown_table(results))
    json_path, markdown_path = write_report(
        results, source, device, args.out, tuple(args.hidden_sizes or HIDDEN)
    )
    print(f"saved {json_path} and {markdown_path}")
    if args.stack:
        _stack_figure(results, json_path)
    return 0


def _stack_figure(results: list[Any], json_path: Path) -> None:
    """The per-model throughput of each stack against K, as a PNG beside the JSON (said
    and skipped without matplotlib)."""
    from fastmlp.bench.stack_curve import plot_stack_curve
    from fastmlp.errors import MissingDependencyError

    report = json.loads(json_path.read_text())
    machine = report["machine"]
    title = (
        f"{report['network']}, float32, stacks against one model\n{report['device']}: "
        f"{machine['cpu']} ({machine['cores']} cores), {machine['date'][:10]}"
    )
    try:
        figure = plot_stack_curve(results, json_path.with_suffix(".png"), title)
    except MissingDependencyError as error:
        print(f"no figure: {error}")
        return
    print(f"saved {figure}")


def _time_to_accuracy(target: float, device: str, data_dir: str | None) -> int:
    from fastmlp.bench.time_to_accuracy import time_to_accuracy

    result = time_to_accuracy(target, device=device, data_dir=data_dir)
    if not result.reached:
        print(
            f"{target:.0%} test accuracy not reached in {result.epochs} epochs "
            f"(best {result.test_accuracy:.4f}) on {result.device}"
        )
        return 1
    print(
        f"{target:.0%} test accuracy ({result.test_accuracy:.4f}) after {result.epochs} epochs: "
        f"{result.seconds:.1f} s from start on {result.device} "
        f"(data loading {result.load_seconds:.1f} s of it)"
    )
    return 0
