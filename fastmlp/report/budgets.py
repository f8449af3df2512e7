"""How much ``fastmlp report`` trains: the budgets quick, standard and full.

A :class:`Budget` fixes every run of the report: the sweep (the classic assignment's search
space, with fewer epochs and trials in the smaller budgets), the optimizer comparison of Q3,
the cross-entropy against squared-error comparison of Q8 and the MNIST runs of Q10. The
three named budgets are entries of ``BUDGETS``; Python callers (and the tests) may pass a
``Budget`` of their own to :func:`fastmlp.report.make_report`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from fastmlp.registry import Registry

# The optimizers Q3 compares (the assignment's six).
COMPARED_OPTIMIZERS = ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam")

# How many Fashion-MNIST configurations Q10 trains on MNIST.
MNIST_CONFIGS = 3

# The classic assignment's search space (Q4): what ``sweeps/classic.yaml`` sweeps too
# (tests/test_report.py keeps the two equal).
CLASSIC_PARAMETERS: dict[str, Any] = {
    "dataset": {"value": "fashion_mnist"},
    "val_fraction": {"value": 0.1},
    "epochs": {"values": [5, 10]},
    "num_layers": {"values": [3, 4, 5]},
    "hidden_size": {"values": [32, 64, 128]},
    "weight_decay": {"values": [0, 0.0005, 0.5]},
    "learning_rate": {"values": [1.0e-3, 1.0e-4]},
    "optimizer": {"values": list(COMPARED_OPTIMIZERS)},
    "batch_size": {"values": [16, 32, 64]},
    "weight_init": {"values": ["random", "Xavier"]},
    "activation": {"values": ["sigmoid", "tanh", "ReLU"]},
}

# Hyperband as the classic sweep runs it: the weakest two thirds stop after epoch 2 and 6.
CLASSIC_HYPERBAND: dict[str, Any] = {"type": "hyperband", "min_iter": 2, "eta": 3}


@dataclass(frozen=True)
class Budget:
    """Everything a report trains.

    name:            the budget's name; the report's sweep and W&B group are ``report-NAME``.
    summary:         one line for the plan and the page.
    sweep_trials:    the sweep's total number of trials (Q4-Q6).
    sweep_method:    ``random`` or ``bayes`` (W&B sweep methods).
    sweep_epochs:    the values of the sweep's ``epochs`` parameter.
    hyperband:       the sweep's ``early_terminate`` block, or None for none.
    compare_epochs:  epochs of each optimizer in the comparison of Q3.
    loss_configs:    how many of the sweep's best configurations Q8 trains with both losses,
    loss_seeds:      with this many seeds each,
    loss_epochs:     for this many epochs.
    mnist_epochs:    epochs of each of the three MNIST runs of Q10.
    """

    name: str
    summary: str
    sweep_trials: int
    sweep_method: str
    sweep_epochs: tuple[int, ...]
    hyperband: dict[str, Any] | None
    compare_epochs: int
    loss_configs: int
    loss_seeds: int
    loss_epochs: int
    mnist_epochs: int
    notes: tuple[str, ...] = field(default=())

    @property
    def sweep_name(self) -> str:
        return f"report-{self.name}"

    def sweep_config(self) -> dict[str, Any]:
        """The sweep, in W&B sweep-config form (what ``fastmlp sweep`` reads)."""
        parameters = copy.deepcopy(CLASSIC_PARAMETERS)
        parameters["epochs"] = {"values": list(self.sweep_epochs)}
        config: dict[str, Any] = {
            "name": self.sweep_name,
            "method": self.sweep_method,
            "metric": {"name": "val_accuracy", "goal": "maximize"},
            "run_cap": self.sweep_trials,
            "parameters": parameters,
        }
        if self.hyperband is not None:
            config["early_terminate"] = dict(self.hyperband)
        return config

    def training_epochs(self) -> dict[str, int]:
        """Epochs each step trains at most (the sweep's: every trial to its end), by step."""
        mean_sweep_epochs = sum(self.sweep_epochs) / len(self.sweep_epochs)
        return {
            "sweep": round(self.sweep_trials * mean_sweep_epochs),
            "optimizers": len(COMPARED_OPTIMIZERS) * self.compare_epochs,
            "losses": self.loss_configs * 2 * self.loss_seeds * self.loss_epochs,
            "mnist": MNIST_CONFIGS * self.mnist_epochs,
        }

    def runs(self) -> dict[str, int]:
        """How many runs each step makes."""
        return {
            "sweep": self.sweep_trials,
            "optimizers": len(COMPARED_OPTIMIZERS),
            "losses": self.loss_configs * 2 * self.loss_seeds,
            "mnist": MNIST_CONFIGS,
        }


BUDGETS: Registry[Budget] = Registry("report budget")
for _budget in (
    Budget(
        name="quick",
        summary="a small random sweep of 2- and 3-epoch trials and 5-epoch comparisons "
        "(2-3 minutes on a 2-core CPU): it shows how the report is made, not what the "
        "network can do",
        sweep_trials=40,
        sweep_method="random",
        sweep_epochs=(2, 3),
        hyperband=None,
        compare_epochs=5,
        loss_configs=2,
        loss_seeds=2,
        loss_epochs=5,
        mnist_epochs=5,
        notes=(
            "quick budget: 40 trials of 2-3 epochs each, so every accuracy here is below what "
            "the same settings reach with the classic 5-10 epochs; run --budget standard for "
            "numbers to hand in",
        ),
    ),
    Budget(
        name="standard",
        summary="the classic search space, 200 Bayesian trials with Hyperband, 15-epoch "
        "comparisons over 3 seeds (about 15 minutes on a 2-core CPU)",
        sweep_trials=200,
        sweep_method="bayes",
        sweep_epochs=(5, 10),
        hyperband=CLASSIC_HYPERBAND,
        compare_epochs=15,
        loss_configs=3,
        loss_seeds=3,
        loss_epochs=15,
        mnist_epochs=15,
    ),
    Budget(
        name="full",
        summary="the classic sweep's size without early stopping: 300 Bayesian trials each "
        "to its last epoch, 20-epoch comparisons over 5 seeds (hours on a 2-core CPU)",
        sweep_trials=300,
        sweep_method="bayes",
        sweep_epochs=(5, 10),
        hyperband=None,
        compare_epochs=20,
        loss_configs=3,
        loss_seeds=5,
        loss_epochs=20,
        mnist_epochs=20,
    ),
):
    BUDGETS.register(_budget.name, _budget)
