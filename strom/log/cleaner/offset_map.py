"""The key -> latest offset map the cleaner builds over the dirty section of a log.

Bounded in entries (Kafka sizes it with log.cleaner.dedupe.buffer.size): when a new key finds the map full,
building stops after the last whole batch, and ``latest_offset`` says how far the map covers; records after it
are kept as they are, and the next cleaning starts its map there.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence

from strom.log.cleaner.batch_filter import batch_records, scan_records
from strom.log.cleaner.segment_reader import SegmentFile, read_batches
from strom.log.cleaner.transactions import CleanedTransactions, control_type
from strom.protocol.record_batch import BATCH_HEADER_SIZE


class OffsetMap:
    """Latest offset per key, plus what the rewrite needs to skip parsing fully-decided batches: the offsets
    of tombstones and of null-key records seen while building."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.offsets: dict[bytes, int] = {}
        self.latest_offset = -1  # last offset of the last batch fully covered
        self.full = False  # building stopped before the end of the dirty section
        self.tombstones: set[int] = set()
        self.null_keys: list[int] = []  # ascending
        self._winners: array[int] | None = None

    def __len__(self) -> int:
        return len(self.offsets)

    def get(self, key: bytes) -> int:
        """The latest offset of ``key``, or -1 when the map does not hold it."""
        return self.offsets.get(key, -1)

    def winners(self) -> array[int]:
        """Every offset that is the latest of its key, ascending (computed once, after building)."""
        if self._winners is None:
            self._winners = array("q", sorted(self.offsets.values()))
        return self._winners


def build_offset_map(
    segments: Sequence[SegmentFile],
    start_offset: int,
    end_offset: int,
    aborted: Iterable[tuple[int, int, int]],
    max_entries: int,
) -> OffsetMap:
    """Map the keys of records in [start_offset, end_offset), skipping markers and aborted data.

    ``aborted`` lists (producer id, first offset, marker offset) of aborted transactions; those whose marker
    lies below ``start_offset`` play no part here.
    """
    offset_map = OffsetMap(max_entries)
    offsets = offset_map.offsets
    tombstones = offset_map.tombstones
    null_keys = offset_map.null_keys
    txns = CleanedTransactions(txn for txn in aborted if txn[2] >= start_offset)
    for segment in segments:
        if segment.next_offset <= start_offset:
            continue
        if segment.base_offset >= end_offset:
            break
        for header, window, position in read_batches(segment, start_offset):
            if header.base_offset >= end_offset:
                break
            if header.is_control:
                txns.on_marker(header, control_type(window, position, header))
            elif not txns.on_batch(header) and header.records_count:
                if header.compression:
                    records = batch_records(memoryview(window)[position:], header)
                    spans = scan_records(records, 0, len(records), header.records_count)
                else:
                    end = position + header.total_size
                    spans = scan_records(window, position + BATCH_HEADER_SIZE, end, header.records_count)
                base = header.base_offset
                room = max_entries - len(offsets)
                for offset_delta, _, key, value_null, _, _ in spans:
                    offset = base + offset_delta
                    if offset < start_offset:
                        continue
                    if key is None:
                        null_keys.append(offset)
                        continue
                    if key not in offsets:
                        if room <= 0:
                            _forget_partial_batch(offset_map, base)
                            return offset_map
                        room -= 1
                    offsets[key] = offset
                    if value_null:
                        tombstones.add(offset)
            offset_map.latest_offset = header.last_offset
    offset_map.latest_offset = max(offset_map.latest_offset, end_offset - 1)  # all of it was seen
    return offset_map


def _forget_partial_batch(offset_map: OffsetMap, base_offset: int) -> None:
    """Mark the map full and drop the side records of a batch only partly mapped: the rewrite keeps all of
    its records. Its keys stay mapped (each at its latest offset), which only removes older ones."""
    offset_map.full = True
    while offset_map.null_keys and offset_map.null_keys[-1] >= base_offset:
        offset_map.null_keys.pop()
