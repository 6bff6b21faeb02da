"""Producer-state snapshots: ``<offset>.snapshot`` files that let a log open without replaying all of itself.

A snapshot at offset N holds the producer state and the aborted transactions after every batch below N, so an
open restores the latest one at or below the log end offset and replays only the batch headers from N on. The
log takes one when a segment rolls (at the new segment's base offset) and when it closes cleanly (at its end).

Kafka's own format (ProducerStateManager: version, CRC, one entry per producer) keeps only each producer's
last batch and no aborted transactions, so this one is our own, in the same spirit: binary, fixed-width,
big-endian.

    int16  version (1)
    uint32 CRC32C of everything after this field
    int32  producer count, then per producer:
           int64 producer id, int16 epoch, int32 coordinator epoch, int64 last timestamp,
           int64 open transaction's first offset (-1: none), int64 last marker offset (-1: none),
           uint8 batch count (at most 5), then per batch, oldest first: int32 first sequence,
           int32 last sequence, int64 first offset, int64 last offset, int64 max timestamp
    int32  aborted transaction count, then per transaction, by marker offset:
           int64 producer id, int64 first offset, int64 marker offset

Binary rather than JSON because a snapshot is trusted without re-reading the log below it: the CRC must catch
a torn write or a flipped bit so that a damaged snapshot is deleted (the next older one, or a full scan, takes
over) instead of loaded, and fixed-width fields decode fast and stay small when thousands of producers write.

The aborted transactions live in the snapshot rather than in Kafka's per-segment ``.txnindex`` files: the list
is held in memory anyway, one file written atomically keeps it consistent with the producer state it belongs
to, and nothing per segment has to follow segment deletion, truncation and renames. The cost is rewriting the
retained list (24 bytes per aborted transaction) with every snapshot.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import crc32c

from strom.log.files import parse_segment_stem, segment_file_stem, write_atomically
from strom.log.producer_state import BATCHES_TO_RETAIN, BatchMetadata, CompletedTxn, ProducerEntry

logger = logging.getLogger(__name__)

SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOT_VERSION = 1
#: Older snapshots only matter when the newer ones are damaged or truncated away; each holds the whole state.
SNAPSHOTS_TO_KEEP = 3

_HEADER = struct.Struct(">hI")
_COUNT = struct.Struct(">i")
_ENTRY = struct.Struct(">qhiqqqB")
_BATCH = struct.Struct(">iiqqq")
_ABORTED = struct.Struct(">qqq")
_TMP_SUFFIX = ".tmp"  # what files.write_atomically writes first


class CorruptSnapshotError(ValueError):
    """A snapshot file that does not decode: torn, damaged, or of an unknown version."""


@dataclass(slots=True, frozen=True)
class ProducerSnapshot:
    """The producer state after every batch below ``offset``."""

    offset: int
    producers: list[ProducerEntry]
    aborted_txns: list[CompletedTxn]


def encode_snapshot(producers: Iterable[ProducerEntry], aborted_txns: Iterable[CompletedTxn]) -> bytes:
    """The file contents for a snapshot of ``producers`` and ``aborted_txns`` (in marker order)."""
    body = bytearray()
    entries = list(producers)
    body += _COUNT.pack(len(entries))
    for entry in entries:
        body += _ENTRY.pack(
            entry.producer_id,
            entry.epoch,
            entry.coordinator_epoch,
            entry.last_timestamp,
            entry.txn_first_offset,
            entry.last_marker_offset,
            len(entry.batches),
        )
        for batch in entry.batches:
            body += _BATCH.pack(
                batch.first_sequence,
                batch.last_sequence,
                batch.first_offset,
                batch.last_offset,
                batch.max_timestamp,
            )
    aborted = list(aborted_txns)
    body += _COUNT.pack(len(aborted))
    for txn in aborted:
        body += _ABORTED.pack(txn.producer_id, txn.first_offset, txn.last_offset)
    return _HEADER.pack(SNAPSHOT_VERSION, crc32c.crc32c(body)) + body


def decode_snapshot(data: bytes) -> tuple[list[ProducerEntry], list[CompletedTxn]]:
    """The producer entries and aborted transactions in ``data``; CorruptSnapshotError if it is not whole."""
    if len(data) < _HEADER.size:
        raise CorruptSnapshotError(f"{len(data)} bytes is too short for a snapshot")
    version, crc = _HEADER.unpack_from(data)
    if version != SNAPSHOT_VERSION:
        raise CorruptSnapshotError(f"unknown snapshot version {version}")
    body = memoryview(data)[_HEADER.size :]
    if crc32c.crc32c(body) != crc:
        raise CorruptSnapshotError("snapshot CRC does not match its contents")
    try:
        return _decode_body(body)
    except struct.error as exc:
        raise CorruptSnapshotError(f"snapshot ends early: {exc}") from exc


def _decode_body(body: memoryview) -> tuple[list[ProducerEntry], list[CompletedTxn]]:
    position = 0

    def take(layout: struct.Struct) -> tuple[int, ...]:
        nonlocal position
        values = layout.unpack_from(body, position)
        position += layout.size
        return values

    producers: list[ProducerEntry] = []
    for _ in range(_count(take(_COUNT)[0])):
        producer_id, epoch, coordinator_epoch, last_timestamp, txn_first, last_marker, batches = take(_ENTRY)
        if batches > BATCHES_TO_RETAIN:
            raise CorruptSnapshotError(f"producer {producer_id} has {batches} batches, more than possible")
        entry = ProducerEntry(
            producer_id,
            epoch,
            coordinator_epoch=coordinator_epoch,
            last_timestamp=last_timestamp,
            txn_first_offset=txn_first,
            last_marker_offset=last_marker,
        )
        entry.batches.extend(BatchMetadata(*take(_BATCH)) for _ in range(batches))
        producers.append(entry)
    aborted: list[CompletedTxn] = []
    for _ in range(_count(take(_COUNT)[0])):
        producer_id, first_offset, marker_offset = take(_ABORTED)
        aborted.append(CompletedTxn(producer_id, first_offset, marker_offset, aborted=True))
    if position != len(body):
        raise CorruptSnapshotError(f"{len(body) - position} unexpected bytes after the snapshot")
    return producers, aborted


def _count(value: int) -> int:
    if value < 0:
        raise CorruptSnapshotError(f"negative count {value}")
    return value


def snapshot_path(directory: Path, offset: int) -> Path:
    return directory / (segment_file_stem(offset) + SNAPSHOT_SUFFIX)


class ProducerSnapshots:
    """The snapshot files of one partition directory, by offset.

    Deleting a snapshot above the log end offset must succeed (after a truncation it describes batches that
    are gone, and would be loaded once the log grows past it again), so that failure propagates; any other
    failed deletion only leaves a harmless extra file behind.
    """

    def __init__(self, directory: Path) -> None:
        """Index the snapshots in ``directory`` and remove half-written ones a crash left behind."""
        self.directory = directory
        offsets = []
        for path in directory.iterdir():
            name = path.name
            if name.endswith(SNAPSHOT_SUFFIX + _TMP_SUFFIX):
                path.unlink(missing_ok=True)
            elif name.endswith(SNAPSHOT_SUFFIX):
                offset = parse_segment_stem(name[: -len(SNAPSHOT_SUFFIX)])
                if offset is not None:
                    offsets.append(offset)
        self._offsets = sorted(offsets)

    @property
    def offsets(self) -> list[int]:
        """The offsets of the snapshots on disk, oldest first."""
        return list(self._offsets)

    @property
    def latest_offset(self) -> int | None:
        return self._offsets[-1] if self._offsets else None

    def write(
        self, offset: int, producers: Iterable[ProducerEntry], aborted_txns: Iterable[CompletedTxn]
    ) -> None:
        """Write the snapshot at ``offset`` atomically (a crash leaves the old file or the new one), then keep
        only the latest SNAPSHOTS_TO_KEEP."""
        write_atomically(snapshot_path(self.directory, offset), encode_snapshot(producers, aborted_txns))
        if offset not in self._offsets:
            self._offsets.append(offset)
            self._offsets.sort()
        for old in self._offsets[:-SNAPSHOTS_TO_KEEP]:
            self._delete(old, must_succeed=False)

    def load_latest(self, max_offset: int) -> ProducerSnapshot | None:
        """The newest snapshot at or below ``max_offset`` that reads back whole; damaged ones are deleted on
        the way down. None when there is none (the caller replays the whole log)."""
        for offset in reversed([offset for offset in self._offsets if offset <= max_offset]):
            path = snapshot_path(self.directory, offset)
            try:
                producers, aborted = decode_snapshot(path.read_bytes())
            except (OSError, CorruptSnapshotError) as exc:
                logger.warning("deleting unusable producer snapshot %s: %s", path, exc)
                self._delete(offset, must_succeed=False)
                continue
            return ProducerSnapshot(offset, producers, aborted)
        return None

    def delete_below(self, offset: int) -> None:
        """Drop snapshots below the log start offset (as Kafka does): the log they lead into is gone."""
        for old in [old for old in self._offsets if old < offset]:
            self._delete(old, must_succeed=False)

    def delete_above(self, offset: int) -> None:
        """Drop snapshots above the log end offset after a truncation: they describe batches that are gone."""
        for stale in [stale for stale in self._offsets if stale > offset]:
            self._delete(stale, must_succeed=True)

    def _delete(self, offset: int, *, must_succeed: bool) -> None:
        path = snapshot_path(self.directory, offset)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            if must_succeed:
                raise
            logger.warning("could not delete producer snapshot %s: %s", path, exc)
        self._offsets.remove(offset)
