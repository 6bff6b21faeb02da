"""The project's own rules, checked like any other behaviour: lint, formatting and types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ["strom", "tests", "benchmarks", "tools", "examples"]


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["ruff", "check", *CHECKED], id="ruff-check"),
        pytest.param(["ruff", "format", "--check", *CHECKED], id="ruff-format"),
        pytest.param(["mypy"], id="mypy"),
    ],
)
def test_tool_passes(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout + result.stderr
