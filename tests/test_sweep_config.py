"""Sweep configs as their authors wrote them: real configs, the name tables, every W&B
distribution with W&B's meaning, hyperband, command flags, YAML traps and --dry_run."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("yaml")

from fastmlp.cli import main  # noqa: E402
from fastmlp.runs.config import normalize_config, settings  # noqa: E402
from fastmlp.sweep import SweepConfigError, parse_sweep_config, read_sweep_config  # noqa: E402
from fastmlp.sweep.aliases import (  # noqa: E402
    METRIC_ALIASES,
    PARAMETER_ALIASES,
    parameter_names,
    resolve_metric,
    resolve_parameter,
)
from fastmlp.sweep.command import parse_command  # noqa: E402
from fastmlp.sweep.distributions import quantise  # noqa: E402
from fastmlp.sweep.dry_run import describe  # noqa: E402
from fastmlp.sweep.local import make_pruner  # noqa: E402
from fastmlp.sweep.quantiles import beta_quantile, normal_quantile  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
CONFIGS = Path(__file__).resolve().parent / "sweep_configs"
HEAD = {"method": "random", "metric": {"name": "val_accuracy", "goal": "maximize"}}


def config_of(method="random", **parameters):
    return parse_sweep_config({**HEAD, "method": method, "parameters": parameters})


def samples(config, count, sampler=None):
    """``count`` trials' settings, sampled by Optuna (random search unless ``sampler``)."""
    study = optuna.create_study(sampler=sampler or optuna.samplers.RandomSampler(seed=0))
    return [config.settings(study.ask(config.distributions()).params) for _ in range(count)]


# --- real configs -----------------------------------------------------------------------------

# file -> (--param_map entries, metric, goal, swept settings, constants), as each author meant.
REAL_CONFIGS = {
    "necto_nn.yaml": ((), "val_accuracy", "maximize", {"num_layers", "hidden_size", "loss"},
                      {"wandb_entity": "fastmlp-team", "wandb_project": "fastmlp-fixtures"}),
    "aaradhya_dashore.yaml": ((), "val_accuracy", "maximize", {"epochs", "loss"},
                              {"dataset": "mnist", "num_layers": 3, "hidden_size": [96, 64, 32],
                               "wandb_project": "fastmlp-sweep-fixtures"}),
    "aastha7231.yaml": (("alpha=weight_decay",), "val_accuracy", "maximize",
                        {"num_layers", "hidden_size", "learning_rate", "weight_decay",
                         "activation"}, {}),
    "shreyadhondi_bayes.yaml": ((), "val_accuracy", "maximize", {"learning_rate", "num_layers"},
                                {"wandb_entity": "fastmlp-team",
                                 "wandb_project": "fastmlp-bayes-fixture"}),
    "shreyadhondi_random.yaml": ((), "val_accuracy", "maximize",
                                 {"learning_rate", "weight_decay"}, {}),
    "bullseye268.yaml": ((), "val_accuracy", "maximize", {"num_layers", "optimizer"}, {}),
    "bl1010.yaml": ((), "val_accuracy", "maximize", {"loss", "num_layers"}, {}),
    "kritika_gahlawat.yaml": ((), "val_accuracy", "maximize",
                              {"num_layers", "hidden_size", "weight_init", "activation", "seed"},
                              {"val_fraction": 0.15}),
    "pankuu21.yaml": ((), "val_accuracy", "maximize", {"optimizer", "epochs"}, {}),
    "parasmukati.yaml": ((), "val_accuracy", "maximize", {"learning_rate", "activation"}, {}),
    "singara_harendra.yaml": ((), "val_accuracy", "maximize", {"optimizer"},
                              {"epochs": 7, "loss": "mean_squared_error", "dataset": "mnist",
                               "wandb_project": "fastmlp-constants"}),
    "rudra_iitm_phd.yaml": ((), "val_accuracy", "maximize",
                            {"hidden_size", "momentum", "beta1", "beta2", "weight_decay"}, {}),
    "neha_irongirl.yaml": ((), "val_accuracy", "maximize", {"num_layers", "learning_rate"}, {}),
    "vinyk.yaml": ((), "val_loss", "minimize", {"num_layers"}, {}),
    "wandb_docs_sweepdemo.yaml": ((), "val_loss", "minimize", {"learning_rate", "optimizer"}, {}),
}  # fmt: skip


def test_every_collected_config_has_its_expectations():
    assert sorted(path.name for path in CONFIGS.glob("*.yaml")) == sorted(REAL_CONFIGS)
    assert len(REAL_CONFIGS) >= 8


@pytest.mark.parametrize("name", sorted(REAL_CONFIGS))
def test_real_configs_parse_as_their_authors_meant_and_make_valid_trials(name):
    param_map, metric, goal, swept, constants = REAL_CONFIGS[name]
    text = (CONFIGS / name).read_text()
    (header, *_) = text.splitlines()
    assert header.startswith("# Exercises the features of the sweep config in "), "its source"
    config = read_sweep_config(CONFIGS / name, param_map=list(param_map))
    assert (config.metric, config.goal) == (metric, goal)
    assert swept <= set(config.parameters), set(config.parameters)
    for setting, value in constants.items():
        assert config.constants[setting] == value, setting
    if config.method == "grid":
        first = {name: values[0] for name, values in config.grid().items()}
        trials = [config.settings(first)]
    else:
        trials = samples(config, 5)
    for trial in trials:
        normalize_config(trial)  # every sampled trial is a valid run


def test_a_real_config_that_needs_a_param_map_says_how():
    with pytest.raises(SweepConfigError, match=r"'alpha'.*--param_map alpha=SETTING"):
        read_sweep_config(CONFIGS / "aastha7231.yaml")


def test_list_valued_hidden_sizes_give_the_number_of_layers():
    config = read_sweep_config(CONFIGS / "rudra_iitm_phd.yaml")
    assert config.layers_from_sizes and "length of each hidden_size list" in config.layers_note
    for trial in samples(config, 30):
        sizes = trial["hidden_size"]
        assert trial["num_layers"] == len(sizes)
        assert normalize_config(trial)["hidden_size"] == sizes


# --- names ------------------------------------------------------------------------------------


def test_every_flag_of_every_setting_is_a_parameter_name():
    for name, setting in settings().items():
        assert resolve_parameter((name,)) == name
        for flag in setting.flags:
            assert resolve_parameter((flag,)) == name
            assert resolve_parameter((flag.lstrip("-"),)) == name
    for name, aliases in PARAMETER_ALIASES.items():
        for alias in aliases:
            assert resolve_parameter((alias,)) == name, alias
    assert len(parameter_names()) > len(settings())


@pytest.mark.parametrize(
    "written, setting",
    [
        ("-nhl", "num_layers"), ("num_layers", "num_layers"), ("--num-layers", "num_layers"),
        ("num_hidden_layers", "num_layers"), ("hidden_layers", "num_layers"),
        ("n_hidden_layers", "num_layers"), ("-sz", "hidden_size"),
        ("hidden_layer_size", "hidden_size"), ("size_hidden_layer", "hidden_size"),
        ("n_epoch", "epochs"), ("num_epochs", "epochs"), ("epoch", "epochs"), ("-e", "epochs"),
        ("lr", "learning_rate"), ("-lr", "learning_rate"), ("eta", "learning_rate"),
        ("wd", "weight_decay"), ("w_d", "weight_decay"), ("-w_d", "weight_decay"),
        ("bs", "batch_size"), ("batch", "batch_size"), ("-b", "batch_size"),
        ("opt", "optimizer"), ("-o", "optimizer"), ("activation_function", "activation"),
        ("act", "activation"), ("-a", "activation"), ("weight_init", "weight_init"),
        ("init", "weight_init"), ("w_i", "weight_init"), ("loss_function", "loss"),
        ("Learning_Rate ", "learning_rate"), ("-we", "wandb_entity"), ("entity", "wandb_entity"),
    ],
)  # fmt: skip
def test_parameter_names_of_the_assignment_and_of_real_configs(written, setting):
    assert resolve_parameter((written,)) == setting


def test_nested_and_dotted_names_resolve_by_their_last_part():
    assert resolve_parameter(("optimizer", "lr")) == "learning_rate"
    assert resolve_parameter(("optimizer", "name")) == "optimizer"
    assert resolve_parameter(("hyperparams", "batch_size")) == "batch_size"
    config = config_of(
        optimizer={"parameters": {"name": {"values": ["adam", "nadam"]},
                                  "learning_rate": {"values": [0.01, 0.001]},
                                  "momentum": {"value": 0.9}}},
        **{"hyperparams.bs": {"values": [16, 32]}},
    )  # fmt: skip
    assert set(config.parameters) == {"optimizer", "learning_rate", "batch_size"}
    assert config.constants == {"momentum": 0.9}
    assert config.parameters["learning_rate"].source == "optimizer.learning_rate"
    chosen = {"optimizer": {"name": "nadam", "learning_rate": 0.01, "momentum": 0.9},
              "hyperparams.bs": 32}  # fmt: skip
    assert config.wandb_settings(chosen) == {
        "momentum": 0.9, "optimizer": "nadam", "learning_rate": 0.01, "batch_size": 32
    }  # fmt: skip


def test_an_unknown_name_is_one_error_with_the_close_matches():
    with pytest.raises(SweepConfigError) as caught:
        config_of(hidden_layer_sizez={"values": [64]})
    message = str(caught.value)
    assert "'hidden_layer_sizez' is not a fastmlp setting" in message
    assert "hidden_layer_size (hidden_size)" in message and "\n" not in message


def test_param_map_maps_or_drops_any_name_and_is_kept_with_the_sweep():
    raw = {**HEAD, "parameters": {"alpha": {"values": [0, 0.5]}, "use_wandb": {"value": True}}}
    config = parse_sweep_config(raw, param_map=["alpha=weight_decay", "use_wandb="])
    assert set(config.parameters) == {"weight_decay"} and config.constants == {}
    assert config.raw["param_map"] == {"alpha": "weight_decay", "use_wandb": ""}
    assert "param_map" not in config.wandb_config()
    again = parse_sweep_config(config.raw)  # the report reads the stored config back
    assert set(again.parameters) == {"weight_decay"}
    assert config.wandb_settings({"alpha": 0.5, "use_wandb": True}) == {"weight_decay": 0.5}


@pytest.mark.parametrize(
    "entries, message",
    [
        (["alpha"], "takes OLD=NEW"),
        (["alpha=wieght_decay"], "'wieght_decay' is not a fastmlp setting"),
        (["alpha=weight_decay", "beta=momentum"], "no parameter or command flag 'beta'"),
    ],
)
def test_bad_param_map_entries_are_one_line_errors(entries, message):
    with pytest.raises(SweepConfigError, match=message):
        parse_sweep_config({**HEAD, "parameters": {"alpha": {"values": [0]}}}, param_map=entries)


def test_two_names_for_one_setting_are_refused():
    with pytest.raises(SweepConfigError, match="'n_epoch' and 'epochs' both set epochs"):
        config_of(n_epoch={"value": 2}, epochs={"value": 3})


@pytest.mark.parametrize(
    "written, metric",
    [(alias, metric) for metric, aliases in METRIC_ALIASES.items() for alias in aliases]
    + [("Accuracy", "val_accuracy"), ("val/accuracy", "val_accuracy"), ("val.acc", "val_accuracy"),
       ("validation/loss", "val_loss"), ("VAL_ACCURACY ", "val_accuracy")],
)  # fmt: skip
def test_metric_names_of_real_configs(written, metric):
    assert resolve_metric(written) == metric


def test_test_accuracy_runs_with_a_warning_but_cannot_prune():
    raw = {**HEAD, "metric": {"name": "test_accuracy", "goal": "maximize"},
           "parameters": {"epochs": {"value": 2}}}  # fmt: skip
    config = parse_sweep_config(raw)
    (warning,) = config.warnings
    assert "test set" in warning and "val_accuracy" in warning and "\n" not in warning
    with pytest.raises(SweepConfigError, match="measured once, after training"):
        parse_sweep_config({**raw, "early_terminate": {"type": "hyperband", "min_iter": 1}})


def test_wandb_gets_the_metric_name_fastmlp_logs():
    config = parse_sweep_config({**HEAD, "metric": {"name": "val_acc", "goal": "maximize"},
                                 "parameters": {"lr": {"values": [0.1]}}})  # fmt: skip
    sent = config.wandb_config()
    assert sent["metric"] == {"name": "val_accuracy", "goal": "maximize"}
    assert sent["parameters"] == {"lr": {"values": [0.1]}}  # W&B samples the names as written


# --- distributions ----------------------------------------------------------------------------


def values_of(spec, count=2000, name="learning_rate", method="random"):
    config = config_of(method, **{name: spec})
    return [trial[name] for trial in samples(config, count)]


def is_multiple(value, q):
    return abs(value / q - round(value / q)) < 1e-9


def test_uniform_and_int_uniform():
    values = values_of({"distribution": "uniform", "min": 0.1, "max": 0.3})
    assert 0.1 <= min(values) and max(values) <= 0.3
    assert statistics.mean(values) == pytest.approx(0.2, abs=0.005)
    layers = values_of({"distribution": "int_uniform", "min": 1, "max": 4}, name="num_layers")
    assert set(layers) == {1, 2, 3, 4} and all(isinstance(v, int) for v in layers)


def test_q_uniform_rounds_to_multiples_of_q_as_wandb_so_the_ends_weigh_half():
    values = values_of({"distribution": "q_uniform", "min": 0, "max": 0.8, "q": 0.2},
                       name="weight_decay", count=4000)  # fmt: skip
    share = {value: values.count(value) / len(values) for value in set(values)}
    assert set(share) == {0.0, 0.2, 0.4, 0.6, 0.8}
    assert share[0.0] == pytest.approx(0.125, abs=0.02)
    assert share[0.4] == pytest.approx(0.25, abs=0.03)


def test_log_uniform_values_is_evenly_spread_on_a_log_scale():
    values = values_of({"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1})
    assert 1e-4 <= min(values) and max(values) <= 1e-1
    logs = [math.log10(value) for value in values]
    assert statistics.median(logs) == pytest.approx(-2.5, abs=0.1)
    quarter = sum(value < 10**-3.25 for value in values) / len(values)
    assert quarter == pytest.approx(0.25, abs=0.03)


def test_log_uniform_takes_natural_logarithms_and_inv_log_uniform_their_negatives():
    values = values_of(
        {"distribution": "log_uniform", "min": math.log(1e-4), "max": math.log(1e-2)}
    )
    assert 1e-4 <= min(values) and max(values) <= 1e-2
    assert statistics.median(math.log(v) for v in values) == pytest.approx(math.log(1e-3), abs=0.15)
    inverse = values_of({"distribution": "inv_log_uniform", "min": 2, "max": 6})
    assert math.exp(-6) <= min(inverse) and max(inverse) <= math.exp(-2)
    assert statistics.median(math.log(v) for v in inverse) == pytest.approx(-4, abs=0.1)
    inverse = values_of({"distribution": "inv_log_uniform_values", "min": 1e-4, "max": 1e-2})
    assert 1e-4 <= min(inverse) and max(inverse) <= 1e-2
    assert statistics.median(math.log10(v) for v in inverse) == pytest.approx(-3, abs=0.1)


def test_quantised_log_uniforms_are_multiples_of_q_and_integers_for_an_integer_q():
    sizes = values_of({"distribution": "q_log_uniform_values", "min": 32, "max": 256, "q": 8},
                      name="batch_size")  # fmt: skip
    assert all(isinstance(v, int) and v % 8 == 0 and 32 <= v <= 256 for v in sizes)
    assert statistics.median(sizes) == pytest.approx(math.sqrt(32 * 256), rel=0.1)
    rates = values_of({"distribution": "q_log_uniform_values", "min": 1e-4, "max": 1e-1,
                       "q": 1e-4})  # fmt: skip
    assert all(is_multiple(v, 1e-4) and 1e-4 <= v <= 1e-1 for v in rates)
    assert rates[0] == float(f"{rates[0]:.12g}")  # no float noise such as 0.30000000000000004
    units = values_of({"distribution": "q_log_uniform", "min": math.log(16), "max": math.log(512)},
                      name="hidden_size")  # fmt: skip
    assert all(isinstance(v, int) and 16 <= v <= 512 for v in units)  # q defaults to 1


def test_normal_and_q_normal_have_wandbs_mean_and_deviation():
    values = values_of({"distribution": "normal", "mu": 0.5, "sigma": 0.1}, name="momentum",
                       count=4000)  # fmt: skip
    assert statistics.mean(values) == pytest.approx(0.5, abs=0.01)
    assert statistics.stdev(values) == pytest.approx(0.1, rel=0.05)
    values = values_of({"distribution": "q_normal", "mu": 0.5, "sigma": 0.1, "q": 0.05},
                       name="momentum")  # fmt: skip
    assert all(is_multiple(v, 0.05) for v in values)
    assert statistics.mean(values) == pytest.approx(0.5, abs=0.01)


def test_normal_defaults_to_mu_0_and_sigma_1():
    config = config_of(weight_decay={"distribution": "normal"})
    parameter = config.parameters["weight_decay"]
    assert (parameter.mu, parameter.sigma) == (0.0, 1.0)
    assert parameter.decode(normal_cdf(1.0)) == pytest.approx(1.0)


def normal_cdf(x):
    return statistics.NormalDist().cdf(x)


def test_log_normal_and_q_log_normal():
    values = values_of({"distribution": "log_normal", "mu": math.log(1e-3), "sigma": 1.0},
                       count=4000)  # fmt: skip
    logs = [math.log(v) for v in values]
    assert statistics.mean(logs) == pytest.approx(math.log(1e-3), abs=0.05)
    assert statistics.stdev(logs) == pytest.approx(1.0, rel=0.05)
    sizes = values_of({"distribution": "q_log_normal", "mu": math.log(64), "sigma": 0.5, "q": 16},
                      name="hidden_size")  # fmt: skip
    assert all(isinstance(v, int) and v % 16 == 0 for v in sizes if v)


def test_beta_and_q_beta():
    values = values_of({"distribution": "beta", "a": 2, "b": 6}, name="dropout", count=1000)
    assert 0 <= min(values) and max(values) < 1
    assert statistics.mean(values) == pytest.approx(2 / 8, abs=0.01)
    assert statistics.variance(values) == pytest.approx(2 * 6 / (8**2 * 9), rel=0.1)
    uniform = values_of({"distribution": "beta"}, name="dropout", count=1000)  # a = b = 1
    assert statistics.mean(uniform) == pytest.approx(0.5, abs=0.03)
    values = values_of({"distribution": "q_beta", "a": 2, "b": 6, "q": 0.1}, name="dropout",
                       count=300)  # fmt: skip
    assert all(is_multiple(v, 0.1) for v in values)


def test_beta_quantile_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for a, b in [(1, 1), (0.5, 0.5), (2, 5), (10, 0.3), (50, 50)]:
        for u in (1e-9, 0.01, 0.3, 0.5, 0.77, 0.999, 1 - 1e-9):
            assert beta_quantile(u, a, b) == pytest.approx(stats.beta.ppf(u, a, b), rel=1e-9)
    assert normal_quantile(0.975, 1, 2) == pytest.approx(stats.norm.ppf(0.975, 1, 2))


def test_categorical_with_probabilities_picks_by_wandbs_cumulative_rule():
    values = values_of({"values": ["adam", "nadam", "sgd"], "probabilities": [0.6, 0.3, 0.1]},
                       name="optimizer", count=4000)  # fmt: skip
    share = {name: values.count(name) / len(values) for name in ("adam", "nadam", "sgd")}
    assert share == pytest.approx({"adam": 0.6, "nadam": 0.3, "sgd": 0.1}, abs=0.025)
    with pytest.raises(SweepConfigError, match="sum to 1"):
        config_of(optimizer={"values": ["adam", "sgd"], "probabilities": [0.5, 0.2]})


def test_quantise_is_wandbs_round_half_to_even():
    assert quantise(0.125, 0.25) == 0.0 and quantise(0.375, 0.25) == 0.5
    assert quantise(37.0, 8) == 40 and isinstance(quantise(37.0, 8), int)
    assert quantise(0.30000000000000004, 0.1) == 0.3


def test_whole_number_settings_are_rounded_from_continuous_distributions():
    values = values_of({"distribution": "uniform", "min": 16, "max": 64.5}, name="batch_size")
    assert all(isinstance(v, int) and 16 <= v <= 64 for v in values)


def test_bayes_samples_every_distribution_in_its_own_space():
    """TPE proposes points in each parameter's space; decoded, they keep W&B's ranges."""
    config = config_of(
        "bayes",
        learning_rate={"distribution": "q_log_uniform_values", "min": 1e-4, "max": 1e-1, "q": 1e-4},
        momentum={"distribution": "normal", "mu": 0.8, "sigma": 0.05},
        beta1={"distribution": "beta", "a": 9, "b": 1},
        batch_size={"distribution": "q_uniform", "min": 16, "max": 128, "q": 16},
        hidden_size={"values": [[64, 32], [128]]},
    )
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5)
    )
    for _ in range(25):
        trial = study.ask(config.distributions())
        values = config.settings(trial.params)
        assert 1e-4 <= values["learning_rate"] <= 1e-1 and is_multiple(
            values["learning_rate"], 1e-4
        )
        assert 0 < values["beta1"] < 1 and values["batch_size"] % 16 == 0
        normalize_config(values)
        study.tell(trial, -abs(math.log10(values["learning_rate"]) + 2.5))
    best = config.settings(study.best_trial.params)["learning_rate"]
    assert 10**-3.5 < best < 10**-1.5  # TPE moved towards the optimum on the log scale


def test_grid_enumerates_finite_distributions_and_refuses_continuous_ones():
    config = config_of(
        "grid",
        momentum={"distribution": "q_uniform", "min": 0.5, "max": 0.9, "q": 0.2},
        num_layers={"min": 1, "max": 3},
        hidden_size={"values": [[8], [16]]},
    )
    assert config.grid()["momentum"] == [0.5, 0.7, 0.9] and config.grid_size() == 18
    point = {name: values[-1] for name, values in config.grid().items()}
    assert config.settings(point)["hidden_size"] == [16]
    for spec, message in [
        ({"distribution": "normal"}, "continuous distribution normal"),
        ({"min": 0.1, "max": 0.9}, "continuous distribution uniform"),
        ({"values": [0.9], "probabilities": [1.0]}, "drop its probabilities"),
    ]:
        with pytest.raises(SweepConfigError, match=message):
            config_of("grid", momentum=spec)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"distribution": "normal", "sigma": -1}, "sigma must be >= 0"),
        ({"distribution": "beta", "a": 0}, "a > 0 and b > 0"),
        ({"distribution": "log_uniform_values", "min": 0, "max": 1}, "needs min > 0"),
        ({"distribution": "q_uniform", "min": 0, "max": 1, "q": 0}, "q must be > 0"),
        ({"distribution": "normal", "min": 0}, "'min' does not apply to distribution normal"),
        ({"distribution": "lognormal"}, "did you mean log_normal"),
        ({"values": [0.5], "mu": 1}, "'mu' does not apply to distribution categorical"),
        ({"valuse": [1]}, "'valuse' is not a W&B parameter key"),
    ],
)
def test_bad_distribution_specs_are_one_line_errors(spec, message):
    with pytest.raises(SweepConfigError, match=message):
        config_of(momentum=spec)


def test_tails_a_setting_refuses_are_a_warning_not_an_error():
    config = config_of(weight_decay={"distribution": "normal", "mu": 1e-3, "sigma": 5e-4})
    (warning,) = config.warnings
    assert "lower tail" in warning and "weight_decay" in warning
    with pytest.raises(SweepConfigError, match="weight_decay must be"):
        config_of(weight_decay={"distribution": "normal", "mu": -1, "sigma": 0.1})


def test_log_uniform_with_values_for_bounds_is_warned_about():
    config = config_of(learning_rate={"distribution": "log_uniform", "min": 1e-5, "max": 1e-2})
    assert any("log_uniform_values" in warning for warning in config.warnings)


# --- hyperband --------------------------------------------------------------------------------


def pruner_of(early_terminate, epochs=27):
    raw = {**HEAD, "early_terminate": early_terminate, "parameters": {"epochs": {"value": epochs}}}
    config = parse_sweep_config(raw)
    pruner = make_pruner(config)
    return config, (pruner._min_resource, pruner._max_resource, pruner._reduction_factor)


def test_hyperband_min_iter_eta_and_max_iter_map_to_optunas_resources():
    config, resources = pruner_of({"type": "hyperband", "min_iter": 3})
    assert resources == (3, 27, 3) and config.hyperband.bands(27) == [3, 9]
    assert pruner_of({"type": "hyperband", "min_iter": 2, "eta": 2, "max_iter": 16})[1] == (
        2,
        16,
        2,
    )


def test_hyperband_max_iter_and_s_count_bands_back_from_max_iter():
    config, resources = pruner_of({"type": "hyperband", "max_iter": 27, "s": 2})
    assert resources == (3, 27, 3) and config.hyperband.bands(27) == [3, 9]  # W&B's [9, 3]
    assert pruner_of({"type": "hyperband", "max_iter": 9, "s": 5, "eta": 3}, 9)[1][0] == 1
    assert pruner_of({"type": "hyperband", "min_iter": 1, "strict": True})[1][0] == 1


@pytest.mark.parametrize(
    "early_terminate, message",
    [
        ({"type": "hyperband", "min_iter": 1, "strict": False}, "strict"),
        ({"type": "hyperband", "min_iter": 1, "eta": 2.5}, "whole number"),
        ({"type": "hyperband", "s": 2}, "give max_iter"),
        ({"type": "hyperband", "max_iter": 27, "s": 2, "min_iter": 2}, "first band is 3"),
        ({"type": "hyperband", "max_iter": 2, "s": 1, "eta": 3}, "below one epoch"),
        ({"type": "hyperband", "min_iter": 1, "brackets": 2}, "'brackets'"),
        ({"type": "envelope"}, "'envelope'"),
    ],
)
def test_hyperband_settings_optuna_cannot_honour_are_refused_with_a_reason(
    early_terminate, message
):
    with pytest.raises(SweepConfigError, match=message):
        pruner_of(early_terminate)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"method": "annealing"}, "method must be grid, random or bayes"),
        ({"method": "bayesian"}, "did you mean bayes"),
        ({"metric": {"name": "val_accuracy", "goal": "grid"}}, "goal must be maximize or minimize"),
        ({"metric": {"name": "val_f1"}}, "unknown metric name 'val_f1'"),
        ({"paramters": {}}, "did you mean parameters"),
    ],
)
def test_invalid_configs_are_still_one_clear_error(change, message):
    with pytest.raises(SweepConfigError, match=message) as caught:
        parse_sweep_config({**HEAD, "parameters": {"epochs": {"value": 1}}, **change})
    assert "\n" not in str(caught.value)


# --- command, YAML traps, layers ----------------------------------------------------------------


def test_command_flags_become_constants_and_macros_are_skipped():
    command = parse_command(["${env}", "python", "train.py", "--dataset", "mnist", "-e", "5",
                             "--hidden_size", "64", "32", "--entity=team", "--restore_best",
                             "${args}", "--batch_size", "16"])  # fmt: skip
    flags = {flag.name: (flag.value, flag.after_args) for flag in command.flags}
    assert flags == {"--dataset": ("mnist", False), "-e": (5, False),
                     "--hidden_size": ([64, 32], False), "--entity": ("team", False),
                     "--restore_best": (True, False), "--batch_size": (16, True)}  # fmt: skip
    assert command.skipped == ["python", "train.py"] and command.macros == ["${env}", "${args}"]


def test_a_fixed_flag_before_args_loses_to_the_sampled_parameter_and_after_it_wins():
    raw = {**HEAD, "parameters": {"epochs": {"values": [1, 2]}, "batch_size": {"values": [8, 16]}},
           "command": ["${interpreter}", "${program}", "-e", "9", "${args}", "-b", "32",
                       "--use_wandb"]}  # fmt: skip
    config = parse_sweep_config(raw)
    assert set(config.parameters) == {"epochs"} and config.constants == {"batch_size": 32}
    assert any("--use_wandb" in warning for warning in config.warnings)
    ignored = {item.what: item.why for item in config.ignored}
    assert "wins" in ignored["command: -e 9"] and "wins" in ignored["parameter batch_size"]


def test_yaml_traps(tmp_path):
    path = tmp_path / "traps.yaml"
    path.write_text(
        "method: random \n"
        "metric: {name: 'val_accuracy ', goal: Maximize}\n"
        "parameters:\n"
        "  'optimizer ': {values: ['adam ', nadam, adam]}\n"
        "  learning_rate: {values: [1e-3, 5e-4]}\n"  # PyYAML: the strings '1e-3', '5e-4'
        "  weight_decay: {distribution: uniform, min: 0, max: 1e-2}\n"
        "  restore_best: {values: [true, false, yes]}\n"
        "  batch_size: {values: ['64', '128']}\n"
        "  early_stopping: {value: '3'}\n"
    )
    config = read_sweep_config(path)
    assert config.parameters["learning_rate"].choices == (0.001, 0.0005)
    assert config.parameters["weight_decay"].high == 0.01
    assert config.parameters["optimizer"].choices == ("adam", "nadam")
    assert config.parameters["restore_best"].choices == (True, False)
    assert config.parameters["batch_size"].choices == (64, 128)
    assert config.constants == {"early_stopping": 3} and config.goal == "maximize"
    repeated = [item.what for item in config.ignored]
    assert "parameter optimizer: repeated adam" in repeated
    assert "parameter restore_best: repeated True" in repeated


def test_hidden_size_lists_must_agree_with_num_layers():
    with pytest.raises(
        SweepConfigError, match=r"\[32, 64\] gives 2 hidden sizes, but num_layers is 3"
    ):
        config_of(num_layers={"value": 3}, hidden_size={"values": [[32, 64, 128], [32, 64]]})
    with pytest.raises(SweepConfigError, match="num_layers is swept too"):
        config_of(num_layers={"values": [2, 3]}, hidden_size={"values": [[32, 64], [64]]})
    config = config_of(num_layers={"value": 3}, hidden_size={"values": [[32, 64, 128], [64]]})
    assert not config.layers_from_sizes and "agrees" in config.layers_note
    assert {len(normalize_config(t)["hidden_size"]) for t in samples(config, 10)} == {3}


# --- --dry_run --------------------------------------------------------------------------------


def run_dry(tmp_path, monkeypatch, capsys, *arguments):
    monkeypatch.chdir(tmp_path)
    before = sorted(path.name for path in tmp_path.rglob("*"))
    status = main(["sweep", *map(str, arguments), "--dry_run"])
    captured = capsys.readouterr()
    assert sorted(path.name for path in tmp_path.rglob("*")) == before, "a dry run writes nothing"
    return status, captured.out, captured.err


def test_dry_run_shows_how_a_borrowed_config_is_understood_and_writes_nothing(
    tmp_path, monkeypatch, capsys
):
    config = tmp_path / "borrowed.yaml"
    config.write_text(
        "program: train.py\nentity: me\nmethod: bayes\nmetric: {name: val_acc, goal: maximize}\n"
        "run_cap: 40\nearly_terminate: {type: hyperband, max_iter: 27, s: 2}\n"
        "parameters:\n  n_epoch: {value: 27}\n  hidden_size: {values: [[32, 64], [784]]}\n"
        "  lr: {distribution: q_log_uniform_values, min: 1e-4, max: 1e-1, q: 1e-4}\n"
        "  alpha: {values: [0, 0.0005]}\n"
        "command: [python, train.py, --dataset, mnist, '${args}']\n"
    )
    status, out, err = run_dry(
        tmp_path, monkeypatch, capsys, config, "--param_map", "alpha=weight_decay",
        "--out", tmp_path / "never",
    )  # fmt: skip
    assert status == 0 and err == ""
    for expected in [
        r"engine\s+local: Optuna",
        r"TPESampler \(method bayes\)",
        r"HyperbandPruner\(min_resource=3, max_resource=27, reduction_factor=3\)",
        r"would cut at epochs 3, 9",
        r"metric\s+val_accuracy \(written val_acc\), maximize",
        r"trials\s+40 \(run_cap\)",
        r"learning_rate\s+lr\s+q_log_uniform_values: \[0.0001, 0.1\], log scale, quantised to "
        r"multiples of 0.0001\s+log\(value\), then quantised",
        r"hidden_size\s+hidden_size\s+categorical: \[32, 64\], \[784\]",
        r"weight_decay\s+alpha\s+categorical: 0, 0.0005",
        r"dataset\s+mnist\s+from command: --dataset mnist",
        r"wandb_entity\s+me\s+from entity:",
        r"epochs\s+27\s+from parameter n_epoch",
        r"num_layers is the length of each hidden_size list",
        r"program: train.py\s+W&B's agent runs it",
        r"command: python train.py\s+the interpreter and program",
        r"command: \$\{args\}\s+W&B's agent macros",
        r"dry run: nothing was trained, created or written",
    ]:
        assert re.search(expected, out), expected
    assert not (tmp_path / "never").exists()


def test_dry_run_of_a_grid_the_wandb_engine_and_a_bad_config(tmp_path, monkeypatch, capsys):
    status, out, _ = run_dry(tmp_path, monkeypatch, capsys, CONFIGS / "pankuu21.yaml")
    assert status == 0
    assert "the grid's 6 x 3 x 4 x 3 x 2 x 2 x 3 x 2 x 2 = 10,368 points" in out
    assert "GridSampler" in out and "nesterov" in out
    status, out, _ = run_dry(
        tmp_path, monkeypatch, capsys, CONFIGS / "parasmukati.yaml", "--engine", "wandb",
        "--count", "5",
    )  # fmt: skip
    assert (
        status == 0 and "W&B's bayes search" in out and "W&B's hyperband (min_iter 3, eta 3)" in out
    )
    assert "5 trials in this command's agents" in out
    status, out, err = run_dry(tmp_path, monkeypatch, capsys, CONFIGS / "aastha7231.yaml")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "--param_map alpha=SETTING" in err


def test_dry_run_text_of_a_config_with_warnings():
    config = read_sweep_config(CONFIGS / "shreyadhondi_random.yaml")
    text = describe(config, engine="local", count=12)
    assert "trials   12 (--count)" in text
    assert "learning_rate  eta" in text and "uniform: [0.0002, 0.002]" in text
    assert "parameter weight_decay: repeated 0.0002" in text


def test_a_sweep_on_test_accuracy_scores_trials_on_it(tmp_path):
    from fastmlp.sweep import run_local_sweep
    from fastmlp.sweep.study import SweepDirectory, load_study, open_storage
    from tests.datasets import write_idx_dataset

    data = write_idx_dataset(tmp_path / "data")
    config = parse_sweep_config(
        {"name": "leaky", "method": "grid", "metric": {"name": "test_acc", "goal": "maximize"},
         "parameters": {"dataset": {"value": "mnist"}, "epochs": {"value": 1},
                        "num_layers": {"value": 1}, "hidden_size": {"values": [8]},
                        "device": {"value": "cpu"}}}
    )  # fmt: skip
    run_local_sweep(config, out=tmp_path, data_dir=data, wandb_mode="disabled", figures=False)
    (trial,) = load_study("leaky", open_storage(SweepDirectory(tmp_path / "leaky"))).trials
    assert trial.state.name == "COMPLETE" and trial.value == trial.user_attrs["test_accuracy"]


def test_a_borrowed_config_runs_trials_with_the_values_it_means(tmp_path):
    """Nested parameters, aliases, a quantised log scale, per-layer sizes and a command flag,
    through real trials: each run's stored settings are the decoded values."""
    import json

    from fastmlp.sweep import run_local_sweep
    from fastmlp.sweep.study import SweepDirectory, load_study, open_storage
    from tests.datasets import write_idx_dataset

    data = write_idx_dataset(tmp_path / "data")
    path = tmp_path / "borrowed.yaml"
    path.write_text(
        "method: random\nmetric: {name: val_acc, goal: maximize}\nrun_cap: 3\n"
        "parameters:\n  n_epoch: {value: 1}\n  hidden_size: {values: [[8, 4], [6]]}\n"
        "  bs: {distribution: q_log_uniform_values, min: 16, max: 64, q: 16}\n"
        "  optimizer:\n    parameters:\n      name: {values: [adam, nadam]}\n"
        "      lr: {distribution: log_normal, mu: -6, sigma: 0.5}\n"
        "command: [python, train.py, --dataset, mnist, --device, cpu, '${args}']\n"
    )
    config = read_sweep_config(path)
    run_local_sweep(config, out=tmp_path, data_dir=data, wandb_mode="disabled", figures=False)
    trials = load_study("borrowed", open_storage(SweepDirectory(tmp_path / "borrowed"))).trials
    assert len(trials) == 3 and {trial.state.name for trial in trials} == {"COMPLETE"}
    for trial in trials:
        expected = config.settings(trial.params)
        stored = json.loads(
            (tmp_path / "borrowed" / trial.user_attrs["run_dir"] / "config.json").read_text()
        )
        assert stored["hidden_size"] == expected["hidden_size"]
        assert stored["num_layers"] == len(expected["hidden_size"])
        assert stored["batch_size"] == expected["batch_size"] and stored["batch_size"] % 16 == 0
        assert stored["learning_rate"] == pytest.approx(expected["learning_rate"])
        assert (stored["dataset"], stored["optimizer"]) == ("mnist", expected["optimizer"])


# ------------------------------------------------ what an adversarial probe found (fixed)

HUGE = 9 * 10**400


def base_config(**parameters):
    return {"method": "random", "metric": {"name": "val_accuracy", "goal": "maximize"},
            "parameters": {"dataset": {"value": "mnist"}, **parameters}}  # fmt: skip


@pytest.mark.parametrize(
    "spec",
    [
        {"min": 1, "max": HUGE},
        {"distribution": "normal", "mu": HUGE, "sigma": 1},
        {"distribution": "q_uniform", "min": 16, "max": 64, "q": HUGE},
        {"distribution": "log_normal", "mu": 1000, "sigma": 1},
    ],
)
def test_bounds_too_large_for_a_float_are_config_errors(spec):
    with pytest.raises(SweepConfigError):
        parse_sweep_config(base_config(learning_rate=spec))


def test_of_two_fixed_command_flags_for_one_setting_the_last_wins():
    config = parse_sweep_config(
        {**base_config(), "command": ["python", "t.py", "-e", 2, "--epochs", 3]}
    )
    assert config.constants["epochs"] == 3


def test_key_value_words_after_an_args_macro_are_fixed_flags():
    command = ["${env}", "python", "train.py", "${args_no_hyphens}", "epochs=2", "dataset=mnist"]
    config = parse_sweep_config({**base_config(), "command": command})
    assert config.constants["epochs"] == 2 and config.constants["dataset"] == "mnist"


@pytest.mark.parametrize(
    "options,message",
    [
        (["--device", "tpu"], "unknown device"),
        (["--device", "cpu", "--workers_per_gpu", "2"], "for sweeps on GPUs"),
        (["--storage", "bogus://x"], "cannot use --storage"),
        (["--engine", "wandb", "--storage", "x.journal"], "--storage is for --engine local"),
    ],
)
def test_a_dry_run_refuses_what_the_real_run_would_refuse(tmp_path, capsys, options, message):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base_config(learning_rate={"values": [0.001]})))
    with _exit_status() as status:
        status.value = main(["sweep", str(path), "--dry_run", "--out", str(tmp_path / "s"),
                             *options])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert status.value == 2 and message in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


class _exit_status:  # noqa: N801 - a context manager named for what it holds
    """Holds a command's exit status, whether it returns it or exits with it."""

    value: int | None = None

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, SystemExit):
            self.value = error.code
            return True
        return False


@pytest.mark.parametrize("value", [["a", "b"], True, {"x": 1}])
def test_a_project_or_entity_that_is_not_a_name_is_refused(value):
    for key in ("project", "entity"):
        with pytest.raises(SweepConfigError, match=f"{key} must be a name"):
            parse_sweep_config({**base_config(), key: value})
