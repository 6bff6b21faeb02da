"""Recovery after a crash resumes at the recovery point instead of re-reading the whole active segment.

A flush fsyncs the batches below the recovery point together with their index entries, so reopening after a
crash validates only what follows the last index entry below it. These tests check that the result is the
same as validating everything, and that indexes which do not fit the data still lead to a full validation.
A "crash" is a log abandoned without close() after a flush and more appends: what kill -9 leaves behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from strom.log import LogConfig, PartitionLog
from strom.protocol.record_batch import Record, build_batch

BASE_TIMESTAMP = 1_700_000_000_000
BATCHES = 60
FLUSHED = 40


@pytest.fixture
def config() -> LogConfig:
    return LogConfig(segment_bytes=1 << 30, index_interval_bytes=300, file_delete_delay_ms=0)


def _batch(number: int) -> bytearray:
    records = [Record(i, i, f"k{i}".encode(), b"v%d-%d" % (number, i) * 20) for i in range(3)]
    return bytearray(build_batch(records, base_timestamp=BASE_TIMESTAMP + number * 3 - (number % 4) * 5))


def _crash_after_flush(directory: Path, config: LogConfig) -> int:
    """Append, flush, append more, abandon; returns the recovery point the flush reached."""
    log = PartitionLog(directory, config)
    for number in range(BATCHES):
        log.append(memoryview(_batch(number)))
        if number == FLUSHED - 1:
            log.flush()
    return log.recovery_point


def _reopen(directory: Path, config: LogConfig, recovery_point: int) -> tuple[int, list[bytes], list[object]]:
    """End offset, every batch read back, and the answers to ListOffsets by time, then a clean close."""
    log = PartitionLog(directory, config, recovery_point=recovery_point)
    try:
        batches = []
        for offset in range(log.log_start_offset, log.log_end_offset):
            read = log.read(offset, 1)
            assert read.records is not None
            batches.append(log.read_bytes(offset, 1))
        times = [log.offset_for_timestamp(BASE_TIMESTAMP + t) for t in range(-12, 3 * BATCHES + 2)]
        return log.log_end_offset, batches, times
    finally:
        log.close()


def _index_files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.glob("*index"))}


@pytest.mark.parametrize("checkpointed", [3 * FLUSHED, FLUSHED])
def test_resuming_at_the_recovery_point_equals_a_full_validation(
    tmp_path: Path, config: LogConfig, checkpointed: int
) -> None:
    """Also from an older checkpointed recovery point: index entries written after it are dropped first."""
    directory = tmp_path / "orders-0"
    assert _crash_after_flush(directory, config) == 3 * FLUSHED
    recovery_point = checkpointed
    full = tmp_path / "copy" / "orders-0"
    shutil.copytree(directory, full)

    resumed = _reopen(directory, config, recovery_point)
    validated = _reopen(full, config, 0)

    assert resumed[0] == validated[0] == 3 * BATCHES
    assert resumed == validated
    assert _index_files(directory) == _index_files(full)


@pytest.mark.parametrize(("checkpointed", "damaged"), [(3 * FLUSHED, FLUSHED + 10), (FLUSHED, FLUSHED - 10)])
def test_damage_after_the_recovery_point_is_cut(
    tmp_path: Path, config: LogConfig, checkpointed: int, damaged: int
) -> None:
    """Damage in batch ``damaged``, above the recovery point (when it is an older checkpoint, also below
    what was flushed: index entries from there on must not survive the cut)."""
    directory = tmp_path / "orders-0"
    _crash_after_flush(directory, config)
    segment = directory / f"{0:020d}.log"
    data = bytearray(segment.read_bytes())
    data[sum(len(_batch(number)) for number in range(damaged)) + 70] ^= 0xFF
    segment.write_bytes(data)
    full = tmp_path / "copy" / "orders-0"
    shutil.copytree(directory, full)

    resumed = _reopen(directory, config, checkpointed)
    validated = _reopen(full, config, 0)

    assert resumed[0] == 3 * damaged
    assert resumed == validated
    assert _index_files(directory) == _index_files(full)


@pytest.mark.parametrize("damage", ["torn", "garbage", "missing"])
def test_indexes_that_do_not_fit_lead_to_a_full_validation(
    tmp_path: Path, config: LogConfig, damage: str
) -> None:
    directory = tmp_path / "orders-0"
    recovery_point = _crash_after_flush(directory, config)
    index = directory / f"{0:020d}.index"
    if damage == "torn":
        index.write_bytes(index.read_bytes()[:-3])
    elif damage == "garbage":
        index.write_bytes(bytes(range(7, 71)) * 2)
    else:
        index.unlink()
    full = tmp_path / "copy" / "orders-0"
    shutil.copytree(directory, full)

    resumed = _reopen(directory, config, recovery_point)
    validated = _reopen(full, config, 0)

    assert resumed[0] == 3 * BATCHES
    assert resumed == validated
    assert _index_files(directory) == _index_files(full)
