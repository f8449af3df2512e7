"""The multilayer perceptron: a sequence of layers over one flat parameter buffer.

Notation for a network with L layers (L - 1 hidden layers and the output layer):
a_0 = X (N, input_size); for layer i = 1..L: z_i = a_{i-1} W_i + b_i with W_i of shape
(fan_in, fan_out); a_i = f(z_i) for hidden layers (then dropout, if any), and
p = softmax(z_L) for the output.

Layers (``fastmlp.nn.layers``): each hidden layer is a Dense layer, an Activation layer
(which adds the Dense layer's bias in the same kernel as its function) and, with dropout, a
Dropout layer; the output layer is a Dense layer. Backward, with delta_L = dLoss/dz_L from
the fused loss kernel, each layer in reverse order fills its gradient views and passes on:
    dW_i = a_{i-1}^T delta_i (+ weight_decay * W_i),   db_i = sum_n delta_i
    delta_{i-1} = (delta_i W_i^T) * f'(z_{i-1})        (times the dropout mask, if any)
A stack of K models (``n_models=K``) holds K networks of one shape, trained side by side
on the same batches: every layer's units hold the K models' units side by side, model k's
in its block of columns (``fastmlp.nn.layers.dense``), so that the first layer is one
matrix product for all models, the later ones one batched product, and every elementwise
kernel, the bias gradients and the optimizer step one call for the whole stack. Each model
computes what it alone would compute (to float rounding: the products' sums may be ordered
differently by the BLAS).

With gradient-norm clipping (``max_grad_norm``) the data-loss gradient g is scaled by
min(1, max_grad_norm / (||g|| + 1e-6)) before the weight-decay term is added, as
``torch.nn.utils.clip_grad_norm_`` before an optimizer step with ``weight_decay``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np

from fastmlp.backends import Backend, get_backend
from fastmlp.errors import shown
from fastmlp.nn import activations
from fastmlp.nn.init import canonical_weight_init, init_weight
from fastmlp.nn.inputs import as_labels, check_label_range, to_device_inputs
from fastmlp.nn.layers import (
    Activation,
    BufferCache,
    Dense,
    Dropout,
    Layer,
    ParameterLayout,
    StackedDropout,
)
from fastmlp.nn.layers.dense import model_blocks
from fastmlp.nn.losses import LOSSES, canonical_loss, smoothable_losses
from fastmlp.nn.memory import check_memory, describe_sizes, model_bytes

DTYPES = ("float32", "float64")

EVAL_CHUNK = 8192


def _is_positive_integer(value: Any) -> bool:
    """Whether ``value`` is a whole number >= 1 (an int, NumPy integer or integral float)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    try:
        return int(value) == value and value >= 1
    except (TypeError, ValueError, OverflowError):
        return False


def check_max_grad_norm(max_grad_norm: Any) -> float | None:
    """``max_grad_norm`` as a float (None: no clipping); a ValueError unless it is a
    positive finite number."""
    if max_grad_norm is None:
        return None
    if isinstance(max_grad_norm, (bool, np.bool_)) or not 0 < max_grad_norm < np.inf:
        raise ValueError(
            f"max_grad_norm must be a positive finite number (or None: no clipping), got "
            f"{max_grad_norm!r}"
        )
    return float(max_grad_norm)


def per_model(name: str, value: Any, n_models: int) -> tuple[float, ...]:
    """``value`` (one number, or one per model) as ``n_models`` floats; a ValueError for a
    sequence of another length."""
    if isinstance(value, (list, tuple, np.ndarray)):
        values = tuple(float(item) for item in value)
        if len(values) != n_models:
            raise ValueError(
                f"{name} must be one value or one per model ({n_models}), got {len(values)}"
            )
        return values
    return (float(value),) * n_models


def model_seeds(seed: Any, n_models: int) -> list[int | None]:
    """The seed of each model of a stack: ``seed`` itself for one model; for K models a
    sequence of K seeds as given, or K seeds derived from one int (or from fresh entropy
    for None) by ``numpy.random.SeedSequence(seed).generate_state(K)``."""
    if n_models == 1 and not isinstance(seed, (list, tuple, np.ndarray)):
        return [seed]
    if isinstance(seed, (list, tuple, np.ndarray)):
        seeds = [None if item is None else int(item) for item in seed]
        if len(seeds) != n_models:
            raise ValueError(
                f"seed must be one int or one per model ({n_models}), got {len(seeds)}"
            )
        return seeds
    return [int(value) for value in np.random.SeedSequence(seed).generate_state(n_models)]


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
        activation: hidden activation, a name of ``fastmlp.nn.activations.ACTIVATIONS``
            (identity, sigmoid, tanh, relu, leaky_relu, elu, gelu, silu; any case, aliases
            such as ReLU or swish) or an ``ActivationFunction``.
        weight_init: random, xavier or he (any case); see ``fastmlp.nn.init``.
        loss: cross_entropy or mean_squared_error (alias mse), both on the softmax output.
        weight_decay: L2 strength on weights (not biases): the gradient gets
            ``+ weight_decay * W``; reported losses are the data loss alone.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a Backend.
        dtype: float32 (default) or float64.
        seed: seed of the weight initialisation and of the dropout masks (None: fresh
            entropy).
        dropout: probability of zeroing each hidden unit after its activation while
            training (inverted dropout; 0: none).
        activation_options: the activation's hyperparameters, e.g. ``{"slope": 0.1}`` for
            leaky_relu.
        label_smoothing: eps in [0, 1), cross_entropy only: the training target becomes
            (1 - eps) onehot(y) + eps / output_size, as torch's
            ``CrossEntropyLoss(label_smoothing=eps)``. ``loss_and_grad`` returns and
            differentiates the smoothed loss; ``evaluate`` reports the plain cross-entropy,
            so validation losses compare across runs whatever their smoothing.
        n_models: K, the number of models in this stack (1: one model, as always). With
            K > 1, ``seed`` may be one int (K seeds derived from it, see ``model_seeds``) or
            K seeds, ``weight_decay`` and ``dropout`` one value or K; model k is initialised
            as ``MLP(seed=seeds[k])`` alone would be.

    Attributes:
        params: every parameter in one flat 1-D buffer: all weights (layer by layer,
            row-major), then all biases (``layout``, a ``ParameterLayout``, says where).
        grads: the gradient, same layout as ``params``.
        weights, biases: per-layer views into ``params``; ``weights[i]`` is (fan_in, fan_out),
            for a stack (K, fan_in, fan_out) and ``biases[i]`` (K, fan_out). A stack's
            ``params`` hold each layer's weights as (fan_in, K * fan_out), model k's in its
            block of columns, then its biases as (K * fan_out,); ``select(k)`` copies model k
            out as a model of its own.
        grad_weights, grad_biases: the same views into ``grads``.
        layers: the layers, in order (``fastmlp.nn.layers``).
        training: whether ``loss_and_grad`` applies dropout (``train()`` / ``eval()``);
            ``forward``, ``predict`` and ``evaluate`` never do.
        label_smoothing: the smoothing of the training target (0: none).
    """

    def __init__(
        self,
        input_size: int = 784,
        hidden_sizes: Sequence[int] = (128, 128, 128),
        output_size: int = 10,
        activation: str | activations.ActivationFunction = "relu",
        weight_init: str = "xavier",
        loss: str = "cross_entropy",
        weight_decay: float | Sequence[float] = 0.0,
        device: str | Backend = "cpu",
        dtype: Any = "float32",
        seed: int | Sequence[int] | None = None,
        dropout: float | Sequence[float] = 0.0,
        activation_options: dict[str, float] | None = None,
        label_smoothing: float = 0.0,
        n_models: int = 1,
    ) -> None:
        if not _is_positive_integer(n_models):
            raise ValueError(f"n_models must be a whole number >= 1, got {shown(n_models)}")
        self.n_models = int(n_models)
        decays = per_model("weight_decay", weight_decay, self.n_models)
        rates = per_model("dropout", dropout, self.n_models)
        seeds = model_seeds(seed, self.n_models)
        if isinstance(hidden_sizes, (int, np.integer)):
            hidden_sizes = (int(hidden_sizes),)
        sizes = (input_size, *hidden_sizes, output_size)
        for size in sizes:
            if not _is_positive_integer(size):
                raise ValueError(f"layer sizes must be positive integers, got {shown(list(sizes))}")
        if output_size < 2:
            raise ValueError(f"output_size must be at least 2 classes, got {output_size}")
        for decay in decays:
            if not decay >= 0:
                raise ValueError(f"weight_decay must be >= 0, got {decay}")
            if not np.isfinite(decay):
                raise ValueError(f"weight_decay must be finite, got {decay}")
        for rate in rates:
            if not 0 <= rate < 1:
                raise ValueError(f"dropout must be in [0, 1), got {rate}")
        if isinstance(label_smoothing, (bool, np.bool_)) or not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.layer_sizes = tuple(int(size) for size in sizes)
        self.activation_function = activations.create(activation, **(activation_options or {}))
        self.activation = self.activation_function.name
        self.weight_init = canonical_weight_init(weight_init)
        self.loss = canonical_loss(loss)
        if label_smoothing and self.loss not in smoothable_losses():
            raise ValueError(
                f"label smoothing applies to {' and '.join(smoothable_losses())} only, not to "
                f"{self.loss}"
            )
        self.label_smoothing = float(label_smoothing)
        # one value, or (a stack whose models differ) a tuple of one per model
        self.weight_decay = decays[0] if len(set(decays)) == 1 else decays
        self.dropout = rates[0] if len(set(rates)) == 1 else rates
        self.seeds = seeds
        self.dtype = canonical_dtype(dtype)
        self.backend = get_backend(device)
        self.training = True

        self.layers = self._build_layers()
        self.layout = ParameterLayout(self.layers)
        self.num_params = self.layout.size
        self.num_weights = self.layout.role_span("weight")[1]
        itemsize = np.dtype(self.dtype).itemsize
        check_memory(
            self.backend,
            model_bytes(self.num_params, itemsize, len(self.layer_sizes) - 1),
            f"{self._described()} ({self.num_params:,} "
            f"{self.dtype} parameters and their gradients)",
            "make the hidden layers smaller or fewer",
        )

        rngs = [np.random.default_rng(model_seed) for model_seed in seeds]
        host = np.zeros(self.num_params, dtype=self.dtype)
        for slot in self.layout.of_role("weight"):
            fan_in, columns = slot.shape
            fan_out = columns // self.n_models
            weight = host[slot.offset : slot.offset + slot.size].reshape(slot.shape)
            for k, rng in enumerate(rngs):
                # drawn in float64, rounded once to the model dtype
                weight[:, k * fan_out : (k + 1) * fan_out] = init_weight(
                    self.weight_init, fan_in, fan_out, rng
                )
        self.params = self.backend.asarray(host)
        self.grads = self.backend.zeros(self.num_params, dtype=self.dtype)
        # the squared gradient norm, then the clip coefficient (see _clip_gradient_norm)
        self._clip_scratch = self.backend.zeros((), dtype=self.dtype)
        for layer, params, grads in zip(
            self.layers, self.layout.views(self.params), self.layout.views(self.grads)
        ):
            layer.bind(params, grads)
        self._fuse_biases()
        dense_layers = [layer for layer in self.layers if isinstance(layer, Dense)]
        layers = len(dense_layers)
        views, grad_views = self.parameter_views(self.params), self.parameter_views(self.grads)
        self.weights, self.biases = views[:layers], views[layers:]
        self.grad_weights, self.grad_biases = grad_views[:layers], grad_views[layers:]
        self._dense_layers = dense_layers
        self._loss_blocks = BufferCache(
            lambda n: {
                "labels": self.backend.empty((n, self.n_models), dtype="int64"),
                "losses": self.backend.empty((n, self.n_models), dtype=self.dtype),
            }
        )
        self._decay_rows = self._weight_decay_rows()
        self._backward_order = self.layers[::-1]
        # the data loss (evaluate), and the training objective (loss_and_grad)
        self._loss_kernel = getattr(self.backend, LOSSES.get(self.loss).kernel)
        self._training_loss = (
            functools.partial(self._loss_kernel, label_smoothing=self.label_smoothing)
            if self.label_smoothing
            else self._loss_kernel
        )
        self.reseed([int(rng.integers(2**63)) for rng in rngs])

    # ------------------------------------------------------------- structure

    def _build_layers(self) -> list[Layer]:
        """Dense, Activation, Dropout for each hidden layer; then the output Dense."""
        layers: list[Layer] = []
        shapes = list(zip(self.layer_sizes[:-1], self.layer_sizes[1:]))
        k = self.n_models
        rates = per_model("dropout", self.dropout, k)
        for i, (fan_in, fan_out) in enumerate(shapes):
            layers.append(
                Dense(
                    fan_in,
                    fan_out,
                    self.backend,
                    self.dtype,
                    needs_input_gradient=i > 0,
                    n_models=k,
                    shared_input=i == 0,
                )  # fmt: skip
            )
            if i == len(shapes) - 1:
                break
            if self.activation != "identity":
                layers.append(
                    Activation(self.activation_function, k * fan_out, self.backend, self.dtype)
                )
            if k == 1 and self.dropout:
                layers.append(Dropout(self.dropout, fan_out, self.backend, self.dtype))
            elif k > 1 and any(rates):
                layers.append(StackedDropout(rates, fan_out, self.backend, self.dtype))
        return layers

    def _weight_decay_rows(self) -> list[Any] | None:
        """For a stack whose models' weight decays differ, each layer's (K * fan_out,) row of
        them (model k's over its columns); None when one value serves every weight."""
        if not isinstance(self.weight_decay, tuple):
            return None
        return [
            self.backend.asarray(np.repeat(self.weight_decay, layer.fan_out), dtype=self.dtype)
            for layer in self._dense_layers
        ]

    def _fuse_biases(self) -> None:
        """Each Activation right after a Dense layer adds that layer's bias in its kernel."""
        for before, layer in zip(self.layers, self.layers[1:]):
            if isinstance(before, Dense) and isinstance(layer, Activation):
                layer.bias = before.bias_for(layer.function)

    def train(self, mode: bool = True) -> MLP:
        """Training mode (dropout in ``loss_and_grad``); ``train(False)`` is :meth:`eval`."""
        self.training = bool(mode)
        return self

    def eval(self) -> MLP:
        """Inference mode: ``loss_and_grad`` without dropout (gradient checks, analysis)."""
        return self.train(False)

    def reseed(self, seed: int | Sequence[int]) -> None:
        """Seed the dropout masks (``fastmlp.train`` does it at every epoch, so that a run
        resumed at an epoch boundary draws exactly the masks the uninterrupted one drew).
        A stack takes one seed per model (or one int, used for every model)."""
        seeds = [int(one) for one in seed] if isinstance(seed, (list, tuple)) else [seed]

        def layer_seed(model_seed: int, index: int) -> int:
            return int(np.random.SeedSequence([model_seed, index]).generate_state(1)[0])

        for index, layer in enumerate(self.layers):
            if isinstance(layer, Dropout):
                layer.reseed(layer_seed(seeds[0], index))
            elif isinstance(layer, StackedDropout):
                per_model_seeds = seeds * self.n_models if len(seeds) == 1 else seeds
                layer.reseed([layer_seed(one, index) for one in per_model_seeds])

    def param_groups(self) -> list[Any]:
        """The weights and the biases as optimizer parameter groups: the biases without
        decoupled weight decay (see ``fastmlp.optim.ParamGroup``)."""
        from fastmlp.optim import ParamGroup

        if self.n_models == 1:
            return [
                ParamGroup(*self.layout.role_span("weight"), name="weights"),
                ParamGroup(*self.layout.role_span("bias"), {"weight_decay": 0.0}, name="biases"),
            ]
        # a stack: one group per layer and role, model k's entries in its block of columns
        groups = []
        for slot in self.layout.slots:
            layer = self.layers[slot.layer]
            options = {"weight_decay": 0.0} if slot.role == "bias" else {}
            groups.append(
                ParamGroup(slot.offset, slot.offset + slot.size, options,
                           f"{slot.role} {slot.layer}", (self.n_models, layer.fan_out))
            )  # fmt: skip
        return groups

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
            "activation_options": dict(self.activation_function.options),
            "weight_init": self.weight_init,
            "loss": self.loss,
            "weight_decay": self.weight_decay,
            "dropout": self.dropout,
            "label_smoothing": self.label_smoothing,
            "dtype": self.dtype,
            **({"n_models": self.n_models} if self.n_models > 1 else {}),
        }

    def parameter_views(self, flat: Any) -> list[Any]:
        """Every layer's weights, then biases, as views into ``flat`` (a buffer laid out as
        ``params``): for a stack (K, fan_in, fan_out) and (K, fan_out), model k's as ``[k]``."""
        views = []
        for role in ("weight", "bias"):
            for slot in self.layout.of_role(role):
                view = flat[slot.offset : slot.offset + slot.size].reshape(slot.shape)
                if self.n_models > 1:
                    fan_out = slot.shape[-1] // self.n_models
                    view = (
                        model_blocks(view, self.n_models, fan_out)
                        if role == "weight"
                        else view.reshape(self.n_models, fan_out)
                    )
                views.append(view)
        return views

    def _described(self) -> str:
        network = f"a {describe_sizes(self.layer_sizes)} network"
        return network if self.n_models == 1 else f"a stack of {self.n_models} of {network[2:]}"

    def select(self, k: int) -> MLP:
        """Model ``k`` of this stack as a model of its own (a copy, on the same device); its
        weight decay and dropout are model k's, its dropout seeded from model k's seed."""
        if not 0 <= k < self.n_models:
            raise IndexError(f"model {k} is not in this stack of {self.n_models}")
        config = self.config
        config.pop("n_models", None)
        config["weight_decay"] = per_model("weight_decay", self.weight_decay, self.n_models)[k]
        config["dropout"] = per_model("dropout", self.dropout, self.n_models)[k]
        model = MLP(**config, device=self.backend, seed=self.seeds[k])
        self.copy_model_entries(self.params, k, model, model.params)
        return model

    def copy_model_entries(self, flat: Any, k: int, single: MLP, out: Any) -> Any:
        """Copy model ``k``'s entries of ``flat`` (laid out as this stack's ``params``: the
        parameters, or an optimizer's state buffer) into ``out``, laid out as ``single``'s
        ``params`` (a model of this stack's shape alone, e.g. ``select(k)``); returns ``out``."""
        for mine, theirs in zip(self.parameter_views(flat), single.parameter_views(out)):
            theirs[...] = mine[k] if self.n_models > 1 else mine
        return out

    def __repr__(self) -> str:
        stack = f", n_models={self.n_models}" if self.n_models > 1 else ""
        return (
            f"MLP({describe_sizes(self.layer_sizes)}{stack}, activation={self.activation!r}, "
            f"loss={self.loss!r}, device={self.device!r}, dtype={self.dtype!r}, "
            f"params={self.num_params})"
        )

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

    def _forward_logits(self, x: Any, training: bool = False) -> Any:
        """Run the layers on a checked batch; returns the logits buffer (N, output_size)."""
        a = x
        for layer in self.layers:
            a = layer.forward(a, training)
        return a

    def loss_and_grad(
        self, x: Any, y: Any, correct: Any = None, max_grad_norm: float | None = None
    ) -> Any:
        """Forward and backward pass over one batch; fills ``self.grads``.

        Args:
            x: (N, input_size) inputs, or images (N, H, W); uint8 is scaled to [0, 1], other
                dtypes are cast to the model dtype (see ``fastmlp.nn.inputs``).
            y: (N,) integer class labels in [0, output_size).
            correct: optional 0-d integer array of this backend; the number of samples the
                forward pass classified correctly is added to it (running training
                accuracy without a host sync).
            max_grad_norm: clip the data-loss gradient g (every entry of ``grads``, weights
                and biases) to this Euclidean norm, as
                ``torch.nn.utils.clip_grad_norm_(max_norm)``: g = g * min(1, max_grad_norm /
                (||g|| + 1e-6)), on the device. Weight decay is added afterwards, unclipped
                (torch adds it in the optimizer step). A non-finite gradient is scaled as
                torch scales it with ``error_if_nonfinite=False``: a NaN norm makes every
                entry NaN, an infinite one zeroes the finite entries and makes the infinite
                ones NaN; the parameters then turn NaN at the optimizer step, which the
                training loop's divergence check catches. None: no clipping.

        Returns:
            The mean training loss of the batch (with ``label_smoothing``, the smoothed
            cross-entropy, as torch's; never the L2 term) as a 0-d array of this backend (no
            host sync). Dropout applies in training mode (the default; see :meth:`eval`).
            A stack returns the (K,) losses of its models, ``correct`` (K,) counts per
            model, and ``max_grad_norm`` clips each model's gradient to its own norm.

        Raises:
            ValueError: bad shapes or dtypes, an empty batch, a ``max_grad_norm`` that is not
                a positive finite number, or (on the CPU) a label outside [0, output_size).
                On a GPU the label range is not checked, because that would be a host sync:
                such a label makes the returned loss NaN.
        """
        max_grad_norm = check_max_grad_norm(max_grad_norm)
        x = self._as_inputs(x)
        if x.shape[0] == 0:
            raise ValueError("cannot compute a gradient over an empty batch")
        y = self._as_labels(y, x.shape[0], check_range=self.backend.device == "cpu")
        return self._loss_and_grad(x, y, correct, max_grad_norm)

    def _loss_and_grad(
        self, x: Any, y: Any, correct: Any = None, max_grad_norm: float | None = None
    ) -> Any:
        """:meth:`loss_and_grad` on a batch already checked: x (N, input_size) of the model
        dtype with N >= 1, y (N,) integer labels (the training loop checks them once), and
        ``max_grad_norm`` None or a positive finite float."""
        delta = self._forward_logits(x, self.training)
        if self.n_models > 1:
            loss = self._stack_loss(delta, y, correct, self._training_loss)
        else:
            # the loss kernel leaves dLoss/dlogits in the logits buffer and counts the
            # correct rows into correct
            loss = self._training_loss(delta, y, correct=correct)
        for layer in self._backward_order:
            delta = layer.backward(delta)
            if delta is None:  # the first layer: nothing before it needs a gradient
                break
        if max_grad_norm is not None:
            if self.n_models > 1:
                self._clip_each_model(max_grad_norm)
            else:
                self._clip_gradient_norm(max_grad_norm)
        if self._decay_rows is not None:
            for layer, row in zip(self._dense_layers, self._decay_rows):
                layer.add_weight_decay_(row)
        elif self.weight_decay:
            # dW = dW + weight_decay * W, for the weights only (the first num_weights entries)
            self.backend.add_scaled_(
                self.grads[: self.num_weights], self.params[: self.num_weights], self.weight_decay
            )
        return loss

    def _stack_loss(self, logits: Any, y: Any, correct: Any, loss_kernel: Any) -> Any:
        """A stack's (K,) mean losses over logits (N, K * classes), left holding dLoss/dlogits;
        adds each model's number of correct predictions to ``correct`` (K,) if given.

        One loss kernel call for all models: the logits as (N * K, classes) rows (row
        n * K + k is model k's sample n), each with its sample's label; the kernel divides
        the gradient by its N * K rows, each model's mean is over N, so it is scaled by K."""
        n, classes, k = logits.shape[0], self.output_size, self.n_models
        if correct is not None:
            predicted = logits.reshape(n, k, classes).argmax(axis=2)
            correct += (predicted == y[:, None]).sum(axis=0)
        buffers = self._loss_blocks(n)
        labels, sample_losses = buffers["labels"], buffers["losses"]
        labels[...] = y[:, None]
        rows = logits.reshape(n * k, classes)
        loss_kernel(rows, labels.reshape(-1), sample_losses=sample_losses.reshape(-1))
        # dLoss_k/dz = (N * K) / N * (what the kernel left)
        rows *= rows.dtype.type(k)
        return sample_losses.mean(axis=0)

    def _clip_each_model(self, max_norm: float) -> None:
        """:meth:`_clip_gradient_norm` for each model of a stack: g_k = g_k * min(1, max_norm
        / (||g_k|| + 1e-6)) over model k's entries of every layer's weights and biases."""
        xp = self.backend.xp
        k = self.n_models
        squares = self.backend.zeros((k,), dtype=self.dtype)
        blocks = [*self.grad_weights, *self.grad_biases]
        for block in blocks:
            # squares_k = squares_k + sum of model k's g^2
            squares += (block * block).reshape(k, -1).sum(axis=1)
        scalar = squares.dtype.type
        scale = xp.minimum(scalar(max_norm) / (xp.sqrt(squares) + scalar(1e-6)), scalar(1))
        for block in blocks:
            # g_k = g_k * scale_k
            block *= scale.reshape((k,) + (1,) * (block.ndim - 1))

    def _clip_gradient_norm(self, max_norm: float) -> None:
        """``torch.nn.utils.clip_grad_norm_(max_norm)`` on the whole flat gradient g, on the
        device and into preallocated scratch (no host sync, no allocation):
        g = g * min(1, max_norm / (||g|| + 1e-6)). The norm is formed as sum_i g_i^2 in the
        model dtype: in float32 a norm beyond ~1.8e19 overflows to inf, which zeroes a finite
        gradient (torch's coefficient for an infinite norm)."""
        xp = self.backend.xp
        grads, scale = self.grads, self._clip_scratch
        scalar = scale.dtype.type
        # scale = sum_i g_i^2
        xp.dot(grads, grads, out=scale)
        # scale = max_norm / (sqrt(scale) + 1e-6), at most 1 (NaN stays NaN: minimum keeps it)
        xp.sqrt(scale, out=scale)
        xp.add(scale, scalar(1e-6), out=scale)
        xp.divide(scalar(max_norm), scale, out=scale)
        xp.minimum(scale, scalar(1), out=scale)
        # g = g * scale
        xp.multiply(grads, scale, out=grads)

    def _model_axis_first(self, a: Any) -> Any:
        """A stack's (n, K * classes) rows as (K, n, classes): model k's as ``[k]``."""
        return model_blocks(a, self.n_models, self.output_size)

    def forward(self, x: Any) -> Any:
        """Class probabilities (N, output_size) for inputs (N, input_size) or images; a
        stack's are (K, N, output_size)."""
        x = self._as_inputs(x)
        n, k, classes = x.shape[0], self.n_models, self.output_size
        shape = (n, classes) if k == 1 else (k, n, classes)
        probabilities = self.backend.empty(shape, dtype=self.dtype)
        for start in range(0, n, EVAL_CHUNK):
            logits = self._forward_logits(x[start : start + EVAL_CHUNK])
            rows = logits.shape[0]
            # each model's softmax over its own classes: (rows * K, classes) rows
            self.backend.softmax_(logits.reshape(rows * k, classes))
            if k == 1:
                probabilities[start : start + EVAL_CHUNK] = logits
            else:
                probabilities[:, start : start + rows] = self._model_axis_first(logits)
        return probabilities

    def predict(self, x: Any) -> Any:
        """Predicted class indices (N,) for inputs (N, input_size) or images; a stack's
        are (K, N)."""
        x = self._as_inputs(x)
        n, k = x.shape[0], self.n_models
        predictions = self.backend.empty((n,) if k == 1 else (k, n), dtype="int64")
        for start in range(0, n, EVAL_CHUNK):
            logits = self._forward_logits(x[start : start + EVAL_CHUNK])
            if k == 1:
                predictions[start : start + EVAL_CHUNK] = logits.argmax(axis=1)
            else:
                rows = logits.shape[0]
                chosen = logits.reshape(rows, k, self.output_size).argmax(axis=2)
                predictions[:, start : start + rows] = chosen.T
        return predictions

    def evaluate(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Mean data loss and accuracy over a dataset, evaluated in chunks.

        x: (N, input_size) inputs or images (uint8 scaled to [0, 1]); y: (N,) labels in
        [0, output_size), checked (a ValueError otherwise). The loss is the plain data loss:
        without label smoothing even when the model trains with it (so that validation
        losses compare across runs), and without the L2 term. It is NaN when the parameters
        are not finite. A stack returns two lists: each model's loss and accuracy.
        """
        x = self._as_inputs(x)
        y = self._as_labels(y, x.shape[0], check_range=True)
        n = x.shape[0]
        if n == 0:
            raise ValueError("cannot evaluate on an empty dataset")
        shape = (2,) if self.n_models == 1 else (2, self.n_models)
        sums = self.backend.empty(shape, dtype="float64")
        self._evaluation_sums_(x, y, sums)
        total_loss, correct = self.backend.to_numpy(sums)  # the one host sync
        if self.n_models == 1:
            return float(total_loss) / n, int(correct) / n
        return [float(one) / n for one in total_loss], [int(one) / n for one in correct]

    def _evaluation_sums_(self, x: Any, y: Any, out: Any) -> None:
        """``out = [sum_n loss_n, number correct]`` over checked inputs x (N, input_size) and
        labels y (N,), in a (2,) float64 device array (a stack's: (2, K), per model); no
        host sync."""
        shape = () if self.n_models == 1 else (self.n_models,)
        total_loss = self.backend.zeros(shape, dtype="float64")
        correct = self.backend.zeros(shape, dtype="int64")
        for start in range(0, x.shape[0], EVAL_CHUNK):
            labels = y[start : start + EVAL_CHUNK]
            logits = self._forward_logits(x[start : start + EVAL_CHUNK])
            if self.n_models == 1:
                loss = self._loss_kernel(logits, labels, correct=correct)
            else:
                loss = self._stack_loss(logits, labels, correct, self._loss_kernel)
            total_loss += loss * labels.shape[0]
        out[0] = total_loss
        out[1] = correct

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
