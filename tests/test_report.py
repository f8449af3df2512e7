"""``fastmlp report``: every section from one call, a page that a real browser shows whole and
offline, runs reused and resumed, observations written from the data, Q10 with and without
MNIST, W&B offline."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from fastmlp.cli import main
from fastmlp.report import BUDGETS, Budget, make_report
from fastmlp.report import observations as obs
from fastmlp.report.budgets import CLASSIC_PARAMETERS
from fastmlp.report.context import settings_key
from fastmlp.report.loss_gradients import gradient_norms, logit_gradients
from fastmlp.sweep import parse_sweep_config
from tests.browser import find_browser, load_page
from tests.datasets import write_idx_dataset

pytest.importorskip("optuna")
pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

REPO = Path(__file__).resolve().parent.parent
ANCHORS = [f"q{number}" for number in range(1, 11)]

# Small enough for a test: 6 trials, 1-2 epochs, 2 seeds.
TINY = Budget(
    name="tiny",
    summary="a test budget",
    sweep_trials=6,
    sweep_method="random",
    sweep_epochs=(1, 2),
    hyperband=None,
    compare_epochs=2,
    loss_configs=2,
    loss_seeds=2,
    loss_epochs=2,
    mnist_epochs=1,
)


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("fashion"), train=1000, test=300)


@pytest.fixture(scope="module")
def report(fashion_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report"
    result = make_report(
        TINY,
        out=out,
        data_dir=fashion_dir,
        mnist_dir=tmp_path_factory.mktemp("no_mnist"),
        wandb_mode="disabled",
    )
    return result


def section_text(html: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    assert match, anchor
    return match.group(1)


def test_the_report_has_every_section_file_and_number(report):
    html = report.index.read_text()
    markdown = report.markdown.read_text()
    for anchor in ANCHORS:
        assert f'<section id="{anchor}">' in html
        assert f'<a id="{anchor}"></a>' in markdown
    figures = re.findall(r"\]\((figures/[^)]+\.png)\)", markdown)
    assert len(figures) >= 10
    for figure in figures:
        assert (report.directory / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    numbers = json.loads((report.directory / "report.json").read_text())
    assert 0 <= numbers["best_val_accuracy"] <= 1 and 0 <= numbers["test_accuracy"] <= 1
    assert set(numbers["optimizers"]) == {"sgd", "momentum", "nag", "rmsprop", "adam", "nadam"}
    assert set(numbers["cross_entropy_vs_mse"]) == {"config_1", "config_2"}
    # every section after Q2 says what was run and how to reproduce it
    for anchor in ("q3", "q4", "q5", "q6", "q7", "q8"):
        text = section_text(html, anchor)
        assert "What was run" in text and "fastmlp" in text and "Budget tiny" in text


def test_the_page_is_self_contained(report):
    html = report.index.read_text()
    assert not re.search(r'(src|href)="(?!data:|#)', html)
    assert "<script" not in html and "<link" not in html
    assert html.count('src="data:image/png;base64,') == html.count("<img")


@pytest.mark.skipif(find_browser() is None, reason="needs chromium (apt-get install chromium)")
def test_a_real_browser_shows_the_whole_page_offline_on_a_laptop_and_a_phone(report):
    from matplotlib.image import imread

    for width, height, mobile in ((1280, 900, False), (390, 844, True)):
        page = load_page(report.index, width=width, height=height, mobile=mobile)
        assert all(url.startswith(("file:", "data:")) for url in page.requests), page.requests
        assert page.console_errors == []
        assert len(page.images) >= 10
        for image in page.images:
            assert image["complete"] and image["width"] > 0 and image["height"] > 0
            assert image["visible"] and image["shown_width"] > 0 and image["shown_height"] > 0
            assert image["shown_width"] <= width
        assert set(ANCHORS) <= set(page.ids)
        assert not page.overflows, f"wider than a {width}-pixel window"
        pixels = imread(io.BytesIO(page.screenshot), format="png")
        assert pixels.shape[:2] == (height, width)
        assert pixels[..., :3].std() > 0.05, "the screenshot is blank"
        assert page.pdf.startswith(b"%PDF") and page.pdf.count(b"/Type /Page") > 3


def test_running_it_again_reuses_everything(report, fashion_dir, capsys):
    capsys.readouterr()
    again = make_report(
        TINY,
        out=report.directory,
        data_dir=fashion_dir,
        mnist_dir=report.directory / "no-such-folder",
        wandb_mode="disabled",
    )
    printed = capsys.readouterr().out
    assert "trained in" not in printed and "resumed" not in printed
    assert printed.count("done before, reused") == 6 + 8
    assert again.numbers == report.numbers


def test_an_interrupted_run_is_resumed(report, fashion_dir, tmp_path, capsys):
    copy = tmp_path / "report"
    shutil.copytree(report.directory, copy)
    (victim,) = (copy / "runs").glob("q8-2-mse-seed1-*")
    (victim / "summary.json").unlink()  # what a kill before the end of the run leaves
    capsys.readouterr()
    again = make_report(
        TINY, out=copy, data_dir=fashion_dir, mnist_dir=tmp_path / "none", wandb_mode="disabled"
    )
    printed = capsys.readouterr().out
    assert f"{victim.name}: resumed and finished" in printed
    assert printed.count("trained in") == 0
    assert (victim / "summary.json").is_file()
    assert again.numbers["best_val_accuracy"] == report.numbers["best_val_accuracy"]


def test_the_command_reports_on_a_given_sweep(report, fashion_dir, tmp_path, capsys):
    sweep = report.directory / "sweeps" / "report-tiny"
    out = tmp_path / "from_sweep"
    argv = ["report", "--sweep", str(sweep), "--out", str(out), "--data_dir", str(fashion_dir)]
    argv += ["--mnist_dir", str(tmp_path / "none"), "--wandb_mode", "disabled"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "report plan, budget quick" in printed and f"using the finished sweep in {sweep}" in printed
    )
    assert "best validation accuracy" in printed and f"wrote {out / 'index.html'}" in printed
    assert not (out / "sweeps").exists()  # the given sweep is read, not run again
    numbers = json.loads((out / "report.json").read_text())
    assert numbers["best_val_accuracy"] == report.numbers["best_val_accuracy"]
    assert numbers["budget"] == "quick"


def test_q10_without_mnist_says_how_to_add_it(report):
    text = section_text(report.index.read_text(), "q10")
    assert "Not trained" in text and "--mnist_dir" in text
    assert "The rule:" in text
    assert report.numbers["mnist"] is None


def test_q10_with_mnist_files_trains_three_configurations(report, fashion_dir, tmp_path):
    copy = tmp_path / "report"
    shutil.copytree(report.directory, copy)
    mnist = write_idx_dataset(tmp_path / "mnist", train=600, test=200, seed=7)
    result = make_report(
        TINY, out=copy, data_dir=fashion_dir, mnist_dir=mnist, wandb_mode="disabled"
    )
    assert set(result.numbers["mnist"]) == {"config_1", "config_2", "config_3"}
    assert all(0 <= value <= 1 for value in result.numbers["mnist"].values())
    text = section_text(result.index.read_text(), "q10")
    assert "MNIST test" in text and "Not trained" not in text
    assert len(list((copy / "runs").glob("q10-*"))) == 3


def test_the_observations_come_from_the_trials():
    rng = np.random.default_rng(0)

    def trials(bad_value: float) -> list[obs.Trial]:
        made = []
        for number in range(24):
            decay = [0, 0.0005, 0.5][number % 3]
            optimizer = ["adam", "sgd"][number % 2]
            metric = 0.1 + rng.normal(0, 0.01) if decay == bad_value else 0.85 + rng.normal(0, 0.02)
            if optimizer == "sgd" and decay != bad_value:
                metric -= 0.1
            made.append(obs.Trial(number, {"weight_decay": decay, "optimizer": optimizer}, metric))
        return made

    first = obs.observe(trials(0.5), 10, "val_accuracy")
    second = obs.observe(trials(0), 10, "val_accuracy")
    assert first != second
    text = "\n".join(first)
    assert "Every one of the 8 trials with weight_decay = 0.5 is far below the rest" in text
    assert "8 of 24 trials are far below the rest" in text
    assert "weight_decay" in first[0]  # the largest share of the variance comes first
    assert "weight_decay = 0" in "\n".join(second)
    assert any(line.startswith("optimizer: adam is best") for line in first)


def test_observations_without_weak_trials_or_variance():
    flat = [obs.Trial(n, {"optimizer": ["adam", "sgd"][n % 2]}, 0.8) for n in range(6)]
    text = "\n".join(obs.observe(flat, 10, "val_accuracy"))
    assert "No trial is far below the rest" in text
    assert "no setting explains anything" in text
    assert obs.observe(flat[:1], 10, "val_accuracy")[0].startswith("Only 1 complete trial")


def test_logit_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 4)) * 3
    labels = rng.integers(0, 4, size=5)

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def losses(z):
        p = softmax(z)
        onehot = np.eye(4)[labels]
        return {
            "cross_entropy": -np.log(p[np.arange(5), labels]),
            "mean_squared_error": ((p - onehot) ** 2).sum(axis=1),
        }

    analytic = logit_gradients(softmax(logits), labels)
    step = 1e-6
    for loss in analytic:
        numeric = np.zeros_like(logits)
        for k in range(4):
            shift = np.zeros_like(logits)
            shift[:, k] = step
            numeric[:, k] = (losses(logits + shift)[loss] - losses(logits - shift)[loss]) / (
                2 * step
            )
        np.testing.assert_allclose(analytic[loss], numeric, atol=1e-8)
    confident_mistake = np.array([[0.999, 0.001 / 3, 0.001 / 3, 0.001 / 3]])
    norms = gradient_norms(confident_mistake, np.array([1]))
    assert norms["cross_entropy"][0] > 1.4 and norms["mean_squared_error"][0] < 0.01


def test_the_budgets_sweep_the_classic_space():
    classic = yaml.safe_load((REPO / "sweeps" / "classic.yaml").read_text())
    assert classic["parameters"] == CLASSIC_PARAMETERS
    for name in BUDGETS:
        budget = BUDGETS.get(name)
        config = parse_sweep_config(budget.sweep_config())
        assert config.name == f"report-{name}"
        assert set(config.parameters) >= {"optimizer", "activation", "weight_decay"}
    assert BUDGETS.get("full").sweep_trials >= BUDGETS.get("standard").sweep_trials


def test_a_changed_configuration_is_a_new_run():
    base = {"optimizer": "adam", "learning_rate": 1e-3, "device": "cpu"}
    assert settings_key(base) == settings_key({**base, "device": "cuda"})
    assert settings_key(base) != settings_key({**base, "learning_rate": 1e-4})


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--budget", "huge"], "unknown report budget"),
        (["--out", "FILE"], "is a file"),
        (["--sweep", "NOT_A_SWEEP"], "sweep"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(argv, message, fashion_dir, tmp_path, capsys):
    (tmp_path / "FILE").write_text("x")
    argv = [str(tmp_path / a) if a in ("FILE", "NOT_A_SWEEP") else a for a in argv]
    try:
        status = main(["report", *argv, "--data_dir", str(fashion_dir), "--wandb_mode", "disabled"])
    except SystemExit as exit:  # argparse's own errors
        status = exit.code
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(error) == 1 and message in error[0]


def test_wandb_report_without_an_account_says_so_in_one_line(capsys):
    pytest.importorskip("wandb_workspaces")
    from fastmlp.report.wandb_report import check_wandb_report

    assert check_wandb_report("offline") is False
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--wandb_report" in lines[0] and "wandb login" in lines[0]


def test_the_wandb_report_has_a_heading_and_figures_per_section(report):
    pytest.importorskip("wandb_workspaces")
    import wandb_workspaces.reports.v2 as wr

    from fastmlp.report.wandb_report import report_blocks

    blocks = report_blocks(report.sections, "fastmlp", "someone", "report-tiny")
    headings = [block.text for block in blocks if isinstance(block, wr.H2)]
    assert len(headings) == 10 and headings[0].startswith("Q1.")
    media = [
        panel
        for block in blocks
        if isinstance(block, wr.PanelGrid)
        for panel in block.panels
        if isinstance(panel, wr.MediaBrowser)
    ]
    assert any("q7/q7_confusion_matrix" in panel.media_keys for panel in media)


def test_the_page_is_logged_to_wandb_offline(report, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from fastmlp.report.wandb_report import log_page
    from tests.test_cli import wandb_records

    monkeypatch.setenv("WANDB_API_KEY", "")
    run = log_page(
        report.sections,
        report.numbers,
        report.index,
        mode="offline",
        project="fastmlp",
        entity=None,
        group="report-tiny",
        directory=tmp_path,
    )
    assert run is not None
    records = wandb_records(tmp_path)
    history = json.dumps([r["history"] for r in records if r["type"] == "history"])
    assert "q7/q7_confusion_matrix" in history and "q3/q3_optimizers" in history
    assert "page" in history
    run_record = next(r["run"] for r in records if r["type"] == "run")
    assert run_record["run_group"] == "report-tiny" and run_record["job_type"] == "report"


def test_a_device_that_cannot_be_used_is_one_line_before_anything_is_written(
    fashion_dir, tmp_path, capsys
):
    import importlib.util

    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("with CuPy the device may well be usable")
    out = tmp_path / "report"
    argv = ["report", "--device", "cuda", "--out", str(out), "--data_dir", str(fashion_dir)]
    assert main([*argv, "--wandb_mode", "disabled"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "CuPy" in error[0]
    assert not out.exists()
