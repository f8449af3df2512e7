"""The README stays true: its Python example runs as written and its flags exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fastmlp.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for example in python_blocks():  # in order: a later one goes on from the earlier ones
        exec(compile(example, str(README), "exec"), namespace)
    assert "test accuracy 0.8" in capsys.readouterr().out
    assert namespace["history"].best_epoch is not None
    assert len(namespace["histories"]) == 4 and namespace["best"].n_models == 1  # the stack
    assert all(accuracy > 0.7 for accuracy in namespace["accuracies"])


def test_every_train_flag_in_the_readme_exists():
    table = README.read_text().split("`fastmlp train` flags", 1)[1].split("Every run writes", 1)[0]
    code = " ".join(re.findall(r"`([^`]*)`", table))
    flags = set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9_-]*)", code))
    known = {
        option
        for action in build_parser()._subparsers._group_actions[0].choices["train"]._actions
        for option in action.option_strings
    }
    assert flags, "the README lists no flags"
    assert flags <= known, f"flags in the README that fastmlp train lacks: {sorted(flags - known)}"


def test_readme_tables_match_the_registries():
    """The generated sections (flags, optimizers, activations, choices) are current:
    ``python -m fastmlp.runs.docs README.md`` rewrites them after a registry changes."""
    from fastmlp.runs.docs import TABLES, render

    text = README.read_text()
    for name in TABLES:
        assert f"<!-- generated: {name} -->" in text, f"the README lacks the {name} table"
    stale = "README tables are stale: run python -m fastmlp.runs.docs README.md"
    assert render(text) == text, stale
