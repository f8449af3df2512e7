"""The contenders of ``fastmlp bench``: the same network trained by each library.

Reference network R: 784-128-128-128-10, ReLU, Xavier init, softmax cross-entropy, Adam
(lr 1e-3), float32. Every contender trains on the same float32 data already in its device's
memory and, inside the timing, draws a permutation and gathers each batch from it, then does
forward, backward and the optimizer step. ``epoch()`` runs one pass over the data it was
given and returns the seconds it took, synchronised on GPUs; a stack of K models
(``fastmlp-stack-K``) returns that time divided by K, so that its samples per second are
per model, comparable with one model's.
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np

import fastmlp

HIDDEN = (128, 128, 128)
LEARNING_RATE = 1e-3
# ``fastmlp-stack-K``: K models of R trained together (MLP(n_models=K)), each its own rate
STACK_PREFIX = "fastmlp-stack-"


def stack_contender(n_models: int) -> str:
    """The contender name of a stack of ``n_models`` models."""
    return f"{STACK_PREFIX}{n_models}"


def stack_label(n_models: int) -> str:
    """What a stack of ``n_models`` adds to fastmlp's row name ("" for one model)."""
    return "" if n_models == 1 else f" stack of {n_models}"


def stack_size(row: str) -> int | None:
    """K of a result row named for a stack of K models (``fastmlp stack of K (...)``), else
    None."""
    found = re.match(r"fastmlp stack of (\d+) ", row)
    return int(found.group(1)) if found else None


class Contender:
    """One library's training loop on one device at one batch size."""

    name: str

    def epoch(self) -> float:
        raise NotImplementedError


class FastMLP(Contender):
    """fastmlp's own ``train`` loop (the path ``fastmlp train`` takes); with ``n_models``
    K > 1 a stack of K, each model with its own learning rate (K rates spread by factors of
    two around LEARNING_RATE, so the optimizer runs its per-model kernel)."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        device: str,
        dtype: str = "float32",
        n_models: int = 1,
        hidden_sizes: tuple[int, ...] = HIDDEN,
    ) -> None:
        self.model = fastmlp.MLP(
            784, hidden_sizes, 10, device=device, seed=0, dtype=dtype, n_models=n_models
        )
        precision = "" if dtype == "float32" else f", {dtype}"
        where = f"{self.model.backend.name}, {device}{precision}"
        self.name = f"fastmlp{stack_label(n_models)} ({where})"
        if n_models == 1:
            self.optimizer = fastmlp.optim.Adam(lr=LEARNING_RATE)
        else:
            rates = [LEARNING_RATE * 2.0 ** (k - n_models // 2) for k in range(n_models)]
            self.optimizer = fastmlp.optim.Adam(self.model.param_groups(), lr=rates)
        self.n_models = n_models
        backend = self.model.backend
        self.x = backend.asarray(x, dtype=dtype)
        self.y = backend.asarray(y.astype(np.int64))
        self.batch_size = batch_size
        self.epochs = 0

    def epoch(self) -> float:
        self.model.backend.synchronize()
        started = time.perf_counter()
        fastmlp.train(
            self.model,
            self.optimizer,
            self.x,
            self.y,
            epochs=1,
            batch_size=self.batch_size,
            seed=0,
            progress=False,
            verbose=False,
            start_epoch=self.epochs,
        )
        self.model.backend.synchronize()
        self.epochs += 1
        return (time.perf_counter() - started) / self.n_models


class TorchEager(Contender):
    """PyTorch eager mode: nn.Sequential, CrossEntropyLoss, torch.optim.Adam."""

    def __init__(
        self, x: np.ndarray, y: np.ndarray, batch_size: int, device: str, fused: bool
    ) -> None:
        import torch

        self.torch = torch
        # subnormals as zero in PyTorch's threads too, as in every worker (bench.compare)
        torch.set_flush_denormal(True)
        self.device = torch.device("cuda" if device.startswith("cuda") else "cpu")
        self.name = f"torch eager{' fused Adam' if fused else ''} ({device})"
        torch.manual_seed(0)
        layers: list[Any] = []
        sizes = (784, *HIDDEN)
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
        layers.append(torch.nn.Linear(HIDDEN[-1], 10))
        self.model = torch.nn.Sequential(*layers).to(self.device)
        for module in self.model:
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
                torch.nn.init.zeros_(module.bias)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=LEARNING_RATE, fused=fused or None
        )
        self.loss = torch.nn.CrossEntropyLoss()
        self.x = torch.from_numpy(x).to(self.device)
        self.y = torch.from_numpy(y.astype(np.int64)).to(self.device)
        self.batch_size = batch_size

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def epoch(self) -> float:
        torch = self.torch
        self._synchronize()
        started = time.perf_counter()
        n = self.x.shape[0]
        order = torch.randperm(n, device=self.device)
        for start in range(0, n, self.batch_size):
            rows = order[start : start + self.batch_size]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(self.model(self.x[rows]), self.y[rows])
            loss.backward()
            self.optimizer.step()
        self._synchronize()
        return time.perf_counter() - started


class ScikitLearn(Contender):
    """scikit-learn's MLPClassifier, one ``partial_fit`` pass per epoch (CPU only)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> None:
        from sklearn.neural_network import MLPClassifier

        self.name = "scikit-learn MLPClassifier (cpu)"
        self.model = MLPClassifier(
            hidden_layer_sizes=HIDDEN,
            activation="relu",
            solver="adam",
            learning_rate_init=LEARNING_RATE,
            batch_size=batch_size,
            shuffle=True,
            random_state=0,
        )
        self.x, self.y = x, y
        self.classes = np.arange(10)

    def epoch(self) -> float:
        started = time.perf_counter()
        self.model.partial_fit(self.x, self.y, classes=self.classes)
        return time.perf_counter() - started


def make_contender(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    device: str,
    hidden_sizes: tuple[int, ...] = HIDDEN,
) -> Contender:
    """The contender ``name`` of :data:`CONTENDERS` (or a stack, ``fastmlp-stack-K``) on
    ``device`` training a 784-``hidden_sizes``-10 network; ImportError when its library is
    missing, ValueError when it does not run on ``device`` or trains R only."""
    from fastmlp.bench.careful_numpy import CarefulNumpy, MatmulFloor

    on_gpu = device.startswith("cuda")
    if tuple(hidden_sizes) != HIDDEN and not name.startswith("fastmlp"):
        raise ValueError(f"{name} trains R (784-128-128-128-10) only")
    if name in ("fastmlp-numpy", "careful-numpy", "floor", "sklearn") and on_gpu:
        raise ValueError(f"{name} runs on the CPU only")
    if name == "fastmlp":
        return FastMLP(x, y, batch_size, device, hidden_sizes=hidden_sizes)
    if name == "fastmlp-numpy":
        return FastMLP(x, y, batch_size, "numpy")
    if name == "fastmlp-float64":
        return FastMLP(x, y, batch_size, device, dtype="float64")
    if name.startswith(STACK_PREFIX) and name[len(STACK_PREFIX) :].isdigit():
        models = int(name[len(STACK_PREFIX) :])
        return FastMLP(x, y, batch_size, device, n_models=models, hidden_sizes=hidden_sizes)
    if name in ("torch", "torch-fused"):
        import torch

        if on_gpu and not torch.cuda.is_available():
            raise ValueError("this PyTorch has no CUDA")
        return TorchEager(x, y, batch_size, device, fused=name == "torch-fused")
    if name == "sklearn":
        return ScikitLearn(x, y, batch_size)
    if name == "careful-numpy":
        return CarefulNumpy(x, y, batch_size)
    if name == "floor":
        return MatmulFloor(x, y, batch_size)
    raise ValueError(f"unknown contender {name!r}")


# Every contender by name, and what it is; fastmlp's own come first, the floor last.
CONTENDERS = {
    "fastmlp": "fastmlp on the device asked for (the default CPU path is Numba's)",
    "fastmlp-numpy": "fastmlp's plain NumPy path, what the core install runs (CPU)",
    "fastmlp-float64": "fastmlp in float64 on the device asked for",
    "torch": "PyTorch eager, torch.optim.Adam",
    "torch-fused": "PyTorch eager, torch.optim.Adam(fused=True)",
    "sklearn": "scikit-learn MLPClassifier.partial_fit (CPU)",
    "careful-numpy": "a careful hand-written NumPy trainer (fastmlp/bench/careful_numpy.py, CPU)",
    "floor": "only the step's matrix products, into preallocated outputs (CPU)",
}
