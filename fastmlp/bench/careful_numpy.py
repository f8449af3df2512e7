"""Two reference contenders of ``fastmlp bench``, written in plain NumPy for the comparison.

* :class:`CarefulNumpy` trains the reference network R as well as a hand-written NumPy
  loop can: preallocated buffers, in-place ufuncs with ``out=``, BLAS products into
  preallocated outputs, the bias and ReLU in place, the first layer's input gradient never
  computed, Adam updated in place over one flat buffer. It is what fastmlp's plain NumPy
  path (``device="numpy"``) must match.
* :class:`MatmulFloor` runs only the matrix products of each training step (forward
  ``z = a W``, weight gradient ``a^T delta``, input gradient ``delta W^T`` but the first)
  on the same shapes with preallocated outputs, on consecutive batches (no shuffle, no
  gather): a step cannot be faster than its products, so it is the floor every contender
  is measured against.

Both take the inputs (N, 784) float32 in [0, 1] and labels (N,) int64; CarefulNumpy draws
a permutation and gathers each batch inside the timing, as every contender does.
"""

from __future__ import annotations

import time

import numpy as np

SIZES = (784, 128, 128, 128, 10)


class CarefulNumpy:
    """R trained by a careful hand-written NumPy loop (Adam, lr 1e-3, float32)."""

    name = "careful NumPy"

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, lr: float = 1e-3) -> None:
        self.x, self.y, self.batch = x, y, batch_size
        rng = np.random.default_rng(0)
        shapes = [(a, b) for a, b in zip(SIZES[:-1], SIZES[1:])]
        total = sum(a * b + b for a, b in shapes)
        self.params = np.empty(total, dtype=np.float32)
        self.grads = np.zeros(total, dtype=np.float32)
        self.m = np.zeros(total, dtype=np.float32)
        self.v = np.zeros(total, dtype=np.float32)
        self.scratch = np.empty(total, dtype=np.float32)
        self.weights, self.biases, self.dweights, self.dbiases = [], [], [], []
        offset = 0
        for fan_in, fan_out in shapes:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            w = self.params[offset : offset + fan_in * fan_out].reshape(fan_in, fan_out)
            w[...] = rng.uniform(-limit, limit, size=(fan_in, fan_out))
            self.weights.append(w)
            self.dweights.append(self.grads[offset : offset + fan_in * fan_out].reshape(w.shape))
            offset += fan_in * fan_out
            b = self.params[offset : offset + fan_out]
            b[...] = 0
            self.biases.append(b)
            self.dbiases.append(self.grads[offset : offset + fan_out])
            offset += fan_out
        self.lr, self.beta1, self.beta2, self.eps, self.t = lr, 0.9, 0.999, 1e-8, 0
        self.buffers: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}

    def _buffers(self, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Activations a_0..a_L and deltas per layer for a batch of n, made once."""
        if n not in self.buffers:
            activations = [np.empty((n, size), dtype=np.float32) for size in SIZES]
            deltas = [np.empty((n, size), dtype=np.float32) for size in SIZES[1:]]
            self.buffers[n] = (activations, deltas)
        return self.buffers[n]

    def step(self, rows: np.ndarray) -> None:
        n = rows.shape[0]
        a, delta = self._buffers(n)
        np.take(self.x, rows, axis=0, out=a[0])
        labels = self.y[rows]
        layers = len(self.weights)
        for i in range(layers):
            np.matmul(a[i], self.weights[i], out=a[i + 1])
            a[i + 1] += self.biases[i]
            if i < layers - 1:
                np.maximum(a[i + 1], 0, out=a[i + 1])
        # softmax cross-entropy gradient (p - onehot) / n in place in the logits
        z = a[layers]
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        z[np.arange(n), labels] -= 1
        z *= 1.0 / n
        d = z
        for i in range(layers - 1, -1, -1):
            np.matmul(a[i].T, d, out=self.dweights[i])
            np.sum(d, axis=0, out=self.dbiases[i])
            if i > 0:
                previous = delta[i - 1]
                np.matmul(d, self.weights[i].T, out=previous)
                # ReLU gradient: zero where the activation was not positive
                previous *= a[i] > 0
                d = previous
        self._adam()

    def _adam(self) -> None:
        self.t += 1
        g, m, v, s = self.grads, self.m, self.v, self.scratch
        # m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
        m *= self.beta1
        np.multiply(g, 1 - self.beta1, out=s)
        m += s
        v *= self.beta2
        np.multiply(g, g, out=s)
        s *= 1 - self.beta2
        v += s
        # p -= lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)
        np.sqrt(v, out=s)
        s *= 1 / np.sqrt(1 - self.beta2**self.t)
        s += self.eps
        np.divide(m, s, out=s)
        s *= self.lr / (1 - self.beta1**self.t)
        self.params -= s

    def epoch(self) -> float:
        started = time.perf_counter()
        order = np.random.default_rng(self.t).permutation(len(self.x))
        for start in range(0, len(order), self.batch):
            self.step(order[start : start + self.batch])
        return time.perf_counter() - started


class MatmulFloor:
    """Only the matrix products of R's training steps, into preallocated outputs."""

    name = "matmul floor"

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> None:
        rng = np.random.default_rng(0)
        self.x, self.batch = x, batch_size
        self.weights = [
            rng.standard_normal((a, b), dtype=np.float32) * 0.05
            for a, b in zip(SIZES[:-1], SIZES[1:])
        ]
        self.dweights = [np.empty_like(w) for w in self.weights]
        self.buffers: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}

    def _buffers(self, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if n not in self.buffers:
            activations = [np.empty((n, size), dtype=np.float32) for size in SIZES[1:]]
            deltas = [np.full((n, size), 0.01, dtype=np.float32) for size in SIZES[1:]]
            self.buffers[n] = (activations, deltas)
        return self.buffers[n]

    def epoch(self) -> float:
        started = time.perf_counter()
        layers = len(self.weights)
        for start in range(0, len(self.x), self.batch):
            batch = self.x[start : start + self.batch]  # a view: no gather, no copy
            outputs, delta = self._buffers(batch.shape[0])
            a = [batch, *outputs]
            for i in range(layers):
                np.matmul(a[i], self.weights[i], out=a[i + 1])
            for i in range(layers - 1, -1, -1):
                np.matmul(a[i].T, delta[i], out=self.dweights[i])
                if i > 0:
                    np.matmul(delta[i], self.weights[i].T, out=delta[i - 1])
        return time.perf_counter() - started
