"""The contenders of ``fastmlp bench``: the same network trained by each library.

Reference network R: 784-128-128-128-10, ReLU, Xavier init, softmax cross-entropy, Adam
(lr 1e-3), float32. Every contender trains on the same float32 data already in its device's
memory and, inside the timing, draws a permutation and gathers each batch from it, then does
forward, backward and the optimizer step. ``epoch()`` runs one pass over the data it was
given and returns the seconds it took, synchronised on GPUs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import fastmlp

HIDDEN = (128, 128, 128)
LEARNING_RATE = 1e-3


class Contender:
    """One library's training loop on one device at one batch size."""

    name: str

    def epoch(self) -> float:
        raise NotImplementedError


class FastMLP(Contender):
    """fastmlp's own ``train`` loop (the path ``fastmlp train`` takes)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, device: str) -> None:
        self.model = fastmlp.MLP(784, HIDDEN, 10, device=device, seed=0)
        self.name = f"fastmlp ({self.model.backend.name}, {device})"
        self.optimizer = fastmlp.optim.Adam(lr=LEARNING_RATE)
        backend = self.model.backend
        self.x = backend.asarray(x)
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
        return time.perf_counter() - started


class TorchEager(Contender):
    """PyTorch eager mode: nn.Sequential, CrossEntropyLoss, torch.optim.Adam."""

    def __init__(
        self, x: np.ndarray, y: np.ndarray, batch_size: int, device: str, fused: bool
    ) -> None:
        import torch

        self.torch = torch
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


def available_contenders(
    x: np.ndarray, y: np.ndarray, batch_size: int, device: str, include: tuple[str, ...]
) -> list[Contender]:
    """fastmlp first, then every competitor in ``include`` that is installed and fits ``device``."""
    contenders: list[Contender] = [FastMLP(x, y, batch_size, device)]
    on_gpu = device.startswith("cuda")
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and (not on_gpu or torch.cuda.is_available()):
        if "torch" in include:
            contenders.append(TorchEager(x, y, batch_size, device, fused=False))
        if "torch-fused" in include:
            contenders.append(TorchEager(x, y, batch_size, device, fused=True))
    if "sklearn" in include and not on_gpu:
        try:
            contenders.append(ScikitLearn(x, y, batch_size))
        except ImportError:
            pass
    return contenders
