"""What the cleaner must know about transactions while it walks a log in offset order (Kafka's
CleanedTransactionMetadata): which data batches belong to aborted transactions, and which markers close a
transaction with no data left in the log, so that the marker itself may go once its delete horizon passes."""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable

from strom.log.cleaner.batch_filter import CorruptRecordsError, scan_records
from strom.protocol.record_batch import BATCH_HEADER_SIZE, BatchHeader, ControlType

_CONTROL_KEY = struct.Struct(">hh")  # version, type


def control_type(window: bytes, position: int, header: BatchHeader) -> int:
    """The ControlType of the marker batch at ``position`` (control batches are never compressed)."""
    start = position + BATCH_HEADER_SIZE
    spans = scan_records(window, start, position + header.total_size, header.records_count)
    key = spans[0][2] if spans else None
    if key is None or len(key) < _CONTROL_KEY.size:
        raise CorruptRecordsError(f"control batch at offset {header.base_offset} has no control key")
    return int(_CONTROL_KEY.unpack_from(key)[1])


class CleanedTransactions:
    """Follows transactions through one in-order pass over batches.

    ``aborted`` lists (producer id, first offset, marker offset) of the aborted transactions with data in the
    part of the log the pass covers. A transaction becomes "ongoing aborted" once the pass reaches its first
    offset; its producer's transactional batches are then aborted data until its marker.
    """

    def __init__(self, aborted: Iterable[tuple[int, int, int]]) -> None:
        self._pending = deque(sorted(aborted, key=lambda txn: txn[1]))
        self._aborted_seen_data: dict[int, bool] = {}  # producer id -> a batch of the txn was traversed
        self._committed: set[int] = set()  # producers with a traversed batch of a not-aborted transaction

    def _reach(self, offset: int) -> None:
        pending = self._pending
        while pending and pending[0][1] <= offset:
            producer_id = pending.popleft()[0]
            self._aborted_seen_data.setdefault(producer_id, False)

    def on_batch(self, header: BatchHeader) -> bool:
        """Note a data batch; True when it belongs to an aborted transaction (its records are discarded)."""
        self._reach(header.last_offset)
        if not header.is_transactional:
            return False
        producer_id = header.producer_id
        if producer_id in self._aborted_seen_data:
            self._aborted_seen_data[producer_id] = True
            return True
        self._committed.add(producer_id)
        return False

    def on_marker(self, header: BatchHeader, marker_type: int) -> bool:
        """Note a marker; True when its transaction had no batch in this pass, so the marker may be removed
        (once its delete horizon passes). An abort marker is kept while its aborted data is still present."""
        self._reach(header.last_offset)
        producer_id = header.producer_id
        if marker_type == ControlType.ABORT:
            return not self._aborted_seen_data.pop(producer_id, False)
        if marker_type == ControlType.COMMIT:
            if producer_id in self._committed:
                self._committed.discard(producer_id)
                return False
            return True
        return False
