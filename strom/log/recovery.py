"""Opening a partition directory: clear leftovers, open segments, and recover what a crash may have torn.

After a clean shutdown every segment and index was written out, so segments are trusted (only the batches
after the last index entry are read). After a crash, every segment from the one holding the recovery point
onwards is re-validated batch by batch; the first torn or corrupt batch ends the log: the segment is cut
there, later segments are removed, and the indexes of the recovered segments are rebuilt.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

from strom.log.config import LogConfig
from strom.log.files import (
    CLEANED_SUFFIX,
    DELETED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    SWAP_SUFFIX,
    TIME_INDEX_SUFFIX,
    fsync_dir,
    parse_segment_stem,
    segment_file_stem,
)
from strom.log.index import CorruptIndexError
from strom.log.segment import CorruptSegmentError, LogSegment
from strom.protocol.record_batch import BATCH_HEADER_SIZE, HEADER_STRUCT, BatchHeader

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class LoadedLog:
    segments: list[LogSegment]
    log_start_offset: int
    recovery_point: int


def load_log(
    directory: Path,
    config: LogConfig,
    *,
    recovery_point: int,
    log_start_offset: int,
    clean_shutdown: bool,
    now_ms: int,
) -> LoadedLog:
    """Open every segment of ``directory`` (creating the first one if there is none) and recover if needed."""
    _remove_leftovers(directory)
    bases = sorted(
        base
        for path in directory.glob("*" + LOG_SUFFIX)
        if (base := parse_segment_stem(path.stem)) is not None
    )
    first_unflushed = len(bases) if clean_shutdown else max(bisect_right(bases, recovery_point) - 1, 0)
    segments = [LogSegment(directory, base, config, now_ms, fresh=False) for base in bases]
    for segment in segments[:first_unflushed]:
        try:
            segment.load()
        except (CorruptIndexError, CorruptSegmentError) as exc:  # a stale index can point between batches
            logger.warning("rebuilding indexes of %s: %s", segment.path, exc)
            segment.recover()
    segments = _recover_segments(segments, first_unflushed, recovery_point)

    if not segments:
        segments = [LogSegment(directory, log_start_offset, config, now_ms, fresh=True)]
    log_end_offset = segments[-1].next_offset
    log_start_offset = max(log_start_offset, segments[0].base_offset)
    if log_start_offset > log_end_offset:
        # The crash took data the log start offset had already moved past: restart the log at that offset so
        # offsets are never handed out twice.
        logger.warning(
            "%s ends at %d, before its log start offset %d", directory, log_end_offset, log_start_offset
        )
        for segment in segments:
            segment.delete()
        segments = [LogSegment(directory, log_start_offset, config, now_ms, fresh=True)]
        log_end_offset = log_start_offset
    # Only a flush may advance the recovery point; a clean shutdown flushed everything.
    recovered_up_to = log_end_offset if clean_shutdown else min(recovery_point, log_end_offset)
    return LoadedLog(segments, log_start_offset, max(recovered_up_to, segments[0].base_offset))


def _recover_segments(segments: list[LogSegment], first: int, recovery_point: int) -> list[LogSegment]:
    """Recover segments[first:] (what lies below the recovery point was fsynced: validation starts there);
    the first one with invalid bytes ends the log."""
    for position in range(first, len(segments)):
        segment = segments[position]
        if segment.recover(recovery_point):
            for later in segments[position + 1 :]:
                logger.warning("deleting %s: it follows a corrupt segment", later.path)
                later.delete()
            return segments[: position + 1]
    return segments


def _remove_leftovers(directory: Path) -> None:
    """Delete files a crash can leave behind: segments pending deletion, unfinished cleaner output and indexes
    without a segment; finish interrupted swaps of cleaned segments first."""
    _complete_swaps(directory)
    for path in directory.iterdir():
        leftover = path.name.endswith((DELETED_SUFFIX, CLEANED_SUFFIX, SWAP_SUFFIX))
        orphan_index = (
            path.suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX) and not path.with_suffix(LOG_SUFFIX).exists()
        )
        if leftover or orphan_index:
            path.unlink(missing_ok=True)


def _complete_swaps(directory: Path) -> None:
    """Finish swapping in cleaned segments, as Kafka does. A ``<base>.log.swap`` is a complete, fsynced
    cleaned segment (its indexes were renamed to *.swap before it): the old segments whose base offsets lie in
    [base, its next offset) go, then the swap files take their final names. Index swaps without a log swap
    belong to a swap that never started; the caller deletes them."""
    swaps = sorted(directory.glob("*" + LOG_SUFFIX + SWAP_SUFFIX))
    for swap in swaps:
        base = parse_segment_stem(swap.name.removesuffix(LOG_SUFFIX + SWAP_SUFFIX))
        if base is None:
            continue
        end = _next_offset(swap, base)
        for old in directory.glob("*" + LOG_SUFFIX):
            old_base = parse_segment_stem(old.stem)
            if old_base is not None and (old_base == base or base <= old_base < end):
                for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                    old.with_suffix(suffix).unlink(missing_ok=True)
        for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX):
            final = directory / (segment_file_stem(base) + suffix)
            pending = final.with_name(final.name + SWAP_SUFFIX)
            if pending.exists():
                os.replace(pending, final)
        logger.warning("completed the interrupted swap of cleaned segment %s", swap.name)
    if swaps:
        fsync_dir(directory)


def _next_offset(path: Path, base_offset: int) -> int:
    """The offset after the last whole batch of a segment file (``base_offset`` when it holds none)."""
    next_offset = base_offset
    with open(path, "rb", buffering=0) as file:
        fd = file.fileno()
        size = os.fstat(fd).st_size
        position = 0
        while size - position >= BATCH_HEADER_SIZE:
            header = BatchHeader._make(HEADER_STRUCT.unpack(os.pread(fd, BATCH_HEADER_SIZE, position)))
            if header.total_size < BATCH_HEADER_SIZE or position + header.total_size > size:
                break
            next_offset = header.next_offset
            position += header.total_size
    return next_offset
