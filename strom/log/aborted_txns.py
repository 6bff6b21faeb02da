"""The aborted transactions of one partition, for read_committed fetches.

A read_committed consumer receives, with each batch range, the transactions aborted in it (producer id and
first offset), so it can drop their records. Kafka keeps them in a per-segment ``.txnindex`` file; here they
live in memory, ordered by their marker's offset, and are persisted in the producer-state snapshots (see
`producer_snapshot` for why), so an open restores them with the producer state and replays only the markers
written after the snapshot.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from strom.log.producer_state import CompletedTxn


class AbortedTxnIndex:
    """Aborted transactions ordered by the offset of their abort marker."""

    def __init__(self) -> None:
        self._txns: list[CompletedTxn] = []
        self._marker_offsets: list[int] = []

    def __len__(self) -> int:
        return len(self._txns)

    def add(self, txn: CompletedTxn) -> None:
        """Record an aborted transaction; markers arrive in offset order."""
        self._txns.append(txn)
        self._marker_offsets.append(txn.last_offset)

    def overlapping(self, start_offset: int, end_offset: int) -> list[CompletedTxn]:
        """Transactions with data in [start_offset, end_offset): marker at or after the start, first offset
        before the end."""
        first = bisect_left(self._marker_offsets, start_offset)
        return [txn for txn in self._txns[first:] if txn.first_offset < end_offset]

    def forget_before(self, offset: int) -> None:
        """Drop transactions whose marker is below ``offset`` (the new log start)."""
        cut = bisect_left(self._marker_offsets, offset)
        del self._txns[:cut], self._marker_offsets[:cut]

    def clear(self) -> None:
        self._txns.clear()
        self._marker_offsets.clear()

    def to_snapshot(self) -> list[CompletedTxn]:
        """The aborted transactions, by marker offset, for a snapshot."""
        return list(self._txns)

    def restore_snapshot(self, txns: Iterable[CompletedTxn]) -> None:
        """Replace the index with a snapshot's transactions (already in marker order)."""
        self.clear()
        for txn in txns:
            self.add(txn)
