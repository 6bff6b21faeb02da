"""Recovery after a crash: a process killed mid-write leaves torn or corrupt tails and stale indexes behind.

A "crash" here is a log that is simply abandoned (never closed): everything appended was handed to the OS, but
no index was written and nothing was fsynced, exactly what kill -9 leaves.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from log_helpers import BASE_TIMESTAMP, batch_offsets, decode_records, make_batch, range_bytes, record_offsets

from strom.log import LogConfig, PartitionLog
from strom.log.segment import LogSegment
from strom.protocol.record_batch import BATCH_HEADER_SIZE

BATCH_SIZE = len(make_batch())


@pytest.fixture
def config() -> LogConfig:
    return LogConfig(segment_bytes=10 * BATCH_SIZE, index_interval_bytes=BATCH_SIZE, file_delete_delay_ms=0)


def _crashed_log(directory: Path, config: LogConfig, batches: int = 35) -> list[bytes]:
    """Append ``batches`` batches (timestamps BASE + n) and abandon the log; returns each stored batch."""
    log = PartitionLog(directory, config)
    stored = []
    for number in range(batches):
        data = make_batch(timestamp=BASE_TIMESTAMP + number)
        log.append(memoryview(data))
        stored.append(bytes(data))
    return stored


def _segment(directory: Path, base: int) -> Path:
    return directory / f"{base:020d}.log"


def _all_bytes(log: PartitionLog) -> bytes:
    out = b""
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        chunk = log.read_bytes(offset, 1 << 30)
        out += chunk
        offset = batch_offsets(chunk)[-1][1] + 1
    return out


def _assert_index_lookups(log: PartitionLog) -> None:
    """Every offset reads from the batch holding it, and every timestamp finds the right record."""
    for offset in range(log.log_start_offset, log.log_end_offset):
        base, last = batch_offsets(range_bytes(log.read(offset, 1)))[0]
        assert base <= offset <= last
    records = decode_records(_all_bytes(log))
    for target in range(BASE_TIMESTAMP - 1, BASE_TIMESTAMP + log.log_end_offset // 3 + 3):
        expected = next(((offset, ts) for offset, ts, _ in records if ts >= target), None)
        assert log.offset_for_timestamp(target) == expected


class TestTornTail:
    def test_partial_last_batch_is_cut(self, log_dir: Path, config: LogConfig) -> None:
        stored = _crashed_log(log_dir, config)
        last = _segment(log_dir, 90)
        os.truncate(last, os.path.getsize(last) - 7)
        log = PartitionLog(log_dir, config)
        assert log.log_end_offset == 102
        assert os.path.getsize(last) == 4 * BATCH_SIZE
        assert _all_bytes(log) == b"".join(stored[:34]), "data before the tear is intact"
        _assert_index_lookups(log)
        assert log.append(memoryview(make_batch())).base_offset == 102
        log.close()

    def test_only_a_header_fragment(self, log_dir: Path, config: LogConfig) -> None:
        _crashed_log(log_dir, config)
        with open(_segment(log_dir, 90), "ab") as tail:
            tail.write(make_batch()[: BATCH_HEADER_SIZE - 10])
        log = PartitionLog(log_dir, config)
        assert log.log_end_offset == 105
        log.close()

    def test_zero_filled_tail(self, log_dir: Path, config: LogConfig) -> None:
        """A file system may show a crashed append as zeros."""
        _crashed_log(log_dir, config)
        with open(_segment(log_dir, 90), "ab") as tail:
            tail.write(bytes(BATCH_SIZE))
        log = PartitionLog(log_dir, config)
        assert log.log_end_offset == 105
        assert os.path.getsize(_segment(log_dir, 90)) == 5 * BATCH_SIZE
        log.close()


class TestCorruption:
    def test_flipped_byte_in_the_last_batch(self, log_dir: Path, config: LogConfig) -> None:
        stored = _crashed_log(log_dir, config)
        with open(_segment(log_dir, 90), "r+b") as segment:
            segment.seek(4 * BATCH_SIZE + BATCH_HEADER_SIZE + 10)
            byte = segment.read(1)
            segment.seek(-1, os.SEEK_CUR)
            segment.write(bytes([byte[0] ^ 0x40]))
        log = PartitionLog(log_dir, config)
        assert log.log_end_offset == 102
        assert _all_bytes(log) == b"".join(stored[:34])
        _assert_index_lookups(log)
        log.close()

    def test_corrupt_middle_segment_drops_what_follows(self, log_dir: Path, config: LogConfig) -> None:
        stored = _crashed_log(log_dir, config)
        with open(_segment(log_dir, 30), "r+b") as segment:
            segment.seek(3 * BATCH_SIZE + 30)
            segment.write(b"\xff\xff")
        log = PartitionLog(log_dir, config)
        assert log.log_end_offset == 39
        assert sorted(p.name for p in log_dir.glob("*.log")) == [f"{0:020d}.log", f"{30:020d}.log"]
        assert _all_bytes(log) == b"".join(stored[:13])
        _assert_index_lookups(log)
        log.close()

    def test_offsets_going_backwards_end_the_log(self, log_dir: Path, config: LogConfig) -> None:
        _crashed_log(log_dir, config, batches=3)
        with open(_segment(log_dir, 0), "ab") as segment:
            segment.write(make_batch())  # valid CRC, but base offset 0 again
        log = PartitionLog(log_dir, config)
        assert log.log_end_offset == 9
        log.close()


class TestRecoveryScope:
    def test_segments_below_the_recovery_point_are_trusted(self, log_dir: Path, config: LogConfig) -> None:
        """Only segments from the recovery point on are scanned: damage below it goes unseen (as in Kafka)."""
        _crashed_log(log_dir, config)
        with open(_segment(log_dir, 0), "r+b") as segment:
            segment.seek(BATCH_SIZE - 1)
            segment.write(b"\x00")
        for name in ("00000000000000000000.index", "00000000000000000000.timeindex"):
            (log_dir / name).unlink()  # never written: the crash came before any flush
        log = PartitionLog(log_dir, config, recovery_point=30)
        assert log.log_end_offset == 105
        log.close()
        assert log_dir.joinpath("00000000000000000000.index").stat().st_size > 0, "missing index rebuilt"

    def test_clean_shutdown_skips_the_scan(self, log_dir: Path, config: LogConfig) -> None:
        log = PartitionLog(log_dir, config)
        for _ in range(35):
            log.append(memoryview(make_batch()))
        log.close()
        with open(_segment(log_dir, 90), "r+b") as segment:
            segment.seek(BATCH_SIZE + 70)
            segment.write(b"\x00\x01")
        trusting = PartitionLog(log_dir, config, clean_shutdown=True)
        assert trusting.log_end_offset == 105
        trusting.close()
        checking = PartitionLog(log_dir, config)
        assert checking.log_end_offset == 93
        checking.close()

    def test_stale_index_after_truncated_data_is_rebuilt(self, log_dir: Path, config: LogConfig) -> None:
        log = PartitionLog(log_dir, config)
        for number in range(10):
            log.append(memoryview(make_batch(timestamp=BASE_TIMESTAMP + number)))
        log.close()
        os.truncate(_segment(log_dir, 0), 4 * BATCH_SIZE)  # the index still names positions past the end
        reopened = PartitionLog(log_dir, config, clean_shutdown=True)
        assert reopened.log_end_offset == 12
        _assert_index_lookups(reopened)
        reopened.close()

    def test_clean_segment_cut_mid_batch_is_recovered(self, log_dir: Path, config: LogConfig) -> None:
        config.segment_bytes = 1 << 20
        log = PartitionLog(log_dir, config)
        for _ in range(10):
            log.append(memoryview(make_batch()))
        log.close()
        os.truncate(_segment(log_dir, 0), 9 * BATCH_SIZE + 70)
        reopened = PartitionLog(log_dir, config, clean_shutdown=True)
        assert reopened.log_end_offset == 27
        assert os.path.getsize(_segment(log_dir, 0)) == 9 * BATCH_SIZE
        assert reopened.append(memoryview(make_batch())).base_offset == 27
        reopened.close()


class TestIndexRebuild:
    def test_rebuilt_indexes_match_the_ones_written_live(self, log_dir: Path, config: LogConfig) -> None:
        config.segment_bytes = 1 << 20
        log = PartitionLog(log_dir, config)
        for number in range(40):
            log.append(memoryview(make_batch(timestamp=BASE_TIMESTAMP + number)))
        log.close()
        live = {
            n: (log_dir / n).read_bytes()
            for n in ("00000000000000000000.index", "00000000000000000000.timeindex")
        }
        # an entry once more than index.interval.bytes were written since the last one: every other batch
        assert len(live["00000000000000000000.index"]) == 19 * 8
        assert struct.unpack_from(">ii", live["00000000000000000000.index"], 0) == (8, 2 * BATCH_SIZE)
        segment = LogSegment(log_dir, 0, config, 0, fresh=False)
        assert segment.recover() == 0
        segment.close()
        rebuilt = {n: (log_dir / n).read_bytes() for n in live}
        assert rebuilt == live

    def test_leftover_files_are_removed(self, log_dir: Path, config: LogConfig) -> None:
        _crashed_log(log_dir, config, batches=3)
        (log_dir / "00000000000000000099.index").write_bytes(b"")
        (log_dir / "00000000000000000000.log.deleted").write_bytes(b"x")
        log = PartitionLog(log_dir, config)
        assert sorted(os.listdir(log_dir)) == [
            "00000000000000000000.index",
            "00000000000000000000.log",
            "00000000000000000000.timeindex",
        ]
        log.close()

    def test_recovered_records_decode(self, log_dir: Path, config: LogConfig) -> None:
        _crashed_log(log_dir, config, batches=5)
        log = PartitionLog(log_dir, config)
        records = decode_records(log.read_bytes(0, 1 << 20))
        assert [offset for offset, _, _ in records] == list(range(15))
        assert record_offsets(log.read_bytes(14, 10)) == [12, 13, 14]
        log.close()


def test_kill_9_loses_nothing_acknowledged(log_dir: Path, config: LogConfig) -> None:
    """A real SIGKILL right after appends: every acknowledged batch is there after recovery."""
    script = f"""
import os, signal, sys
from pathlib import Path
from strom.log import LogConfig, PartitionLog
from strom.protocol.record_batch import Record, build_batch
log = PartitionLog(Path({str(log_dir)!r}), LogConfig(segment_bytes={config.segment_bytes}))
for n in range(50):
    log.append(memoryview(bytearray(build_batch([Record(0, 0, None, b"%d" % n)], base_timestamp=n))))
print(log.log_end_offset, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout.strip() == "50"
    log = PartitionLog(log_dir, config)
    assert log.log_end_offset == 50
    assert [value for _, _, value in decode_records(_all_bytes(log))] == [b"%d" % n for n in range(50)]
    log.close()


def test_an_index_rebuilt_shorter_leaves_no_stale_entries_on_disk(log_dir: Path, config: LogConfig) -> None:
    """Recovery rebuilds an index without reading the old file; a truncation after that must still shorten
    the file, or a later clean open trusts entries that point into other batches."""
    _crashed_log(log_dir, config, batches=25)  # three segments of ten batches at most
    PartitionLog(log_dir, config).close()  # recovered, and every index written in full
    log = PartitionLog(log_dir, config)  # recovered again: the index files were not read
    middle = sorted(log_dir.glob("*.index"))[1]
    log.truncate_to(int(middle.stem) + 2)  # the middle segment keeps a batch or so
    log.close()
    index = middle
    written = index.read_bytes()
    for path in log_dir.glob("*.index"):
        path.unlink()
    PartitionLog(log_dir, config).close()  # the same segment, its index rebuilt from nothing
    assert written == index.read_bytes()
