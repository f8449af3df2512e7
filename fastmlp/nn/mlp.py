"""The multilayer perceptron: explicit forward and backward passes over one flat buffer.

Notation for a network with L layers (L - 1 hidden layers and the output layer):
a_0 = X (N, input_size); for layer i = 1..L: z_i = a_{i-1} W_i + b_i with W_i of shape
(fan_in, fan_out); a_i = f(z_i) for hidden layers, and p = softmax(z_L) for the output.

Backward, with delta_L = dLoss/dz_L from the fused loss kernel:
    dW_i = a_{i-1}^T delta_i (+ weight_decay * W_i),   db_i = sum_n delta_i
    delta_{i-1} = (delta_i W_i^T) * f'(z_{i-1})
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from fastmlp.backends import Backend, get_backend
from fastmlp.errors import shown
from fastmlp.nn.activations import canonical_activation
from fastmlp.nn.init import canonical_weight_init, init_weight
from fastmlp.nn.inputs import as_labels, check_label_range, to_device_inputs
from fastmlp.nn.losses import canonical_loss
from fastmlp.nn.memory import check_memory, describe_sizes, model_bytes, parameter_count

DTYPES = ("float32", "float64")

# Batch sizes whose activation buffers are kept (training batch, last partial batch,
# evaluation chunks); older ones are dropped.
_CACHED_BATCH_SIZES = 4

EVAL_CHUNK = 8192


@dataclass
class _BatchBuffers:
    """Per-batch-size work arrays, reused by every step with that batch size.

    outputs[i]: (N, layer_sizes[i + 1]) -- a_{i+1} for hidden layers, logits (then
    dLoss/dlogits) for the last one. deltas[i]: (N, layer_sizes[i + 1]) for hidden layers.
    """

    outputs: list[Any]
    deltas: list[Any]


def _is_positive_integer(value: Any) -> bool:
    """Whether ``value`` is a whole number >= 1 (an int, NumPy integer or integral float)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    try:
        return int(value) == value and value >= 1
    except (TypeError, ValueError, OverflowError):
        return False


def canonical_dtype(dtype: Any) -> str:
    """``"float32"`` or ``"float64"`` from any NumPy-style dtype spelling."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}: use float32 or float64")
    return name


class MLP:
    """A fully connected classifier trained by explicit backpropagation.

    Args:
        input_size: features per sample (784 for 28x28 images).
        hidden_sizes: units of each hidden layer, e.g. ``(128, 128, 128)``; may differ per
            layer or be empty (softmax regression).
        output_size: number of classes.
        activation: hidden activation: identity, sigmoid, tanh or relu (any case).
        weight_init: random, xavier or he (any case); see ``fastmlp.nn.init``.
        loss: cross_entropy or mean_squared_error (alias mse), both on the softmax output.
        weight_decay: L2 strength on weights (not biases): the gradient gets
            ``+ weight_decay * W``; reported losses are the data loss alone.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a Backend.
        dtype: float32 (default) or float64.
        seed: seed of the weight initialisation (None: fresh entropy).

    Attributes:
        params: every parameter in one flat 1-D buffer: all weights (layer by layer,
            row-major), then all biases.
        grads: the gradient, same layout as ``params``.
        weights, biases: per-layer views into ``params``; ``weights[i]`` is (fan_in, fan_out).
        grad_weights, grad_biases: the same views into ``grads``.
    """

    def __init__(
        self,
        input_size: int = 784,
        hidden_sizes: Sequence[int] = (128, 128, 128),
        output_size: int = 10,
        activation: str = "relu",
        weight_init: str = "xavier",
        loss: str = "cross_entropy",
        weight_decay: float = 0.0,
        device: str | Backend = "cpu",
        dtype: Any = "float32",
        seed: int | None = None,
    ) -> None:
        if isinstance(hidden_sizes, (int, np.integer)):
            hidden_sizes = (int(hidden_sizes),)
        sizes = (input_size, *hidden_sizes, output_size)
        for size in sizes:
            if not _is_positive_integer(size):
                raise ValueError(f"layer sizes must be positive integers, got {shown(list(sizes))}")
        if output_size < 2:
            raise ValueError(f"output_size must be at least 2 classes, got {output_size}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if not np.isfinite(weight_decay):
            raise ValueError(f"weight_decay must be finite, got {weight_decay}")
        self.layer_sizes = tuple(int(size) for size in sizes)
        self.activation = canonical_activation(activation)
        self.weight_init = canonical_weight_init(weight_init)
        self.loss = canonical_loss(loss)
        self.weight_decay = float(weight_decay)
        self.dtype = canonical_dtype(dtype)
        self.backend = get_backend(device)

        shapes = list(zip(self.layer_sizes[:-1], self.layer_sizes[1:]))
        self.num_weights = sum(fan_in * fan_out for fan_in, fan_out in shapes)
        self.num_params = parameter_count(self.layer_sizes)
        itemsize = np.dtype(self.dtype).itemsize
        check_memory(
            self.backend,
            model_bytes(self.num_params, itemsize, len(self.layer_sizes) - 1),
            f"a {describe_sizes(self.layer_sizes)} network ({self.num_params:,} "
            f"{self.dtype} parameters and their gradients)",
            "make the hidden layers smaller or fewer",
        )

        rng = np.random.default_rng(seed)
        host = np.zeros(self.num_params, dtype=self.dtype)
        offset = 0
        for fan_in, fan_out in shapes:
            # drawn in float64, rounded once to the model dtype
            host[offset : offset + fan_in * fan_out] = init_weight(
                self.weight_init, fan_in, fan_out, rng
            ).ravel()
            offset += fan_in * fan_out
        self.params = self.backend.asarray(host)
        self.grads = self.backend.zeros(self.num_params, dtype=self.dtype)
        self.weights, self.biases = self._layer_views(self.params)
        self.grad_weights, self.grad_biases = self._layer_views(self.grads)
        self._buffers: OrderedDict[int, _BatchBuffers] = OrderedDict()

    # ------------------------------------------------------------- structure

    @property
    def input_size(self) -> int:
        return self.layer_sizes[0]

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return self.layer_sizes[1:-1]

    @property
    def output_size(self) -> int:
        return self.layer_sizes[-1]

    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments that define this architecture (JSON-serialisable)."""
        return {
            "input_size": self.input_size,
            "hidden_sizes": list(self.hidden_sizes),
            "output_size": self.output_size,
            "activation": self.activation,
            "weight_init": self.weight_init,
            "loss": self.loss,
            "weight_decay": self.weight_decay,
            "dtype": self.dtype,
        }

    def __repr__(self) -> str:
        return (
            f"MLP({describe_sizes(self.layer_sizes)}, activation={self.activation!r}, "
            f"loss={self.loss!r}, device={self.device!r}, dtype={self.dtype!r}, "
            f"params={self.num_params})"
        )

    def _layer_views(self, flat: Any) -> tuple[list[Any], list[Any]]:
        """Per-layer weight and bias views into a flat buffer laid out like ``params``."""
        weights, biases = [], []
        offset = 0
        for fan_in, fan_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:]):
            weights.append(flat[offset : offset + fan_in * fan_out].reshape(fan_in, fan_out))
            offset += fan_in * fan_out
        for fan_out in self.layer_sizes[1:]:
            biases.append(flat[offset : offset + fan_out])
            offset += fan_out
        return weights, biases

    def _batch_buffers(self, n: int) -> _BatchBuffers:
        buffers = self._buffers.get(n)
        if buffers is not None:
            self._buffers.move_to_end(n)
            return buffers
        units = self.layer_sizes[1:]
        buffers = _BatchBuffers(
            outputs=[self.backend.empty((n, size), dtype=self.dtype) for size in units],
            deltas=[self.backend.empty((n, size), dtype=self.dtype) for size in units[:-1]],
        )
        self._buffers[n] = buffers
        if len(self._buffers) > _CACHED_BATCH_SIZES:
            self._buffers.popitem(last=False)
        return buffers

    # -------------------------------------------------------------- checking

    def _as_inputs(self, x: Any) -> Any:
        """``x`` as a checked (N, input_size) array of the model dtype (see ``nn.inputs``)."""
        return to_device_inputs(self.backend, x, self.dtype, features=self.input_size)

    def _as_labels(self, y: Any, n: int, check_range: bool) -> Any:
        """``y`` as checked (n,) integer labels; their range too when ``check_range``."""
        y = as_labels(self.backend, y, n)
        if check_range:
            check_label_range(y, self.output_size)
        return y

    # --------------------------------------------------------------- compute

    def _forward_logits(self, x: Any, buffers: _BatchBuffers | None = None) -> Any:
        """Run the network on a checked batch; returns the logits buffer (N, output_size).

        ``buffers``: the batch's work arrays when the caller already holds them.
        """
        xp = self.backend.xp
        buffers = buffers or self._batch_buffers(x.shape[0])
        last = len(self.weights) - 1
        a = x
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            z = buffers.outputs[i]
            # z_i = a_{i-1} W_i
            xp.matmul(a, weight, out=z)
            # a_i = f(z_i + b_i); the output layer keeps its logits
            self.backend.bias_activation_(z, bias, "identity" if i == last else self.activation)
            a = z
        return a

    def _loss_(self, logits: Any, y: Any) -> Any:
        """Mean loss of a batch; overwrites ``logits`` with dLoss/dlogits."""
        if self.loss == "cross_entropy":
            return self.backend.cross_entropy_(logits, y)
        return self.backend.mean_squared_error_(logits, y)

    def loss_and_grad(self, x: Any, y: Any, correct: Any = None) -> Any:
        """Forward and backward pass over one batch; fills ``self.grads``.

        Args:
            x: (N, input_size) inputs, or images (N, H, W); uint8 is scaled to [0, 1], other
                dtypes are cast to the model dtype (see ``fastmlp.nn.inputs``).
            y: (N,) integer class labels in [0, output_size).
            correct: optional 0-d integer array of this backend; the number of samples the
                forward pass classified correctly is added to it (running training
                accuracy without a host sync).

        Returns:
            The mean data loss of the batch as a 0-d array of this backend (no host sync).

        Raises:
            ValueError: bad shapes or dtypes, an empty batch, or (on the CPU) a label
                outside [0, output_size). On a GPU the label range is not checked, because
                that would be a host sync: such a label makes the returned loss NaN.
        """
        x = self._as_inputs(x)
        if x.shape[0] == 0:
            raise ValueError("cannot compute a gradient over an empty batch")
        y = self._as_labels(y, x.shape[0], check_range=self.backend.device == "cpu")
        return self._loss_and_grad(x, y, correct)

    def _loss_and_grad(self, x: Any, y: Any, correct: Any = None) -> Any:
        """:meth:`loss_and_grad` on a batch already checked: x (N, input_size) of the model
        dtype with N >= 1, y (N,) integer labels (the training loop checks them once)."""
        xp = self.backend.xp
        buffers = self._batch_buffers(x.shape[0])
        delta = self._forward_logits(x, buffers)
        if correct is not None:
            correct += (delta.argmax(axis=1) == y).sum()
        loss = self._loss_(delta, y)
        for i in range(len(self.weights) - 1, -1, -1):
            previous = x if i == 0 else buffers.outputs[i - 1]
            # dW_i = a_{i-1}^T delta_i
            xp.matmul(previous.T, delta, out=self.grad_weights[i])
            # db_i = sum_n delta_i
            self.backend.column_sums_(self.grad_biases[i], delta)
            if i > 0:
                # delta_{i-1} = (delta_i W_i^T) * f'(z_{i-1})
                xp.matmul(delta, self.weights[i].T, out=buffers.deltas[i - 1])
                self.backend.activation_grad_(buffers.deltas[i - 1], previous, self.activation)
                delta = buffers.deltas[i - 1]
        if self.weight_decay:
            # dW = dW + weight_decay * W, for the weights only (the first num_weights entries)
            self.backend.add_scaled_(
                self.grads[: self.num_weights], self.params[: self.num_weights], self.weight_decay
            )
        return loss

    def forward(self, x: Any) -> Any:
        """Class probabilities (N, output_size) for inputs (N, input_size) or images."""
        x = self._as_inputs(x)
        probabilities = self.backend.empty((x.shape[0], self.output_size), dtype=self.dtype)
        for start in range(0, x.shape[0], EVAL_CHUNK):
            logits = self._forward_logits(x[start : start + EVAL_CHUNK])
            self.backend.softmax_(logits)
            probabilities[start : start + EVAL_CHUNK] = logits
        return probabilities

    def predict(self, x: Any) -> Any:
        """Predicted class indices (N,) for inputs (N, input_size) or images."""
        x = self._as_inputs(x)
        predictions = self.backend.empty((x.shape[0],), dtype="int64")
        for start in range(0, x.shape[0], EVAL_CHUNK):
            logits = self._forward_logits(x[start : start + EVAL_CHUNK])
            predictions[start : start + EVAL_CHUNK] = logits.argmax(axis=1)
        return predictions

    def evaluate(self, x: Any, y: Any) -> tuple[float, float]:
        """Mean data loss and accuracy over a dataset, evaluated in chunks.

        x: (N, input_size) inputs or images (uint8 scaled to [0, 1]); y: (N,) labels in
        [0, output_size), checked (a ValueError otherwise). The loss is NaN when the
        parameters are not finite.
        """
        x = self._as_inputs(x)
        y = self._as_labels(y, x.shape[0], check_range=True)
        n = x.shape[0]
        if n == 0:
            raise ValueError("cannot evaluate on an empty dataset")
        total_loss = self.backend.zeros((), dtype="float64")
        correct = self.backend.zeros((), dtype="int64")
        for start in range(0, n, EVAL_CHUNK):
            labels = y[start : start + EVAL_CHUNK]
            logits = self._forward_logits(x[start : start + EVAL_CHUNK])
            correct += (logits.argmax(axis=1) == labels).sum()
            total_loss += self._loss_(logits, labels) * labels.shape[0]
        return float(total_loss) / n, int(correct) / n

    # ----------------------------------------------------------- persistence

    def save(
        self,
        path: str | PathLike[str],
        optimizer: Any = None,
        epoch: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Write this model (and optionally optimizer state, epoch, extra JSON) to one .npz."""
        from fastmlp.nn.checkpoint import save_checkpoint

        save_checkpoint(path, self, optimizer=optimizer, epoch=epoch, extra=extra)

    @classmethod
    def load(cls, path: str | PathLike[str], device: str | Backend | None = None) -> MLP:
        """Read a model saved by :meth:`save` onto ``device`` (default: the CPU)."""
        from fastmlp.nn.checkpoint import load_checkpoint

        return load_checkpoint(path, device=device).model
