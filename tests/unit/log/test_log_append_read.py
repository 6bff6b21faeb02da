"""PartitionLog append and read: offsets, segment rolls, fetch size rules, rejected input."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from log_helpers import (
    BASE_TIMESTAMP,
    FakeClock,
    append_batches,
    batch_offsets,
    decode_records,
    make_batch,
    range_bytes,
    record_offsets,
)

from strom.log import AppendOrigin, LogConfig, PartitionLog
from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.record_batch import (
    ControlType,
    Record,
    TimestampType,
    build_batch,
    build_control_batch,
    parse_batch_header,
)


def _error(code: ErrorCode, log: PartitionLog, data: bytearray, **kwargs: object) -> None:
    with pytest.raises(KafkaError) as info:
        log.append(memoryview(data), **kwargs)  # type: ignore[arg-type]
    assert info.value.code == code


def _segment_files(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".log"))


class TestAppend:
    def test_offsets_are_assigned_in_place(self, log_dir: Path, clock: FakeClock) -> None:
        log = PartitionLog(log_dir, LogConfig(), clock=clock)
        first, second = make_batch(3), make_batch(5)
        assert log.append(memoryview(first), leader_epoch=4).base_offset == 0
        result = log.append(memoryview(second), leader_epoch=4)
        assert (result.base_offset, result.last_offset, result.record_count) == (3, 7, 5)
        assert result.log_append_time == -1 and result.log_start_offset == 0
        assert result.max_timestamp == BASE_TIMESTAMP + 4
        header = parse_batch_header(second)
        assert (header.base_offset, header.partition_leader_epoch) == (3, 4)
        assert log.log_end_offset == log.high_watermark == 8
        stored = range_bytes(log.read(0, 1 << 20))
        assert stored == bytes(first) + bytes(second), "the produced bytes are stored as they are"
        log.close()

    def test_files_use_kafka_names(self, log_dir: Path) -> None:
        log = PartitionLog(log_dir, LogConfig())
        append_batches(log, 1)
        log.close()
        assert sorted(os.listdir(log_dir)) == [
            "00000000000000000000.index",
            "00000000000000000000.log",
            "00000000000000000000.timeindex",
            "00000000000000000003.snapshot",  # the producer state at the log end offset, written on close
        ]
        assert (log.topic, log.partition) == ("orders", 0)

    def test_rolls_by_size(self, log_dir: Path, small_config: LogConfig) -> None:
        log = PartitionLog(log_dir, small_config)
        batch_size = len(make_batch())
        per_segment = small_config.segment_bytes // batch_size
        append_batches(log, per_segment * 3 + 1)
        names = _segment_files(log_dir)
        assert len(names) == 4
        assert names[1] == f"{per_segment * 3:020d}.log"
        assert all(os.path.getsize(log_dir / name) <= small_config.segment_bytes for name in names)
        log.close()

    def test_rolls_by_segment_ms_from_first_batch_timestamp(self, log_dir: Path, clock: FakeClock) -> None:
        log = PartitionLog(log_dir, LogConfig(segment_ms=1000), clock=clock)
        log.append(memoryview(make_batch(1, timestamp=BASE_TIMESTAMP)))
        log.append(memoryview(make_batch(1, timestamp=BASE_TIMESTAMP + 1000)))
        assert len(_segment_files(log_dir)) == 1
        log.append(memoryview(make_batch(1, timestamp=BASE_TIMESTAMP + 1001)))
        assert _segment_files(log_dir)[-1] == f"{2:020d}.log"
        log.close()

    def test_maybe_roll_without_appends(self, log_dir: Path, clock: FakeClock) -> None:
        log = PartitionLog(log_dir, LogConfig(segment_ms=1000), clock=clock)
        log.maybe_roll(clock.now_ms + 5000)
        assert len(_segment_files(log_dir)) == 1, "an empty segment never rolls"
        log.append(memoryview(make_batch(1, timestamp=clock.now_ms)))
        log.maybe_roll(clock.now_ms + 1000)
        assert len(_segment_files(log_dir)) == 1
        log.maybe_roll(clock.now_ms + 1001)
        assert _segment_files(log_dir)[-1] == f"{1:020d}.log"
        log.close()

    def test_rolls_when_index_is_full(self, log_dir: Path) -> None:
        config = LogConfig(index_interval_bytes=0, segment_index_bytes=8 * 3)
        log = PartitionLog(log_dir, config)
        append_batches(log, 5)  # entries for batches 2..4 fill the index: the fifth batch starts a segment
        assert _segment_files(log_dir)[-1] == f"{12:020d}.log"
        # a read stops at the end of a segment
        assert record_offsets(range_bytes(log.read(0, 1 << 20))) == list(range(12))
        log.close()

    def test_log_append_time(self, log_dir: Path, clock: FakeClock) -> None:
        log = PartitionLog(log_dir, LogConfig(message_timestamp_type="LogAppendTime"), clock=clock)
        data = make_batch(3, timestamp=5)
        result = log.append(memoryview(data))
        assert result.log_append_time == clock.now_ms == result.max_timestamp
        assert result.offset_of_max_timestamp == 0
        stored = range_bytes(log.read(0, 1 << 20))
        header = parse_batch_header(stored)
        assert header.timestamp_type is TimestampType.LOG_APPEND_TIME
        assert header.max_timestamp == clock.now_ms and header.base_timestamp == 5
        assert [ts for _, ts, _ in decode_records(stored)] == [clock.now_ms] * 3
        log.close()

    def test_flush_messages_advances_recovery_point(self, log_dir: Path) -> None:
        log = PartitionLog(log_dir, LogConfig(flush_interval_messages=5))
        append_batches(log, 1)
        assert log.recovery_point == 0
        append_batches(log, 1)
        assert log.recovery_point == 6
        log.close()


class TestRejectedAppends:
    @pytest.fixture
    def log(self, log_dir: Path) -> PartitionLog:
        log = PartitionLog(log_dir, LogConfig(max_message_bytes=2000))
        append_batches(log, 2)
        return log

    def _unchanged(self, log: PartitionLog, before: bytes) -> None:
        assert log.log_end_offset == 6
        assert range_bytes(log.read(0, 1 << 20)) == before
        append_batches(log, 1)  # and the log still works
        assert log.log_end_offset == 9

    @pytest.mark.parametrize(
        ("mutate", "code"),
        [
            (lambda b: b.__setitem__(-1, b[-1] ^ 1), ErrorCode.CORRUPT_MESSAGE),
            (lambda b: b.__delitem__(slice(-5, None)), ErrorCode.CORRUPT_MESSAGE),
            (lambda b: b.extend(b"\x00" * 20), ErrorCode.CORRUPT_MESSAGE),
            (lambda b: b.__setitem__(16, 1), ErrorCode.INVALID_RECORD),
            (lambda b: b.extend(make_batch()), ErrorCode.INVALID_RECORD),
            (lambda b: struct.pack_into(">q", b, 0, 17), ErrorCode.INVALID_RECORD),
        ],
        ids=["crc", "truncated", "trailing-bytes", "magic", "two-batches", "base-offset"],
    )
    def test_bad_input_leaves_log_unchanged(self, log: PartitionLog, mutate, code: ErrorCode) -> None:  # type: ignore[no-untyped-def]
        before = range_bytes(log.read(0, 1 << 20))
        data = make_batch()
        mutate(data)
        _error(code, log, data)
        self._unchanged(log, before)

    def test_message_too_large(self, log: PartitionLog) -> None:
        before = range_bytes(log.read(0, 1 << 20))
        _error(ErrorCode.MESSAGE_TOO_LARGE, log, make_batch(1, value_size=2000))
        self._unchanged(log, before)

    def test_batch_larger_than_a_segment(self, log_dir: Path) -> None:
        log = PartitionLog(log_dir, LogConfig(segment_bytes=1000))
        _error(ErrorCode.RECORD_LIST_TOO_LARGE, log, make_batch(1, value_size=1000))
        assert log.log_end_offset == 0

    def test_control_batches_only_from_coordinators(self, log: PartitionLog) -> None:
        _error(ErrorCode.INVALID_RECORD, log, make_batch(1, is_control=True))
        marker = bytearray(build_control_batch(1, 0, ControlType.COMMIT, 0, 0))
        assert log.append(memoryview(marker), origin=AppendOrigin.COORDINATOR).base_offset == 6

    def test_idempotent_batch_needs_a_sequence(self, log: PartitionLog) -> None:
        _error(ErrorCode.INVALID_RECORD, log, make_batch(producer_id=7, producer_epoch=0, base_sequence=-1))
        sequenced = make_batch(producer_id=7, producer_epoch=0, base_sequence=0)
        assert log.append(memoryview(sequenced)).base_offset == 6

    def test_producer_may_not_claim_log_append_time(self, log_dir: Path) -> None:
        log = PartitionLog(log_dir, LogConfig(message_timestamp_type="LogAppendTime"))
        _error(ErrorCode.INVALID_TIMESTAMP, log, make_batch(timestamp_type=TimestampType.LOG_APPEND_TIME))

    def test_create_time_topic_resets_a_claimed_log_append_time(self, log: PartitionLog) -> None:
        log.append(memoryview(make_batch(timestamp_type=TimestampType.LOG_APPEND_TIME)))
        stored = range_bytes(log.read(6, 1 << 20))
        assert parse_batch_header(stored).timestamp_type is TimestampType.CREATE_TIME
        assert batch_offsets(stored) == [(6, 8)]  # CRC recomputed

    def test_failed_write_is_undone(self, log: PartitionLog, monkeypatch: pytest.MonkeyPatch) -> None:
        before = range_bytes(log.read(0, 1 << 20))
        real_pwrite = os.pwrite

        def disk_full_midway(fd: int, data: memoryview, position: int) -> int:
            if len(data) > 20:
                return real_pwrite(fd, data[:20], position)  # a short write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr("strom.log.segment.os.pwrite", disk_full_midway)
        _error(ErrorCode.KAFKA_STORAGE_ERROR, log, make_batch())
        monkeypatch.undo()
        assert os.path.getsize(log.directory / f"{0:020d}.log") == len(before)
        self._unchanged(log, before)

    def test_read_only_buffer_is_refused(self, log: PartitionLog) -> None:
        with pytest.raises(TypeError):
            log.append(memoryview(bytes(make_batch())))

    def test_closed_log(self, log: PartitionLog) -> None:
        log.close()
        _error(ErrorCode.KAFKA_STORAGE_ERROR, log, make_batch())


class TestRead:
    @pytest.fixture
    def log(self, log_dir: Path, small_config: LogConfig) -> PartitionLog:
        """40 batches of 3 records over several segments."""
        log = PartitionLog(log_dir, small_config)
        append_batches(log, 40)
        return log

    def test_everything_across_segments(self, log: PartitionLog) -> None:
        offsets: list[int] = []
        position = 0
        while position < log.log_end_offset:
            chunk = record_offsets(range_bytes(log.read(position, 1 << 20)))
            assert chunk and chunk[0] <= position
            offsets.extend(o for o in chunk if o >= position)
            position = chunk[-1] + 1
        assert offsets == list(range(120))

    def test_starts_at_the_batch_holding_the_offset(self, log: PartitionLog) -> None:
        assert batch_offsets(range_bytes(log.read(64, 200)))[0] == (63, 65)

    def test_whole_batches_within_max_bytes(self, log: PartitionLog) -> None:
        batch_size = len(make_batch())
        for max_bytes in (batch_size, batch_size + 1, 3 * batch_size - 1, 3 * batch_size):
            result = log.read(0, max_bytes)
            assert result.size == (max_bytes // batch_size) * batch_size
            assert len(batch_offsets(range_bytes(result))) == max_bytes // batch_size

    def test_first_batch_rule(self, log: PartitionLog) -> None:
        batch_size = len(make_batch())
        result = log.read(3, 10)
        assert result.size == batch_size and batch_offsets(range_bytes(result)) == [(3, 5)]
        assert log.read(3, 10, min_one_batch=False).records is None
        assert log.read(3, 0).size == batch_size

    def test_max_offset_bounds_the_read(self, log: PartitionLog) -> None:
        assert batch_offsets(range_bytes(log.read(0, 1 << 20, max_offset=9))) == [(0, 2), (3, 5), (6, 8)]
        assert batch_offsets(range_bytes(log.read(0, 1 << 20, max_offset=8))) == [(0, 2), (3, 5)]
        assert log.read(6, 1 << 20, max_offset=8).records is None, "a batch reaching max_offset is hidden"
        assert log.read(9, 1 << 20, max_offset=9).size == 0

    def test_high_watermark_is_settable(self, log: PartitionLog) -> None:
        log.high_watermark = 30
        assert log.high_watermark == 30
        assert log.read(0, 0).high_watermark == 30
        log.append(memoryview(make_batch()))
        assert log.high_watermark == 30, "an explicit high watermark does not follow appends"
        log.high_watermark = 10_000
        assert log.high_watermark == log.log_end_offset == 123

    def test_log_end_offset_reads_empty(self, log: PartitionLog) -> None:
        result = log.read(120, 1 << 20)
        assert (result.records, result.size) == (None, 0)
        assert (result.log_end_offset, result.high_watermark) == (120, 120)

    @pytest.mark.parametrize("offset", [-1, 121, 10_000])
    def test_out_of_range(self, log: PartitionLog, offset: int) -> None:
        with pytest.raises(KafkaError) as info:
            log.read(offset, 100)
        assert info.value.code == ErrorCode.OFFSET_OUT_OF_RANGE

    def test_read_bytes(self, log: PartitionLog) -> None:
        data = log.read_bytes(10, 1 << 20)
        assert record_offsets(data)[0] == 9
        assert decode_records(data)[1][2] == b"B" * 20
        assert log.read_bytes(120, 100) == b""

    def test_reads_survive_a_clean_reopen(
        self, log: PartitionLog, log_dir: Path, small_config: LogConfig
    ) -> None:
        expected = [log.read_bytes(offset, 700) for offset in range(0, 120, 7)]
        log.close()
        reopened = PartitionLog(log_dir, small_config, clean_shutdown=True)
        assert [reopened.read_bytes(offset, 700) for offset in range(0, 120, 7)] == expected
        assert reopened.log_end_offset == 120
        reopened.append(memoryview(make_batch()))
        assert reopened.log_end_offset == 123


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.tuples(st.integers(1, 6), st.integers(0, 300)), min_size=1, max_size=40),
    interval=st.sampled_from([0, 100, 1000, 4096]),
    max_bytes=st.integers(0, 3000),
)
def test_reads_match_a_brute_force_scan(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[tuple[int, int]], interval: int, max_bytes: int
) -> None:
    """For every offset, read() returns exactly the batches a linear scan of the log would pick."""
    directory = tmp_path_factory.mktemp("prop") / "t-0"
    log = PartitionLog(directory, LogConfig(segment_bytes=3000, index_interval_bytes=interval))
    batches: list[tuple[int, int, int]] = []  # (base offset, last offset, size)
    for count, value_size in sizes:
        data = bytearray(
            build_batch([Record(i, 0, None, b"x" * value_size) for i in range(count)], base_timestamp=0)
        )
        result = log.append(memoryview(data))
        batches.append((result.base_offset, result.last_offset, len(data)))
    for offset in range(log.log_end_offset):
        got = batch_offsets(range_bytes(log.read(offset, max_bytes)))
        start = next(i for i, (_, last, _) in enumerate(batches) if last >= offset)
        expected = [batches[start][:2]]
        used = batches[start][2]
        if used > max_bytes:
            assert got == expected  # first-batch rule
            continue
        for base, last, size in batches[start + 1 :]:
            if used + size > max_bytes or log_segment_of(log, base) != log_segment_of(log, batches[start][0]):
                break
            expected.append((base, last))
            used += size
        assert got == expected
    log.close()


def log_segment_of(log: PartitionLog, offset: int) -> int:
    """Base offset of the segment holding ``offset``: a read never crosses a segment boundary."""
    return max(name for name in (int(p[:20]) for p in _segment_files(log.directory)) if name <= offset)
