"""Arguments for every in-place kernel of the backends, one case per kernel and entry.

The kernel tests (CPU fused vs reference, CuPy vs NumPy) share this table: it is built from
the registries, so a new optimizer or activation gets its cases by being registered.
``size`` is the length of flat buffers, ``rows`` the batch of row-wise kernels.
"""

import numpy as np

from fastmlp import optim
from fastmlp.backends.base import Backend
from fastmlp.optim.optimizer import flush_threshold

# A value other than the default for each hyperparameter, inside its range.
CUSTOM = {"lr": 0.05, "momentum": 0.7, "beta": 0.8, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6,
          "weight_decay": 0.1, "momentum_decay": 8e-3}  # fmt: skip


def defaults(name):
    return {p.name: p.default for p in optim.optimizer_class(name).hyperparameters}


def custom(name):
    return {key: CUSTOM.get(key, value) for key, value in defaults(name).items()}


def _state(rng, shape, dtype, positive=False):
    x = rng.normal(size=shape)
    return (np.abs(x) if positive else x).astype(dtype)


def _optimizer_case(name, rng, dtype, n):
    """run_formula_ arguments of one update of ``name``, at step 3, custom settings."""
    optimizer = optim.create(name, **custom(name))
    for _ in range(3):
        optimizer.steps += 1
        optimizer.advance()
    p, g = _state(rng, n, dtype), _state(rng, n, dtype)
    g[::7] = 0.0
    buffers = [_state(rng, n, dtype, positive=key == "v") for key in optimizer.buffers]
    values = optimizer.hyperparameter_values()
    return (optimizer.formula, [p, g, *buffers], optimizer.scalars(values))


def _per_model_case(name, rng, dtype):
    """run_formula_per_model_ arguments of one update of ``name`` for a stack of 3 models
    (defaults, custom settings, defaults) at step 3: flat arrays holding two groups, 11
    rows of width 7 then 1 row of width 5, the second with its own scalars (lr halved)."""
    members = [optim.create(name, **values) for values in (defaults(name), custom(name),
                                                            defaults(name))]  # fmt: skip
    for member in members:
        for _ in range(3):
            member.steps += 1
            member.advance()
    first = [member.scalars(member.hyperparameter_values()) for member in members]
    second = [
        member.scalars({**member.hyperparameter_values(), "lr": member.lr / 2})
        for member in members
    ]
    size = 11 * 3 * 7 + 1 * 3 * 5
    p, g = _state(rng, size, dtype), _state(rng, size, dtype)
    buffers = [_state(rng, size, dtype, positive=key == "v") for key in members[0].buffers]
    groups = [(0, 11 * 3 * 7, 7), (11 * 3 * 7, size, 5)]
    return (members[0].formula, [p, g, *buffers], groups, [first, second])


def _flush_case(rng, dtype, n):
    tiny = float(np.finfo(dtype).tiny)
    threshold = flush_threshold(dtype)
    smallest = -45 if dtype == "float32" else -320
    x = rng.normal(size=n) * 10.0 ** rng.uniform(smallest, 0, size=n)
    x = x.astype(dtype)
    x[:6] = [tiny / 8, -tiny / 8, threshold / 2, -threshold * 2, 0.0, tiny]  # both sides of it
    return (x, threshold)


def _logits(rng, dtype, n, units=11):
    z = (rng.normal(size=(n, units)) * 4).astype(dtype)
    z[0, :3] = [60.0, -60.0, -1000.0]  # saturated sigmoid/tanh, exp overflow territory
    return z


def _activation_case(kernel, name, rng, dtype, rows):
    from fastmlp.nn.activations import create

    function = create(name)
    z = _logits(rng, dtype, rows)
    bias = rng.normal(size=z.shape[1]).astype(dtype)
    if kernel == "bias_activation_":
        return (z, bias, function, None)
    if kernel == "bias_activation_keep":
        return (z, bias, function, np.empty_like(z))
    # the gradient from the activation's output or input, as it declares
    a = z.copy()
    if function.backward_from == "output":
        Backend().bias_activation_(a, bias, function)
    return (rng.normal(size=z.shape).astype(dtype), a, function)


def _dropout_case(formula_name, rng, dtype, rows):
    from fastmlp.nn.layers import dropout

    shape = (rows, 11)
    if formula_name == "keep_scale":
        u = rng.random(shape).astype(dtype)
        return (dropout.KEEP_SCALE, [u], {"rate": 0.3, "scale": 1 / 0.7})
    mask = np.where(rng.random(shape) < 0.3, 0.0, 1 / 0.7).astype(dtype)
    if formula_name == "masked":
        x = rng.normal(size=shape).astype(dtype)
        return (dropout.MASKED, [x, mask, np.empty_like(x)], {})
    return (dropout.MASK_IN_PLACE, [rng.normal(size=shape).astype(dtype), mask], {})


def activation_names():
    from fastmlp.nn.activations import ACTIVATIONS

    return ACTIVATIONS.names()


KERNEL_CASES = (
    [("gather_", None), ("column_sums_", None), ("add_scaled_", None)]
    + [("run_formula_", name) for name in optim.names()]
    + [("run_formula_", f"dropout-{name}") for name in ("keep_scale", "masked", "in_place")]
    + [("run_formula_per_model_", name) for name in optim.names()]
    + [("flush_subnormals_", None), ("uniform_", None)]
    + [(kernel, name) for kernel in ("bias_activation_", "bias_activation_keep",
                                      "activation_grad_") for name in activation_names()]
    + [("softmax_", None), ("cross_entropy_", None), ("mean_squared_error_", None)]
)  # fmt: skip


def kernel_arguments(kernel, case, rng, dtype, size=1031, rows=37):
    if kernel == "gather_":
        x = rng.normal(size=(rows, 7)).astype(dtype)
        return (np.zeros((rows // 2, 7), dtype=dtype), x, rng.permutation(rows)[: rows // 2])
    if kernel == "column_sums_":
        return (np.zeros(9, dtype=dtype), rng.normal(size=(rows, 9)).astype(dtype))
    if kernel == "add_scaled_":
        return (_state(rng, size, dtype), _state(rng, size, dtype), 0.37)
    if kernel == "flush_subnormals_":
        return _flush_case(rng, dtype, size)
    if kernel == "uniform_":
        return (np.empty((rows, 11), dtype=dtype), "generator")
    if kernel == "run_formula_per_model_":
        return _per_model_case(case, rng, dtype)
    if kernel == "run_formula_":
        if case.startswith("dropout-"):
            return _dropout_case(case.removeprefix("dropout-"), rng, dtype, rows)
        return _optimizer_case(case, rng, dtype, size)
    if kernel.startswith(("bias_activation_", "activation_grad_")):
        return _activation_case(kernel, case, rng, dtype, rows)
    z = _logits(rng, dtype, rows)
    if kernel == "softmax_":
        return (z,)
    return (z, rng.integers(0, z.shape[1], size=z.shape[0]))


def copied(args, backend):
    copies = []
    for a in args:
        if isinstance(a, np.ndarray):
            copies.append(a.copy())
        elif isinstance(a, list) and a and isinstance(a[0], np.ndarray):
            copies.append([x.copy() for x in a])
        elif isinstance(a, str) and a == "generator":
            copies.append(backend.rng(5))
        else:
            copies.append(a)
    return copies


def arrays_of(args):
    for a in args:
        if isinstance(a, np.ndarray):
            yield a
        elif isinstance(a, list) and a and isinstance(a[0], np.ndarray):
            yield from a
