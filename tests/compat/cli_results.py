"""Checks on a finished `strom` command (text mode) shared by the CLI compatibility tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
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


#: `strom ARGS...` run to completion, text mode.
Strom = Callable[..., subprocess.CompletedProcess[str]]

COMMAND_TIMEOUT_S = 120


def run_strom(*args: str) -> subprocess.CompletedProcess[str]:
    """The `strom` command as a user runs it, without a bootstrap server from the environment."""
    return subprocess.run(
        [sys.executable, "-m", "strom.cli.main", *args],
        capture_output=True,
        text=True,
        env={key: value for key, value in os.environ.items() if key != "STROM_BOOTSTRAP"},
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def strom_against(bootstrap: str) -> Strom:
    """``strom(ARGS...)`` against one broker, named with --bootstrap-server."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_strom(*args, "--bootstrap-server", bootstrap)

    return run
