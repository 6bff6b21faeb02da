"""Checks on a finished `strom` command (text mode) shared by the CLI compatibility tests."""

from __future__ import annotations

import json
import subprocess
from typing import Any


def succeeded(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}; stderr: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exit 1 and said why on one ``error:`` line, no traceback."""
    assert result.returncode == 1, (
        f"exit {result.returncode}; stdout: {result.stdout}; stderr: {result.stderr}"
    )
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(succeeded(result).stdout)
