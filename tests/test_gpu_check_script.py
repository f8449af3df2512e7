"""scripts/gpu_check.sh, the one-command GPU check: valid bash, and the flags it passes exist."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from fastmlp.cli import build_parser

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


def test_the_gpu_check_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def parsed_command(command: str):
    """The arguments the GPU check passes to ``fastmlp COMMAND``, as fastmlp parses them."""
    text = SCRIPT.read_text().replace("\\\n", " ")
    lines = re.findall(rf"python -m fastmlp {command} ([^\n]*)", text)
    parsed = []
    for line in lines:
        arguments = ["out" if "$OUT" in word else word for word in shlex.split(line, posix=False)]
        parsed.append(build_parser().parse_args([command, *arguments]))
    return parsed[0] if len(parsed) == 1 else parsed


def test_the_bench_flags_of_the_gpu_check_exist():
    against_torch, stacks = parsed_command("bench")
    assert against_torch.device == "cuda" and against_torch.rounds == 3
    assert against_torch.competitors == ["torch", "torch-fused"]
    assert stacks.device == "cuda" and stacks.stack == [8, 64] and stacks.batch_sizes == [64]


def test_the_train_flags_of_the_gpu_check_exist():
    parsed = parsed_command("train")
    assert parsed.device == "cuda" and parsed.epochs == 3


@pytest.mark.skipif(
    importlib.util.find_spec("cupy") is not None, reason="with CuPy it runs the whole GPU check"
)
def test_without_a_gpu_the_check_says_so_and_exits_0(tmp_path):
    finished = subprocess.run(
        ["bash", str(SCRIPT)],
        env={
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "OUT": str(tmp_path),
            "HOME": str(tmp_path),
        },  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "no CUDA GPU" in finished.stdout and "gpu check: skipped" in finished.stdout
    assert "no CUDA GPU" in (tmp_path / "environment.txt").read_text()


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="with CuPy it probes")
def test_without_a_gpu_the_probes_say_so_and_exit_0(tmp_path):
    script = SCRIPT.with_name("gpu_probes.py")
    finished = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=SCRIPT.parents[1],
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert "no CUDA GPU" in finished.stdout
