"""Keyed deadlines for the coordinator: session expiry, rebalance timeouts, the initial delay, cleanup.

Scheduling a key again replaces its previous deadline, as Kafka's coordinator timer does, so a heartbeat is
"push the member's expiry out" and nothing more. Replaced entries stay in the heap until they surface (lazy
deletion) and the heap is rebuilt when they outnumber the live ones, so frequent heartbeats cost O(log n)
each and memory stays proportional to the live deadlines.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

Action = Callable[[], None]

#: Rebuild the heap once it holds this many more entries than there are live deadlines.
_COMPACT_SLACK = 1024


@dataclass(order=True, slots=True)
class _Entry:
    deadline_ms: int
    sequence: int
    key: Hashable = field(compare=False)
    action: Action = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class Timer:
    """Actions due at deadlines (milliseconds), at most one per key; `pop_due` hands out the due ones."""

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[Hashable, _Entry] = {}
        self._sequence = itertools.count()

    def schedule(self, key: Hashable, deadline_ms: int, action: Action) -> None:
        """Run `action` at `deadline_ms`, replacing whatever `key` was scheduled for."""
        self.cancel(key)
        entry = _Entry(deadline_ms, next(self._sequence), key, action)
        self._live[key] = entry
        heapq.heappush(self._heap, entry)
        if len(self._heap) > 2 * len(self._live) + _COMPACT_SLACK:
            self._heap = [e for e in self._heap if not e.cancelled]
            heapq.heapify(self._heap)

    def cancel(self, key: Hashable) -> None:
        entry = self._live.pop(key, None)
        if entry is not None:
            entry.cancelled = True

    def pop_due(self, now_ms: int) -> Action | None:
        """The earliest action due at `now_ms` (removed from the timer), or None."""
        heap = self._heap
        while heap and heap[0].deadline_ms <= now_ms:
            entry = heapq.heappop(heap)
            if not entry.cancelled:
                del self._live[entry.key]
                return entry.action
        return None
