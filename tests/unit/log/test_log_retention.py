"""Retention by time and size, DeleteRecords, truncation and delayed file deletion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from log_helpers import BASE_TIMESTAMP, FakeClock, append_batches, make_batch, range_bytes, record_offsets

from strom.log import LogConfig, PartitionLog
from strom.protocol.errors import ErrorCode, KafkaError

BATCH_SIZE = len(make_batch())


def _logs(directory: Path) -> list[int]:
    return sorted(int(name[:20]) for name in os.listdir(directory) if name.endswith(".log"))


def _filled(directory: Path, config: LogConfig, clock: FakeClock, segments: int = 4) -> PartitionLog:
    """A log whose segments hold 10 batches each; segment n has timestamps BASE + n * 1000."""
    log = PartitionLog(directory, config, clock=clock)
    for segment in range(segments):
        for _ in range(10):
            log.append(memoryview(make_batch(timestamp=BASE_TIMESTAMP + segment * 1000)))
    return log


@pytest.fixture
def config() -> LogConfig:
    return LogConfig(segment_bytes=10 * BATCH_SIZE, file_delete_delay_ms=0, retention_ms=-1)


class TestRetentionByTime:
    def test_deletes_expired_segments_in_order(
        self, log_dir: Path, config: LogConfig, clock: FakeClock
    ) -> None:
        config.retention_ms = 1500
        log = _filled(log_dir, config, clock)
        assert _logs(log_dir) == [0, 30, 60, 90]
        deleted = log.enforce_retention(BASE_TIMESTAMP + 2600)  # segments 0 and 1 are older than 1500 ms
        assert deleted == 20 * BATCH_SIZE
        assert _logs(log_dir) == [60, 90]
        assert log.log_start_offset == 60
        assert record_offsets(range_bytes(log.read(60, 1 << 20)))[0] == 60
        with pytest.raises(KafkaError) as info:
            log.read(59, 100)
        assert info.value.code == ErrorCode.OFFSET_OUT_OF_RANGE
        log.close()

    def test_active_segment_goes_too_after_a_roll(
        self, log_dir: Path, config: LogConfig, clock: FakeClock
    ) -> None:
        config.retention_ms = 10
        log = _filled(log_dir, config, clock, segments=2)
        log.enforce_retention(BASE_TIMESTAMP + 10_000)
        assert _logs(log_dir) == [60]
        assert (log.log_start_offset, log.log_end_offset, log.size_bytes()) == (60, 60, 0)
        assert log.append(memoryview(make_batch())).base_offset == 60
        log.close()

    def test_infinite_retention(self, log_dir: Path, config: LogConfig, clock: FakeClock) -> None:
        log = _filled(log_dir, config, clock)
        assert log.enforce_retention(BASE_TIMESTAMP + 10**12) == 0
        log.close()

    def test_compact_policy_keeps_old_segments(
        self, log_dir: Path, config: LogConfig, clock: FakeClock
    ) -> None:
        config.retention_ms = 10
        config.cleanup_policy = "compact"
        log = _filled(log_dir, config, clock)
        assert log.enforce_retention(BASE_TIMESTAMP + 10**6) == 0
        log.close()

    def test_nothing_above_the_high_watermark(
        self, log_dir: Path, config: LogConfig, clock: FakeClock
    ) -> None:
        config.retention_ms = 10
        log = _filled(log_dir, config, clock)
        log.high_watermark = 45
        log.enforce_retention(BASE_TIMESTAMP + 10**6)
        assert _logs(log_dir) == [30, 60, 90], "only segments entirely below the high watermark"
        log.close()


class TestRetentionBySize:
    def test_keeps_at_least_retention_bytes(self, log_dir: Path, config: LogConfig, clock: FakeClock) -> None:
        config.retention_bytes = 25 * BATCH_SIZE
        log = _filled(log_dir, config, clock)
        log.append(memoryview(make_batch()))  # 41 batches: 10 + 10 + 10 + 10 + 1
        log.enforce_retention(clock.now_ms)
        assert _logs(log_dir) == [30, 60, 90, 120]
        assert log.size_bytes() == 31 * BATCH_SIZE
        log.config.retention_bytes = 31 * BATCH_SIZE
        assert log.enforce_retention(clock.now_ms) == 0
        log.close()


class TestDeleteRecords:
    def test_moves_log_start_and_drops_whole_segments(
        self, log_dir: Path, config: LogConfig, clock: FakeClock
    ) -> None:
        log = _filled(log_dir, config, clock)
        assert log.delete_records_before(65) == 65
        assert _logs(log_dir) == [60, 90]
        assert log.log_start_offset == 65
        assert record_offsets(range_bytes(log.read(65, 1 << 20)))[0] == 63, "the batch holding 65 comes whole"
        with pytest.raises(KafkaError):
            log.read(64, 100)
        assert log.delete_records_before(10) == 65, "the log start offset never moves back"
        log.close()

    def test_up_to_the_high_watermark_only(self, log_dir: Path, config: LogConfig, clock: FakeClock) -> None:
        log = _filled(log_dir, config, clock, segments=1)
        assert log.delete_records_before(30) == 30
        assert log.read(30, 100).size == 0
        with pytest.raises(KafkaError) as info:
            log.delete_records_before(31)
        assert info.value.code == ErrorCode.OFFSET_OUT_OF_RANGE
        log.close()

    def test_enforce_retention_also_drops_segments_below_log_start(
        self, log_dir: Path, config: LogConfig, clock: FakeClock
    ) -> None:
        config.file_delete_delay_ms = 1000
        log = _filled(log_dir, config, clock)
        log.delete_records_before(61)
        assert [n.endswith(".deleted") for n in sorted(os.listdir(log_dir)) if ".log" in n] == [
            True,
            True,
            False,
            False,
        ]
        log.delete_expired_files(clock.now_ms + 999)
        assert len([n for n in os.listdir(log_dir) if n.endswith(".deleted")]) == 6
        log.delete_expired_files(clock.now_ms + 1000)
        assert not [n for n in os.listdir(log_dir) if n.endswith(".deleted")]
        log.close()


def test_in_flight_read_survives_segment_deletion(log_dir: Path, config: LogConfig, clock: FakeClock) -> None:
    config.file_delete_delay_ms = 60_000
    config.retention_ms = 10
    log = _filled(log_dir, config, clock)
    result = log.read(0, 1 << 20)
    expected = range_bytes(result)
    log.enforce_retention(BASE_TIMESTAMP + 10**6)
    assert range_bytes(result) == expected, "the file stays open until file.delete.delay.ms"
    log.close()


class TestTruncate:
    def test_inside_a_segment(self, log_dir: Path, config: LogConfig, clock: FakeClock) -> None:
        log = _filled(log_dir, config, clock)
        log.truncate_to(45)
        assert _logs(log_dir) == [0, 30]
        assert log.log_end_offset == 45
        assert record_offsets(range_bytes(log.read(30, 1 << 20)))[-1] == 44
        assert log.append(memoryview(make_batch())).base_offset == 45
        log.close()

    def test_at_a_segment_base(self, log_dir: Path, config: LogConfig, clock: FakeClock) -> None:
        log = _filled(log_dir, config, clock)
        log.truncate_to(60)
        assert _logs(log_dir) == [0, 30, 60]
        assert (log.log_end_offset, log.read(60, 100).size) == (60, 0)
        log.close()

    def test_inside_a_batch_removes_the_whole_batch(
        self, log_dir: Path, config: LogConfig, clock: FakeClock
    ) -> None:
        log = _filled(log_dir, config, clock, segments=1)
        log.truncate_to(10)
        assert log.log_end_offset == 9
        log.close()

    def test_before_the_first_segment(self, log_dir: Path, config: LogConfig, clock: FakeClock) -> None:
        log = _filled(log_dir, config, clock)
        log.delete_records_before(65)
        log.truncate_to(20)
        assert _logs(log_dir) == [20]
        assert (log.log_start_offset, log.log_end_offset) == (20, 20)
        log.close()

    def test_beyond_the_end_is_a_no_op(self, log_dir: Path, config: LogConfig, clock: FakeClock) -> None:
        log = _filled(log_dir, config, clock, segments=1)
        log.truncate_to(500)
        assert log.log_end_offset == 30
        log.close()

    def test_indexes_follow(self, log_dir: Path, clock: FakeClock) -> None:
        config = LogConfig(index_interval_bytes=0, file_delete_delay_ms=0)
        log = PartitionLog(log_dir, config, clock=clock)
        for number in range(20):
            log.append(memoryview(make_batch(timestamp=BASE_TIMESTAMP + number * 10)))
        log.truncate_to(30)
        assert log.max_timestamp() == (29, BASE_TIMESTAMP + 92)
        assert log.offset_for_timestamp(BASE_TIMESTAMP + 150) is None
        append_batches(log, 2, timestamp=BASE_TIMESTAMP + 5)
        assert record_offsets(range_bytes(log.read(31, 1 << 20))) == list(range(30, 36))
        log.close()
