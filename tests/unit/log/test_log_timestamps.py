"""ListOffsets by timestamp and MAX_TIMESTAMP, checked against a brute-force scan of the records."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from log_helpers import BASE_TIMESTAMP, FakeClock, decode_records, make_batch

from strom.log import LogConfig, PartitionLog
from strom.protocol.record_batch import Compression, Record, build_batch


def _brute_force(log: PartitionLog, target: int) -> tuple[int, int] | None:
    records = decode_records(log.read_bytes(0, 1 << 30) if log.log_end_offset else b"")
    segments = [records]
    offset = len(records) and records[-1][0] + 1
    while offset < log.log_end_offset:  # read() stops at segment ends: keep going
        more = decode_records(log.read_bytes(offset, 1 << 30))
        segments.append(more)
        offset = more[-1][0] + 1
    for offset, timestamp, _ in (r for chunk in segments for r in chunk):
        if timestamp >= target and offset >= log.log_start_offset:
            return offset, timestamp
    return None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.lists(st.integers(-50, 50), min_size=1, max_size=5),  # per-record timestamp deltas
        min_size=1,
        max_size=30,
    ),
    codec=st.sampled_from([Compression.NONE, Compression.ZSTD]),
)
def test_offset_for_timestamp_matches_brute_force(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[int]], codec: int
) -> None:
    log = PartitionLog(
        tmp_path_factory.mktemp("ts") / "t-0", LogConfig(segment_bytes=1500, index_interval_bytes=150)
    )
    for number, deltas in enumerate(batches):
        records = [Record(i, delta, None, b"v" * 30) for i, delta in enumerate(deltas)]
        data = bytearray(build_batch(records, base_timestamp=1000 + number * 20, compression=codec))
        log.append(memoryview(data))
    targets = {t for number in range(len(batches)) for t in (1000 + number * 20 - 60, 1000 + number * 20 + 7)}
    for target in sorted(targets | {0, 10**6}):
        assert log.offset_for_timestamp(target) == _brute_force(log, target), target
    log.close()


class TestMaxTimestamp:
    def test_earliest_record_with_the_largest_timestamp(self, log_dir: Path, small_config: LogConfig) -> None:
        log = PartitionLog(log_dir, small_config)
        for number in range(30):
            timestamp = BASE_TIMESTAMP + (500 if number == 12 else number)
            log.append(memoryview(make_batch(3, timestamp=timestamp)))
        log.append(memoryview(make_batch(3, timestamp=BASE_TIMESTAMP + 500)))  # a tie, later: not chosen
        assert log.max_timestamp() == (38, BASE_TIMESTAMP + 502)
        log.close()

    def test_empty_log(self, log_dir: Path) -> None:
        log = PartitionLog(log_dir, LogConfig())
        assert log.max_timestamp() is None
        assert log.offset_for_timestamp(0) is None
        log.close()

    def test_log_append_time_points_at_the_first_record(self, log_dir: Path, clock: FakeClock) -> None:
        log = PartitionLog(log_dir, LogConfig(message_timestamp_type="LogAppendTime"), clock=clock)
        log.append(memoryview(make_batch(2)))
        clock.advance(10)
        log.append(memoryview(make_batch(4)))
        assert log.max_timestamp() == (2, clock.now_ms)
        assert log.offset_for_timestamp(clock.now_ms - 5) == (2, clock.now_ms)
        log.close()

    def test_survives_clean_reopen(self, log_dir: Path, small_config: LogConfig) -> None:
        log = PartitionLog(log_dir, small_config)
        for number in range(40):
            log.append(memoryview(make_batch(2, timestamp=BASE_TIMESTAMP + (99 if number == 7 else 0))))
        log.close()
        reopened = PartitionLog(log_dir, small_config, clean_shutdown=True)
        assert reopened.max_timestamp() == (15, BASE_TIMESTAMP + 100)
        assert reopened.offset_for_timestamp(BASE_TIMESTAMP + 50) == (14, BASE_TIMESTAMP + 99)
        reopened.close()


def test_records_before_log_start_are_skipped(log_dir: Path) -> None:
    log = PartitionLog(log_dir, LogConfig())
    for _ in range(3):
        log.append(memoryview(make_batch(3, timestamp=BASE_TIMESTAMP)))
    log.delete_records_before(4)
    assert log.offset_for_timestamp(BASE_TIMESTAMP) == (4, BASE_TIMESTAMP + 1)
    log.close()
