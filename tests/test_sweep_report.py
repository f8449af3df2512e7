"""``fastmlp sweep report``: a missing optional package is one line and leaves no half-written
report, and the importance says when there are too few complete trials for it to mean much.

The studies here are made with the sweep's own functions and filled with made-up trials
(``study.add_trial``), so the number of complete trials is exact and nothing trains.
"""

from __future__ import annotations

import datetime
import random
import sys
from pathlib import Path

import optuna
import pytest
from matplotlib.text import Text

from fastmlp.cli import main
from fastmlp.sweep import parse_sweep_config, plots, write_report
from fastmlp.sweep.report import importance_caution, trials_for_reliable_importance
from fastmlp.sweep.study import SweepDirectory, create_or_load_study, open_storage, storage_label

CONFIG = {
    "name": "made",
    "method": "random",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "parameters": {
        "epochs": {"value": 1},
        "hidden_size": {"values": [8, 16, 32]},
        "learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        "optimizer": {"values": ["adam", "sgd"]},
    },
}
SWEPT = 3


def made_sweep(out: Path, complete: int, failed: int = 0, value: float | None = None) -> Path:
    """A sweep directory whose study holds ``complete`` complete trials (metric ``value``,
    else random) and ``failed`` failed ones."""
    config = parse_sweep_config(CONFIG)
    directory = SweepDirectory(out / config.name)
    study = create_or_load_study(config, open_storage(directory))
    directory.update_info(name=config.name, engine="local", storage=storage_label(None))
    rng = random.Random(0)
    for number in range(complete + failed):
        params = {
            "hidden_size": rng.choice([8, 16, 32]),
            "learning_rate": 10 ** rng.uniform(-4, -1),
            "optimizer": rng.choice(["adam", "sgd"]),
        }
        done = number < complete
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=config.distributions(),
                value=(value if value is not None else 0.5 + 0.4 * rng.random()) if done else None,
                state=optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.FAIL,
            )
        )
    return directory.path


def contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def no_staging_left(sweep: Path) -> bool:
    return not [path for path in sweep.iterdir() if path.name.startswith(".report-")]


@pytest.fixture
def figure_texts(monkeypatch):
    """Every text drawn in each figure the report saves, by file name."""
    texts: dict[str, list[str]] = {}
    save = plots.save_figure

    def recording_save(figure, path):
        texts[Path(path).name] = [text.get_text() for text in figure.findobj(Text)]
        return save(figure, path)

    monkeypatch.setattr(plots, "save_figure", recording_save)
    return texts


@pytest.mark.parametrize(
    "modules, package",
    [(("sklearn", "sklearn.ensemble"), "scikit-learn"), (("matplotlib",), "matplotlib")],
)
def test_a_missing_optional_package_is_one_line_and_the_previous_report_stays(
    tmp_path, monkeypatch, capsys, modules, package
):
    sweep = made_sweep(tmp_path, complete=6)
    assert main(["sweep", "report", str(sweep), "--wandb_mode", "disabled"]) == 0
    before = contents(sweep / "report")
    made_sweep(tmp_path, complete=2)  # two more trials: a new report would differ
    capsys.readouterr()

    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # "import sklearn" now fails
    assert main(["sweep", "report", str(sweep), "--wandb_mode", "disabled"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert package in err and 'pip install "fastmlp[sweep]"' in err, err
    assert contents(sweep / "report") == before and no_staging_left(sweep)


def test_a_missing_package_writes_nothing_for_a_first_report(tmp_path, monkeypatch):
    sweep = made_sweep(tmp_path, complete=6)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    assert main(["sweep", "report", str(sweep), "--wandb_mode", "disabled"]) == 2
    assert not (sweep / "report").exists() and no_staging_left(sweep)


def test_a_report_that_fails_half_way_leaves_the_previous_one_untouched(tmp_path, monkeypatch):
    sweep = made_sweep(tmp_path, complete=6)
    write_report(sweep, wandb_mode="disabled")
    before = contents(sweep / "report")
    made_sweep(tmp_path, complete=2)

    def broken(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(plots, "plot_importance", broken)  # the last file made
    with pytest.raises(RuntimeError, match="drawing failed"):
        write_report(sweep, wandb_mode="disabled")
    assert contents(sweep / "report") == before and no_staging_left(sweep)


def test_too_few_complete_trials_are_flagged_in_the_figure_the_text_and_the_output(
    tmp_path, figure_texts, capsys
):
    sweep = made_sweep(tmp_path, complete=7, failed=5)  # failed trials do not count
    assert main(["sweep", "report", str(sweep), "--wandb_mode", "disabled"]) == 0
    caution = importance_caution(7, SWEPT)
    assert caution.startswith("only 7 complete trials for 3 swept parameters: too few")
    assert caution.endswith("(10 or more wanted)")
    assert f"Caution: {caution}" in figure_texts["importance.png"]
    markdown = (sweep / "report" / "trials.md").read_text()
    assert "## Parameter importance for val_accuracy (fANOVA)" in markdown
    assert "| learning_rate |" in markdown and f"**Caution:** {caution}." in markdown
    assert f"note: {caution}\n" in capsys.readouterr().out


def test_enough_complete_trials_give_the_importance_without_a_caution(tmp_path, figure_texts):
    sweep = made_sweep(tmp_path, complete=trials_for_reliable_importance(SWEPT))
    report = write_report(sweep, wandb_mode="disabled")
    assert report.notes == []
    assert not any("Caution" in text for text in figure_texts["importance.png"])
    markdown = (sweep / "report" / "trials.md").read_text()
    assert "| optimizer |" in markdown and "Caution" not in markdown


def test_below_the_fanova_minimum_the_importance_is_not_computed_and_says_why(
    tmp_path, figure_texts
):
    sweep = made_sweep(tmp_path, complete=3)
    report = write_report(sweep, wandb_mode="disabled")
    why = "importance needs at least 5 complete trials (3 so far)"
    assert why in report.notes and why in figure_texts["importance.png"]
    assert f"Not computed: {why}." in (sweep / "report" / "trials.md").read_text()


def test_trials_that_all_score_the_same_give_no_importance_instead_of_a_crash(tmp_path):
    sweep = made_sweep(tmp_path, complete=12, value=0.1)  # every trial at chance, say
    report = write_report(sweep, wandb_mode="disabled")
    assert any(note.startswith("importance is undefined") for note in report.notes)
    assert (sweep / "report" / "importance.png").exists()


def test_the_reliable_count_is_ten_or_two_per_parameter():
    assert [trials_for_reliable_importance(n) for n in (1, 5, 9)] == [10, 10, 18]
    assert importance_caution(18, 9) == "" and importance_caution(17, 9) != ""


def test_files_of_an_earlier_report_that_this_one_does_not_make_are_removed(tmp_path):
    sweep = made_sweep(tmp_path, complete=0, failed=2)
    (sweep / "report" / "wandb").mkdir(parents=True)
    (sweep / "report" / "importance.png").write_bytes(b"stale")
    (sweep / "report" / "notes.txt").write_text("mine")
    report = write_report(sweep, wandb_mode="disabled")
    assert report.best is None and "importance" not in report.files
    left = {path.name for path in (sweep / "report").iterdir()}
    assert left == {"trials.csv", "trials.md", "accuracy_vs_time.png", "wandb", "notes.txt"}


def test_the_tables_and_the_parallel_coordinates_show_the_setting_values(tmp_path, monkeypatch):
    """Optuna stores a quantised log-uniform's unquantised point, a normal's quantile u and a
    list of hidden sizes as JSON text; the report shows and plots the values they stand for."""
    import csv
    import json

    raw = {
        "name": "decoded",
        "method": "random",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {
            "epochs": {"value": 1},
            "hidden_size": {"values": [[24, 12], [40]]},
            "learning_rate": {
                "distribution": "q_log_uniform_values", "min": 2e-4, "max": 5e-2, "q": 2e-4
            },
            "momentum": {"distribution": "normal", "mu": 0.85, "sigma": 0.03},
        },
    }  # fmt: skip
    config = parse_sweep_config(raw)
    directory = SweepDirectory(tmp_path / config.name)
    study = create_or_load_study(config, open_storage(directory))
    directory.update_info(name=config.name, engine="local", storage=storage_label(None))
    rng = random.Random(1)
    points = []
    for _ in range(6):
        params = {
            "hidden_size": json.dumps(rng.choice([[24, 12], [40]])),
            "learning_rate": 10 ** rng.uniform(-3.7, -1.3),
            "momentum": rng.uniform(0.05, 0.95),
        }
        points.append(params)
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=config.distributions(), value=rng.random()
            )
        )
    plotted = {}
    draw = plots.plot_parallel_coordinates

    def recording_draw(params, distributions, *args):
        plotted.update(params=params, distributions=distributions)
        return draw(params, distributions, *args)

    monkeypatch.setattr(plots, "plot_parallel_coordinates", recording_draw)
    write_report(directory.path, wandb_mode="disabled")

    real = [config.values(params) for params in points]
    with open(directory.report / "trials.csv", newline="") as stream:
        cells = list(csv.DictReader(stream))
    assert len(cells) == len(real)
    for cell, values, params in zip(cells, real, points):
        rate = float(cell["learning_rate"])
        assert rate == values["learning_rate"] != params["learning_rate"]
        assert round(rate / 2e-4, 9).is_integer()
        assert json.loads(cell["hidden_size"]) == values["hidden_size"]
        assert isinstance(values["hidden_size"], list)
        assert float(cell["momentum"]) == pytest.approx(values["momentum"])
        assert abs(values["momentum"] - 0.85) < 0.2 and values["momentum"] != params["momentum"]
    markdown = (directory.report / "trials.md").read_text()
    assert f"| {real[0]['learning_rate']:.4g} |" in markdown

    assert plotted["params"]["learning_rate"] == [values["learning_rate"] for values in real]
    assert plotted["distributions"]["learning_rate"].log  # a log axis, as the sampled range
    momentum = plotted["distributions"]["momentum"]
    assert not momentum.log and momentum.low == min(v["momentum"] for v in real)
    assert momentum.high == max(v["momentum"] for v in real)  # not u's [0, 1]
    assert plotted["params"]["hidden_size"] == [json.dumps(v["hidden_size"]) for v in real]
    assert set(plotted["distributions"]["hidden_size"].choices) == {"[24, 12]", "[40]"}


@pytest.fixture
def saved_figures(monkeypatch):
    """The Figure of each PNG the sweep plots write, by file name."""
    drawn = {}
    save = plots.save_figure

    def recording_save(figure, path):
        drawn[Path(path).name] = figure
        return save(figure, path)

    monkeypatch.setattr(plots, "save_figure", recording_save)
    return drawn


def test_parallel_coordinates_labels_sit_on_opaque_boxes_above_every_line(tmp_path, saved_figures):
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    rng = random.Random(2)
    optimizers = ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam"]
    params = {
        "optimizer": [rng.choice(optimizers) for _ in range(20)],
        "learning_rate": [10 ** rng.uniform(-4, -1) for _ in range(20)],
    }
    distributions = {
        "optimizer": CategoricalDistribution(optimizers),
        "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
    }
    values = [rng.random() for _ in range(20)]
    plots.plot_parallel_coordinates(
        params, distributions, values, "val_accuracy", "maximize", tmp_path / "p.png"
    )

    (ax, _colourbar) = saved_figures["p.png"].axes
    labels = {text.get_text(): text for text in ax.texts}
    assert set(optimizers) <= set(labels)
    top_line = max(line.get_zorder() for line in ax.lines)
    for text in labels.values():
        assert text.get_zorder() > top_line, text.get_text()
        box = text.get_bbox_patch()
        assert box.get_facecolor() == (1.0, 1.0, 1.0, 1.0), text.get_text()  # opaque white


@pytest.mark.parametrize(
    "span, unit",
    [(datetime.timedelta(seconds=40), "seconds"), (datetime.timedelta(minutes=22), "minutes"),
     (datetime.timedelta(hours=5), "hours"), (datetime.timedelta(days=9), "days")],
)  # fmt: skip
def test_metric_against_time_counts_time_since_the_first_trial_in_a_named_unit(
    tmp_path, saved_figures, span, unit
):
    first = datetime.datetime(2024, 5, 1, 12, 3, 30)
    started = [first + span * fraction for fraction in (0.5, 0.0, 0.25, 1.0)]
    plots.plot_metric_vs_time(
        started, [0.7, 0.6, None, 0.8], ["COMPLETE", "COMPLETE", "FAIL", "PRUNED"],
        "val_accuracy", "maximize", tmp_path / "t.png",
    )  # fmt: skip

    figure = saved_figures["t.png"]
    (ax,) = figure.axes
    assert ax.get_xlabel() == f"{unit} since the first trial started (2024-05-01 12:03)"
    figure.canvas.draw()
    low, high = ax.get_xlim()
    size = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}[unit]
    assert low <= 0 and span.total_seconds() / size <= high < 120
    labels = [label.get_text().replace("−", "-") for label in ax.get_xticklabels()]
    # the ticks read as the numbers they stand for (not clock minutes "05 10 15")
    assert [float(label) for label in labels] == pytest.approx(list(ax.get_xticks()))
