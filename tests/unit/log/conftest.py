"""Fixtures for the log tests: a controllable clock and small-segment configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from log_helpers import FakeClock

from strom.log import LogConfig


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "orders-0"


@pytest.fixture
def small_config() -> LogConfig:
    """4 KiB segments with an index entry every 256 bytes: many rolls and index entries from few batches."""
    return LogConfig(segment_bytes=4096, index_interval_bytes=256, file_delete_delay_ms=0)
