"""Every optimizer computes exactly its update rule, the one of torch.optim.

Oracles, from the most to the least independent:

* ``ReferenceRule``: each rule written here from its formula (docs/ARCHITECTURE.md lists
  them), in plain float64 NumPy, not through any fastmlp backend;
* ``torch.optim`` itself, in float64, when torch is installed;
* the reference evaluation of each optimizer's update formula on the base ``Backend``,
  which the fused NumPy and Numba kernels must reproduce.

The tables are the optimizer registry: an optimizer added in a new file of
``fastmlp/optim/`` is checked for kernel equivalence, state round trips, the subnormal
flush and allocation at once (the first two oracles need its rule written here).
"""

import inspect

import numpy as np
import pytest

from fastmlp import optim
from fastmlp.backends.base import Backend
from fastmlp.backends.numpy_backend import NumpyBackend

try:
    from fastmlp.backends.numba_backend import NumbaBackend
except ImportError:  # numba is optional (extra "jit")
    NumbaBackend = None

from fastmlp.optim.optimizer import ParamGroup, flush_threshold
from tests.kernel_cases import KERNEL_CASES, arrays_of, copied, custom, defaults, kernel_arguments

FUSED_BACKENDS = [NumpyBackend] + ([NumbaBackend] if NumbaBackend is not None else [])

OPTIMIZERS = optim.names()
CLASSIC = ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam"]

SETTINGS = [
    pytest.param(name, hp, id=f"{name}-{label}")
    for name in OPTIMIZERS
    for label, hp in (("defaults", defaults(name)), ("custom", custom(name)))
]
STEPS = 30
SIZE = 257


# ------------------------------------------------ the rules, written out in plain NumPy


class ReferenceRule:
    """One optimizer as its formula reads: float64 NumPy, nothing shared with fastmlp."""

    RULES = ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam", "adamw")

    def __init__(self, name, lr, momentum=0.0, beta=0.0, beta1=0.0, beta2=0.0, eps=0.0,
                 weight_decay=0.0, momentum_decay=4e-3):  # fmt: skip
        self.name = name
        self.lr, self.momentum, self.beta = lr, momentum, beta
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = weight_decay
        self.psi = momentum_decay
        self.t = 0
        self.b = self.m = self.v = 0.0
        self.mu_product = 1.0

    def step(self, p, g):
        """Return the next parameters (p and g are float64 arrays; p is not modified)."""
        lr = self.lr
        self.t += 1
        t = self.t
        if self.name == "sgd":
            # p -= lr*g
            return p - lr * g
        if self.name == "momentum":
            # b = momentum*b + g; p -= lr*b
            self.b = self.momentum * self.b + g
            return p - lr * self.b
        if self.name == "nag":
            # b = momentum*b + g; p -= lr*(g + momentum*b)
            self.b = self.momentum * self.b + g
            return p - lr * (g + self.momentum * self.b)
        if self.name == "rmsprop":
            # v = beta*v + (1-beta)*g^2; p -= lr*g/(sqrt(v)+eps)
            self.v = self.beta * self.v + (1 - self.beta) * g**2
            return p - lr * g / (np.sqrt(self.v) + self.eps)
        b1, b2, eps = self.beta1, self.beta2, self.eps
        if self.name == "adamw":
            # p *= 1 - lr*weight_decay (decoupled), then Adam
            p = p * (1 - lr * self.weight_decay)
        # m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g^2
        self.m = b1 * self.m + (1 - b1) * g
        self.v = b2 * self.v + (1 - b2) * g**2
        if self.name in ("adam", "adamw"):
            # p -= (lr/(1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
            return p - (lr / (1 - b1**t)) * self.m / (np.sqrt(self.v) / np.sqrt(1 - b2**t) + eps)
        if self.name == "nadam":
            # mu_t = b1(1 - 0.5*0.96^(t psi)), mu_{t+1} likewise, prod_t = prod mu_i
            mu = b1 * (1 - 0.5 * 0.96 ** (t * self.psi))
            mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * self.psi))
            self.mu_product *= mu
            # denom = sqrt(v/(1-b2^t)) + eps
            denom = np.sqrt(self.v / (1 - b2**t)) + eps
            # p -= lr(1-mu_t)/(1-prod_t) g/denom + lr mu_{t+1}/(1-prod_t mu_{t+1}) m/denom
            return (
                p
                - lr * (1 - mu) / (1 - self.mu_product) * g / denom
                - lr * mu_next / (1 - self.mu_product * mu_next) * self.m / denom
            )
        raise AssertionError(self.name)


def gradient_sequence(rng, steps=STEPS, size=SIZE):
    """Random gradients of varied scale, with some entries exactly zero."""
    grads = []
    for _ in range(steps):
        g = rng.normal(size=size) * 10.0 ** rng.uniform(-3, 1, size=size)
        g[rng.random(size) < 0.1] = 0.0
        grads.append(g)
    return grads


def run_fastmlp(name, hp, p0, grads, dtype="float64"):
    params = p0.astype(dtype)
    optimizer = optim.create(name, **hp)
    trajectory = []
    for g in grads:
        optimizer.step(params, g.astype(dtype))
        trajectory.append(params.copy())
    return trajectory


# ------------------------------------------------------------- (a) the written rules


@pytest.mark.parametrize("name,hp", SETTINGS)
def test_trajectory_matches_the_written_rule_in_float64(name, hp, rng):
    """Every step of a 30-step float64 trajectory equals the optimizer's rule to ~1e-12."""
    if name not in ReferenceRule.RULES:
        pytest.skip(f"no reference rule is written for {name}")
    p0 = rng.normal(size=SIZE)
    grads = gradient_sequence(rng)
    reference = ReferenceRule(name, **hp)
    expected = p0.copy()
    for step, actual in enumerate(run_fastmlp(name, hp, p0, grads), start=1):
        expected = reference.step(expected, grads[step - 1])
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-14, err_msg=f"step {step}")
    # The trajectory really moved: the comparison is not of two unchanged vectors.
    assert np.abs(expected - p0).max() > 1e-3


def test_reference_adam_first_step_moves_each_parameter_by_lr_times_sign():
    """Sanity of the oracle: Adam's bias-corrected first step is lr * g / (|g| + eps)."""
    g = np.array([2.0, -0.5, 0.0])
    p = ReferenceRule("adam", lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8).step(np.zeros(3), g)
    np.testing.assert_allclose(p, -0.1 * g / (np.abs(g) + 1e-8), rtol=1e-12)


# -------------------------------------------------------------- (b) torch.optim


def torch_optimizer(torch, name, hp, parameters):
    """The torch.optim counterpart of a fastmlp optimizer, or None if none is known."""
    lr = hp["lr"]
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(parameters, lr=lr, momentum=hp["momentum"], dampening=0)
    if name == "nag":
        return torch.optim.SGD(
            parameters, lr=lr, momentum=hp["momentum"], dampening=0, nesterov=True
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, alpha=hp["beta"], eps=hp["eps"])
    if name not in ("adam", "nadam", "adamw"):
        return None
    betas = (hp["beta1"], hp["beta2"])
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, betas=betas, eps=hp["eps"])
    if name == "nadam":
        return torch.optim.NAdam(
            parameters, lr=lr, betas=betas, eps=hp["eps"], momentum_decay=hp["momentum_decay"]
        )
    return torch.optim.AdamW(
        parameters, lr=lr, betas=betas, eps=hp["eps"], weight_decay=hp["weight_decay"]
    )


def torch_trajectory(torch, name, hp, p0, grads):
    previous_dtype = torch.get_default_dtype()
    # torch's NAdam keeps mu_product in the default dtype: float64 for a float64 comparison.
    torch.set_default_dtype(torch.float64)
    try:
        parameter = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
        optimizer = torch_optimizer(torch, name, hp, [parameter])
        if optimizer is None:
            pytest.skip(f"no torch.optim counterpart is known for {name}")
        expected = []
        for g in grads:
            parameter.grad = torch.tensor(g, dtype=torch.float64)
            optimizer.step()
            expected.append(parameter.detach().numpy().copy())
    finally:
        torch.set_default_dtype(previous_dtype)
    return expected


@pytest.mark.parametrize("name,hp", SETTINGS)
def test_trajectory_matches_torch_optim_in_float64(name, hp, rng):
    """fastmlp and torch.optim, fed the same 30 gradients, agree to ~1e-12 at every step."""
    torch = pytest.importorskip("torch")
    p0 = rng.normal(size=SIZE)
    grads = gradient_sequence(rng)
    expected = torch_trajectory(torch, name, hp, p0, grads)
    for step, (actual, wanted) in enumerate(zip(run_fastmlp(name, hp, p0, grads), expected), 1):
        np.testing.assert_allclose(actual, wanted, rtol=1e-12, atol=1e-14, err_msg=f"step {step}")


def test_adamw_decays_the_weights_and_not_the_biases_like_torch_param_groups(rng):
    """A model's two parameter groups against torch.optim.AdamW with the same two groups."""
    torch = pytest.importorskip("torch")
    import fastmlp

    model = fastmlp.MLP(input_size=6, hidden_sizes=(5,), output_size=3, dtype="float64", seed=0)
    hp = {**defaults("adamw"), "lr": 0.05, "weight_decay": 0.3}
    optimizer = optim.create("adamw", param_groups=model.param_groups(), **hp)
    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        weights = torch.nn.Parameter(torch.tensor(model.params[: model.num_weights].copy()))
        biases = torch.nn.Parameter(torch.tensor(model.params[model.num_weights :].copy()))
        reference = torch.optim.AdamW(
            [{"params": [weights]}, {"params": [biases], "weight_decay": 0.0}],
            lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
            weight_decay=hp["weight_decay"],
        )  # fmt: skip
        for g in gradient_sequence(rng, steps=20, size=model.num_params):
            optimizer.step(model.params, g)
            weights.grad = torch.tensor(g[: model.num_weights])
            biases.grad = torch.tensor(g[model.num_weights :])
            reference.step()
        expected = np.concatenate([weights.detach().numpy(), biases.detach().numpy()])
    finally:
        torch.set_default_dtype(previous_dtype)
    np.testing.assert_allclose(model.params, expected, rtol=1e-12, atol=1e-14)


def test_adamw_without_groups_decays_everything_and_weight_decay_zero_is_adam(rng):
    p0, grads = rng.normal(size=40), gradient_sequence(rng, steps=5, size=40)
    adam = run_fastmlp("adam", defaults("adam"), p0, grads)[-1]
    adamw_zero = run_fastmlp("adamw", {**defaults("adamw"), "weight_decay": 0.0}, p0, grads)[-1]
    np.testing.assert_array_equal(adamw_zero, adam)
    groups = [ParamGroup(0, 20), ParamGroup(20, 40, {"weight_decay": 0.0})]
    optimizer = optim.create("adamw", param_groups=groups, weight_decay=0.5)
    params = p0.copy()
    for g in grads:
        optimizer.step(params, g)
    decayed_everywhere = run_fastmlp("adamw", {**defaults("adamw"), "weight_decay": 0.5}, p0,
                                     grads)[-1]  # fmt: skip
    np.testing.assert_array_equal(params[:20], decayed_everywhere[:20])
    np.testing.assert_array_equal(params[20:], adam[20:])


class CountingBackend(NumpyBackend):
    """The NumPy backend, counting the optimizer's kernel launches."""

    def __init__(self):
        super().__init__()
        self.launches = 0

    def run_formula_(self, formula, arrays, scalars, row_vectors=()):
        self.launches += 1
        super().run_formula_(formula, arrays, scalars, row_vectors)


@pytest.mark.parametrize("name, launches", [("adam", 1), ("adamw", 2)])
def test_groups_with_the_same_options_are_one_launch_with_the_same_result(name, launches, rng):
    """Adam ignores the biases' weight_decay 0, so weights and biases are one launch; AdamW's
    groups differ, so two. Either way the trajectory is that of the groups one by one."""
    p0, grads = rng.normal(size=40), gradient_sequence(rng, steps=6, size=40)
    groups = [ParamGroup(0, 12), ParamGroup(12, 30), ParamGroup(30, 40, {"weight_decay": 0.0})]
    backend = CountingBackend()
    optimizer = optim.create(name, param_groups=groups, weight_decay=0.1)
    params = p0.copy()
    for g in grads:
        optimizer.step(params, g, backend)
    assert backend.launches == launches * len(grads)
    expected = p0.copy()
    for start, stop, options in [(0, 12, {}), (12, 30, {}), (30, 40, {"weight_decay": 0.0})]:
        alone = optim.create(name, **{"weight_decay": 0.1, **options})
        for g in grads:
            alone.step(expected[start:stop], g[start:stop].copy())
    np.testing.assert_array_equal(params, expected)


# ------------------------------------ (c) fused kernels == base reference kernels


def test_kernel_cases_cover_every_in_place_kernel_of_the_backend():
    """Every public ``*_`` method of Backend has a case in the fused-vs-reference test."""
    kernels = {
        name
        for name, member in inspect.getmembers(Backend, inspect.isfunction)
        if name.endswith("_") and not name.startswith("_")
    }
    covered = {kernel for kernel, _ in KERNEL_CASES} - {"bias_activation_keep"}
    assert kernels == covered


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "kernel,case", KERNEL_CASES, ids=[k + (f"-{c}" if c else "") for k, c in KERNEL_CASES]
)
@pytest.mark.parametrize("backend_class", FUSED_BACKENDS, ids=lambda cls: cls.name)
def test_fused_kernel_equals_base_reference_kernel(backend_class, kernel, case, dtype):
    """Each fused CPU kernel leaves every array as the base reference body does: bit for
    bit where no transcendental function is involved, else to float rounding."""
    fused, reference = backend_class(), Backend()
    args = kernel_arguments(kernel, case, np.random.default_rng(7), dtype)
    method = "bias_activation_" if kernel == "bias_activation_keep" else kernel
    fused_args, reference_args = copied(args, fused), copied(args, reference)
    with np.errstate(over="ignore", under="ignore"):
        # Twice: the second call reuses the fused kernel's scratch buffers.
        for _ in range(2):
            fused_result = getattr(fused, method)(*fused_args)
            reference_result = getattr(reference, method)(*reference_args)
    rtol, atol = (1e-5, 1e-6) if dtype == "float32" else (1e-12, 1e-14)
    if kernel in ("flush_subnormals_", "gather_", "uniform_"):
        rtol = atol = 0.0  # no arithmetic: exact
    originals = list(arrays_of(args))
    for position, (actual, expected) in enumerate(
        zip(arrays_of(fused_args), arrays_of(reference_args))
    ):
        assert actual.dtype == expected.dtype == originals[position].dtype, "updated in place"
        np.testing.assert_allclose(
            actual, expected, rtol=rtol, atol=atol, err_msg=f"array {position}"
        )
    if reference_result is None:
        assert fused_result is None
    else:
        assert isinstance(fused_result, np.ndarray) and fused_result.ndim == 0
        assert fused_result.dtype == np.dtype(dtype)
        np.testing.assert_allclose(fused_result, reference_result, rtol=rtol, atol=atol)


def _formula_call(kernel, args):
    """(formula, arrays, scalars, row vectors) of a kernel case that runs a formula."""
    from fastmlp.backends.base import backward_kernel, forward_kernel

    if kernel == "run_formula_":
        formula, arrays, scalars = args
        return formula, list(arrays), scalars, ()
    if kernel.startswith("bias_activation_"):
        z, bias, function, out = args
        formula = forward_kernel(function.declaration, out is not None)
        arrays = [z, bias] if out is None else [z, bias, out]
        return formula, arrays, function.scalars, ("b",)
    delta, x, function = args
    return backward_kernel(function.declaration), [delta, x], function.scalars, ()


FORMULA_KERNELS = ("run_formula_", "bias_activation_", "activation_grad_")
FORMULA_CASES = [
    (k, c)
    for k, c in KERNEL_CASES
    if k.startswith(FORMULA_KERNELS) and k != "run_formula_per_model_"
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel,case", FORMULA_CASES, ids=[f"{k}-{c}" for k, c in FORMULA_CASES])
@pytest.mark.parametrize("backend_class", FUSED_BACKENDS, ids=lambda cls: cls.name)
def test_bound_kernels_equal_the_reference(backend_class, kernel, case, dtype):
    """``bind_formula`` (what layers call per batch) computes what ``run_formula_`` of the
    reference does, called twice with the same bound kernel."""
    args = kernel_arguments(kernel, case, np.random.default_rng(11), dtype)
    formula, arrays, scalars, row_vectors = _formula_call(kernel, args)
    fused_arrays = [a.copy() for a in arrays]
    bound = backend_class().bind_formula(formula, scalars, dtype, arrays[0].ndim, row_vectors)
    reference = Backend()
    with np.errstate(over="ignore", under="ignore"):
        for _ in range(2):
            bound(*fused_arrays)
            reference.run_formula_(formula, arrays, scalars, row_vectors)
    rtol, atol = (1e-5, 1e-6) if dtype == "float32" else (1e-12, 1e-14)
    for position, (actual, expected) in enumerate(zip(fused_arrays, arrays)):
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=str(position))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend_class", FUSED_BACKENDS, ids=lambda cls: cls.name)
def test_algebraic_formulas_are_bit_identical_on_every_cpu_backend(backend_class, dtype):
    """Formulas without exp/tanh/erf (the updates, relu, leaky_relu, the gradients written
    through the output) give the reference's bits exactly: same operations, same order."""
    from fastmlp.nn.activations import ACTIVATIONS

    cases = [("run_formula_", name) for name in OPTIMIZERS]
    for name in ACTIVATIONS.names():
        declaration = ACTIVATIONS.get(name)
        if declaration.forward_formula.exact:
            cases.append(("bias_activation_", name))
        if declaration.backward_formula.exact:
            cases.append(("activation_grad_", name))
    for kernel, case in cases:
        args = kernel_arguments(kernel, case, np.random.default_rng(3), dtype)
        fused_args, reference_args = copied(args, None), copied(args, None)
        getattr(backend_class(), kernel)(*fused_args)
        getattr(Backend(), kernel)(*reference_args)
        for actual, expected in zip(arrays_of(fused_args), arrays_of(reference_args)):
            np.testing.assert_array_equal(actual, expected, err_msg=f"{kernel} {case}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_kernels_accept_a_new_shape_after_reusing_scratch(dtype):
    """Scratch buffers are per shape: the same kernel works on buffers of another size."""
    fused, reference = NumpyBackend(), Backend()
    rng = np.random.default_rng(3)
    adam = optim.create("adam", lr=0.01)
    adam.steps = 2
    scalars = adam.scalars(adam.hyperparameter_values())
    for n in (10, 1000, 10):
        arrays = [rng.normal(size=n).astype(dtype) for _ in range(4)]
        arrays[3] = np.abs(arrays[3])
        copies = [a.copy() for a in arrays]
        fused.run_formula_(adam.formula, arrays, scalars)
        reference.run_formula_(adam.formula, copies, scalars)
        np.testing.assert_array_equal(arrays[0], copies[0])


# ------------------------------------------------------------------- (d) create()

CLASSES = {
    "sgd": optim.SGD,
    "momentum": optim.Momentum,
    "nag": optim.NAG,
    "rmsprop": optim.RMSProp,
    "adam": optim.Adam,
    "nadam": optim.Nadam,
    "adamw": optim.AdamW,
}


@pytest.mark.parametrize(
    "name,cls",
    [(n, c) for n, c in CLASSES.items()]
    + [
        ("nesterov", optim.NAG),
        ("NESTEROV", optim.NAG),
        ("Adam", optim.Adam),
        (" RMSProp ", optim.RMSProp),
    ],
)
def test_create_builds_the_class_by_name_or_alias_in_any_case(name, cls):
    assert type(optim.create(name)) is cls


def test_names_lists_the_seven_optimizers_in_the_classic_order():
    assert optim.names()[:7] == [*CLASSIC, "adamw"]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_create_ignores_shared_hyperparameters_the_optimizer_does_not_use(name):
    """The CLI passes every shared hyperparameter to every optimizer: unused ones are ignored."""
    shared = {"lr": 0.03, "momentum": 0.6, "beta": 0.7, "beta1": 0.8, "beta2": 0.95, "eps": 1e-5}
    optimizer = optim.create(name, **shared)
    accepted = optimizer.hyperparameter_values()
    for key, value in accepted.items():
        if key in shared:
            assert value == shared[key], key
    assert accepted["lr"] == 0.03


def test_create_treats_none_as_the_default():
    assert (
        optim.create("adam", lr=None, beta1=None).hyperparameter_values()
        == optim.Adam().hyperparameter_values()
    )


def test_create_rejects_an_unknown_name_listing_the_known_ones():
    with pytest.raises(ValueError, match="adagrad") as error:
        optim.create("adagrad")
    for name in OPTIMIZERS:
        assert name in str(error.value)


def test_create_rejects_a_keyword_no_optimizer_takes():
    with pytest.raises(TypeError, match="weight_decy"):
        optim.create("adam", weight_decy=0.1)


BAD_VALUES = (
    [(name, {"lr": -0.1}, "lr must be >= 0") for name in OPTIMIZERS]
    + [(name, {"lr": float("nan")}, "lr must be >= 0") for name in OPTIMIZERS]
    + [(name, {"momentum": 1.0}, "momentum") for name in ("momentum", "nag")]
    + [(name, {"momentum": -0.1}, "momentum") for name in ("momentum", "nag")]
    + [("rmsprop", {"beta": 1.0}, "beta"), ("rmsprop", {"beta": 1.5}, "beta")]
    + [(name, {"beta1": 1.0}, "beta1") for name in ("adam", "nadam", "adamw")]
    + [(name, {"beta2": 1.0}, "beta2") for name in ("adam", "nadam", "adamw")]
    + [(name, {"eps": 0.0}, "eps") for name in ("rmsprop", "adam", "nadam", "adamw")]
    + [(name, {"eps": -1e-8}, "eps") for name in ("rmsprop", "adam", "nadam", "adamw")]
    + [
        ("adamw", {"weight_decay": -1.0}, "weight_decay"),
        ("nadam", {"momentum_decay": -1}, "momentum_decay"),
    ]
)


@pytest.mark.parametrize(
    "name,hp,mentions", BAD_VALUES, ids=[f"{n}-{hp}" for n, hp, _ in BAD_VALUES]
)
def test_bad_hyperparameter_values_raise_a_value_error_naming_them(name, hp, mentions):
    with pytest.raises(ValueError, match=mentions) as error:
        optim.create(name, **hp)
    (value,) = hp.values()
    assert str(value) in str(error.value), "the message shows the rejected value"


def test_step_rejects_params_and_grads_of_different_shapes():
    with pytest.raises(ValueError, match="shape"):
        optim.create("sgd").step(np.zeros(4), np.zeros(5))


def test_load_state_dict_rejects_another_optimizers_state():
    adam = optim.create("adam")
    adam.step(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="adam"):
        optim.create("nadam").load_state_dict(adam.state_dict())


# --------------------------------------------------------------- (e) state round trip


@pytest.mark.parametrize("name,hp", SETTINGS)
def test_state_dict_round_trip_resumes_the_identical_trajectory(name, hp, rng):
    """10 steps, save, 10 more == restore the saved state into a fresh optimizer, same 10."""
    grads = gradient_sequence(rng, steps=20, size=64)
    params = rng.normal(size=64)
    optimizer = optim.create(name, **hp)
    for g in grads[:10]:
        optimizer.step(params, g)
    saved_params, saved_state = params.copy(), optimizer.state_dict()
    for g in grads[10:]:
        optimizer.step(params, g)

    resumed = optim.create(name)  # default hyperparameters: the state brings its own
    resumed.load_state_dict(saved_state)
    resumed_params = saved_params.copy()
    for g in grads[10:]:
        resumed.step(resumed_params, g)
    np.testing.assert_array_equal(resumed_params, params)
    assert resumed.steps == optimizer.steps == 20
    assert resumed.hyperparameter_values() == optimizer.hyperparameter_values()


def test_state_dict_is_a_snapshot_not_a_live_view(rng):
    optimizer = optim.create("adam")
    params = rng.normal(size=8)
    optimizer.step(params, rng.normal(size=8))
    state = optimizer.state_dict()
    m = state["buffers"]["m"].copy()
    optimizer.step(params, rng.normal(size=8))
    np.testing.assert_array_equal(state["buffers"]["m"], m)
    assert state["steps"] == 1


# ------------------------------------------------------------ (f) subnormal flush

FLUSH_SETTINGS = {
    # Small decay rates keep the walk from ~1 down past the float32 normal range short;
    # the default Adam betas are covered at the threshold boundary below.
    "momentum": {"lr": 0.01, "momentum": 0.8},
    "nag": {"lr": 0.01, "momentum": 0.8},
    "rmsprop": {"lr": 0.01, "beta": 0.8, "eps": 1e-8},
    "adam": {"lr": 1e-3, "beta1": 0.7, "beta2": 0.8, "eps": 1e-8},
    "nadam": {"lr": 1e-3, "beta1": 0.7, "beta2": 0.8, "eps": 1e-8},
}
# Periods: momentum 0.8 -> 80 steps, so 600 steps hold several flushes for every setting.


def subnormal_count(x):
    return int(np.count_nonzero((x != 0) & (np.abs(x) < np.finfo(x.dtype).tiny)))


def run_with_and_without_flush(name, gradients, p0, on_step=None):
    """The optimizer (which flushes) and a twin whose flush is switched off."""
    hp = FLUSH_SETTINGS[name]
    optimizer = optim.create(name, **hp)
    plain = optim.create(name, **hp)
    plain._flush_subnormals = lambda *args: None
    params, plain_params = p0.copy(), p0.copy()
    plain_subnormals = 0
    for step, g in enumerate(gradients, start=1):
        optimizer.step(params, g)
        plain.step(plain_params, g)
        if on_step is not None:
            on_step(step, optimizer)
        plain_subnormals += sum(subnormal_count(b) for b in plain.state.values())
    return optimizer, params, plain.state, plain_params, plain_subnormals


def dying_gradients(rng, n, steps, smallest_exponent):
    """float32 gradients: the first half of the entries gets gradients up to a random step
    (of magnitudes 10^[smallest_exponent, 1]) and zero after it; the second half always."""
    last_step = rng.integers(1, 60, size=n)
    last_step[n // 2 :] = steps
    scale = 10.0 ** rng.uniform(smallest_exponent, 1, size=n)
    for step in range(1, steps + 1):
        g = rng.normal(size=n) * scale
        g[step > last_step] = 0.0
        yield g.astype(np.float32)


def assert_flush_only_removed_tiny_state(optimizer, params, plain_state, plain_params):
    """Flushed and unflushed runs differ only where the unflushed state is below the
    threshold, and their parameters by at most 1e-24 per element."""
    for key, buffer in optimizer.state.items():
        differs = buffer != plain_state[key]
        assert np.all(np.abs(plain_state[key][differs]) < flush_threshold(np.float32)), key
    np.testing.assert_allclose(params, plain_params, rtol=0, atol=1e-24)


@pytest.mark.parametrize("name", list(FLUSH_SETTINGS))
def test_flush_keeps_decaying_float32_state_normal_at_every_step(name):
    """State entries whose gradients stop decay to exactly 0 without ever being subnormal."""
    rng = np.random.default_rng(11)
    n, steps = 512, 600
    p0 = rng.normal(size=n).astype(np.float32)
    p0[: n // 8] = 0.0  # parameters at 0 show even the tiniest update

    def no_subnormal_state(step, optimizer):
        for key, buffer in optimizer.state.items():
            assert subnormal_count(buffer) == 0, f"subnormal in state {key!r} after step {step}"

    # Gradients >= ~1e-6 put every state entry above the flush threshold when it last moves.
    gradients = dying_gradients(rng, n, steps, smallest_exponent=-6)
    optimizer, params, plain_state, plain_params, plain_subnormals = run_with_and_without_flush(
        name, gradients, p0, on_step=no_subnormal_state
    )
    assert plain_subnormals > 0, "without the flush this run does produce subnormals"
    for key, buffer in optimizer.state.items():
        assert np.all(buffer[: n // 2] == 0), f"decayed {key!r} entries end exactly at zero"
    assert_flush_only_removed_tiny_state(optimizer, params, plain_state, plain_params)


@pytest.mark.parametrize("name", list(FLUSH_SETTINGS))
def test_flush_leaves_no_subnormal_state_after_many_steps_even_from_tiny_gradients(name):
    """Gradients down to 1e-17 start some state below the threshold; a few flush periods
    later the state holds no subnormal and the decayed entries are exactly 0."""
    rng = np.random.default_rng(12)
    n, steps = 512, 600
    p0 = rng.normal(size=n).astype(np.float32)
    p0[: n // 8] = 0.0
    gradients = dying_gradients(rng, n, steps, smallest_exponent=-17)
    optimizer, params, plain_state, plain_params, plain_subnormals = run_with_and_without_flush(
        name, gradients, p0
    )
    assert plain_subnormals > 0
    for key, buffer in optimizer.state.items():
        assert subnormal_count(buffer) == 0, key
        assert np.all(buffer[: n // 2] == 0), key
    assert_flush_only_removed_tiny_state(optimizer, params, plain_state, plain_params)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_flush_zeroes_exactly_the_entries_below_the_threshold(dtype):
    threshold = flush_threshold(dtype)
    tiny = float(np.finfo(dtype).tiny)
    assert tiny < threshold < 1e-30 if dtype == "float32" else tiny < threshold < 1e-290
    x = np.array([tiny / 4, -threshold / 2, threshold, -threshold * 3, 1.0, 0.0], dtype=dtype)
    NumpyBackend().flush_subnormals_(x, threshold)
    np.testing.assert_array_equal(x, np.array([0, 0, threshold, -threshold * 3, 1, 0], dtype=dtype))


@pytest.mark.parametrize("name", ["sgd", "adam", "nadam"])
def test_parameters_decayed_below_the_threshold_are_zeroed_every_flush_period(name):
    """Under a strong L2 weight decay whole layers decay geometrically into subnormal floats
    (x86 computes with those ~100x slower): every PARAMETER_FLUSH_PERIOD steps the
    parameters below the flush threshold become exactly 0; the others are untouched by it."""
    from fastmlp.optim.optimizer import PARAMETER_FLUSH_PERIOD

    threshold = flush_threshold(np.float32)
    params = np.array([threshold / 8, -float(np.finfo(np.float32).tiny) / 4, 1.0, -0.5, 0.0])
    params = params.astype(np.float32)
    zeros = np.zeros_like(params)
    optimizer = optim.create(name, lr=1e-3)
    for _ in range(PARAMETER_FLUSH_PERIOD - 1):
        optimizer.step(params, zeros)
    assert params[0] != 0 and params[1] != 0, "not before the period ends"
    optimizer.step(params, zeros)
    np.testing.assert_array_equal(params, np.array([0, 0, 1.0, -0.5, 0], dtype=np.float32))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adam", "nadam"])
def test_flush_keeps_state_normal_with_default_betas(name):
    """Default betas (0.9, 0.999): state walking from 1e-29 to 0 never holds a subnormal."""
    optimizer = optim.create(name)
    n = 16
    params = np.ones(n, dtype=np.float32)
    optimizer.step(
        params, np.full(n, 1e-13, dtype=np.float32) * np.arange(1, n + 1, dtype=np.float32)
    )
    zeros = np.zeros(n, dtype=np.float32)
    check_every = 7
    for step in range(2, 45_000):
        optimizer.step(params, zeros)
        if step % check_every == 0:
            for key, buffer in optimizer.state.items():
                assert subnormal_count(buffer) == 0, f"{key} at step {step}"
    assert all(np.all(buffer == 0) for buffer in optimizer.state.values())
    assert np.isfinite(params).all()
