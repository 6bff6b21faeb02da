"""Log cleaner benchmark: how many MB of log one clean() rewrites per second, in-process.

Builds a compacted-topic log of --mb MB per case (1,000 keys updated over and over, values of ~100 B or ~1 KB,
uncompressed and lz4), cleans its non-active segments once, and prints MB/s of log read by the cleaning
(bytes_read / seconds, the median of --repeat runs on the same log) against the 50 MB/s target.
Run from the repository root: `python benchmarks/cleaner_bench.py [--mb 64] [--repeat 3] [--profile]`.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from strom.log import LogConfig, PartitionLog
from strom.log.cleaner.clean import CleanTask, SegmentFile, clean
from strom.protocol.record_batch import Compression, Record, build_batch

KEYS = 1000
BATCH_BYTES = 16 * 1024  # about what a producer's batch.size gives
SEGMENT_BYTES = 16 * 1024 * 1024
TARGET_MB_S = 50.0
CASES = [(100, Compression.NONE), (100, Compression.LZ4), (1000, Compression.NONE), (1000, Compression.LZ4)]


def build_log(directory: Path, megabytes: int, value_size: int, codec: int) -> PartitionLog:
    """A log of about ``megabytes`` MB; batches are built once and appended repeatedly (offsets are assigned
    by the log), keys cycling so every key is updated many times. Values are random hex text, which
    compresses about as well as typical JSON payloads (2:1), not the 10:1 of repeated bytes."""
    config = LogConfig(segment_bytes=SEGMENT_BYTES)
    log = PartitionLog(directory / "bench-0", config)
    per_batch = max(BATCH_BYTES // (value_size + 20), 1)
    templates = []
    for start in range(0, KEYS, per_batch):
        records = [
            Record(i, i, b"key-%06d" % ((start + i) % KEYS), os.urandom(value_size // 2).hex().encode())
            for i in range(per_batch)
        ]
        templates.append(build_batch(records, base_timestamp=1_700_000_000_000, compression=codec))
    target = megabytes * 1024 * 1024
    written = 0
    while written < target:
        for template in templates:
            log.append(memoryview(bytearray(template)))
            written += len(template)
    log.append(memoryview(bytearray(templates[0])))  # roll nothing more: the active segment stays out
    log.flush()
    return log


def task_for(log: PartitionLog) -> CleanTask:
    logs = sorted(log.directory.glob("*.log"))
    bases = [int(path.stem) for path in logs]
    segments = tuple(
        SegmentFile(base, path, path.stat().st_size, next_base)
        for base, path, next_base in zip(bases, logs, bases[1:], strict=False)
    )
    return CleanTask(
        directory=log.directory,
        segments=segments,
        first_dirty_offset=0,
        end_offset=segments[-1].next_offset,
        aborted=(),
        producer_last_offsets={},
        now_ms=int(time.time() * 1000),
        delete_retention_ms=86_400_000,
        segment_bytes=SEGMENT_BYTES,
        index_interval_bytes=4096,
        segment_index_bytes=10 * 1024 * 1024,
        max_map_entries=1_000_000,
    )


def run_case(root: Path, megabytes: int, value_size: int, codec: int, repeat: int, profile: bool) -> float:
    case_dir = root / f"v{value_size}-c{codec}"
    log = build_log(case_dir, megabytes, value_size, codec)
    task = task_for(log)
    rates = []
    for _ in range(repeat):
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        result = clean(task)
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
        rates.append(result.bytes_read / seconds / 1e6)
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(12)
    log.close()
    shutil.rmtree(case_dir)
    print(
        f"value ~{value_size:>4} B  {Compression(codec).name:<5}  {result.bytes_read / 1e6:7.1f} MB read  "
        f"{result.records_read:>9} records -> {result.records_kept:>5} kept  "
        f"{statistics.median(rates):7.1f} MB/s  (target >= {TARGET_MB_S:.0f}: "
        f"{'PASS' if statistics.median(rates) >= TARGET_MB_S else 'FAIL'})"
    )
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=64, help="log size per case in MB (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="cleanings per case; the median is shown")
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary per case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cleaner-bench-") as tmp:
        for value_size, codec in CASES:
            run_case(Path(tmp), args.mb, value_size, codec, args.repeat, args.profile)


if __name__ == "__main__":
    main()
