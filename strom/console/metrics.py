"""Rates and lag over time for the console's charts, sampled from the cluster in a background thread.

Kafka clients cannot ask a cluster for its throughput, so the sampler derives it from offsets, as
kafka-ui and Burrow do: the messages-in rate is how fast the log end offsets grow, the consumed rate how
fast the groups' committed offsets grow, and a group's lag the sum over its partitions of log end minus
committed offset. Only growth counts: a partition whose offsets fall (a deleted and re-created topic, a
group reset to earliest) adds nothing to a rate. Samples are kept in ring buffers of about ten minutes.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from strom.console.cluster import ClusterView, ConsoleError, GroupOffsets, Partition, group_lag

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 2.0
DEFAULT_HISTORY_S = 600.0


@dataclass(frozen=True)
class RateSample:
    """Messages per second written to the cluster (``in``) and committed by its groups (``out``) during
    the interval ending at ``t`` (epoch ms)."""

    t: int
    in_per_s: float
    out_per_s: float


@dataclass(frozen=True)
class LagSample:
    t: int
    lag: int


class Sampler:
    """Reads every group's committed offsets and every log end each ``interval_s``, in a daemon thread.

    ``sample()`` takes one sample at once (the thread calls it; tests call it directly). A sample that fails
    (cluster unreachable) is skipped and logged, and the next rate spans the gap.
    """

    def __init__(
        self,
        cluster: ClusterView,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        history_s: float = DEFAULT_HISTORY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cluster = cluster
        self.interval_s = interval_s
        self._clock = clock
        self._capacity = max(1, round(history_s / interval_s))
        self._lock = threading.Lock()
        self._rates: collections.deque[RateSample] = collections.deque(maxlen=self._capacity)
        self._lags: dict[str, collections.deque[LagSample]] = {}
        self._previous: tuple[float, GroupOffsets] | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sampler:
        """Start sampling in the background (the first sample at once); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="console-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the thread, waiting up to ``timeout_s`` for a sample in progress."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def rates(self) -> list[RateSample]:
        """Rate samples, oldest first."""
        with self._lock:
            return list(self._rates)

    def lag_history(self, group_id: str) -> list[LagSample]:
        """The group's total lag over time, oldest first; empty for a group never seen."""
        with self._lock:
            return list(self._lags.get(group_id, ()))

    def sample(self) -> None:
        """Read the cluster's offsets once and record lag and, after the first sample, rates."""
        offsets = self._cluster.group_offsets()
        now = self._clock()
        t_ms = round(now * 1000)
        with self._lock:
            for group_id, committed in offsets.committed.items():
                history = self._lags.get(group_id)
                if history is None:
                    history = self._lags[group_id] = collections.deque(maxlen=self._capacity)
                history.append(LagSample(t_ms, group_lag(committed, offsets.end_offsets)))
            if self._previous is not None:
                then, before = self._previous
                elapsed = now - then
                if elapsed > 0:
                    written = growth(before.end_offsets, offsets.end_offsets)
                    consumed = sum(
                        growth(before.committed.get(group_id, {}), committed)
                        for group_id, committed in offsets.committed.items()
                    )
                    self._rates.append(RateSample(t_ms, written / elapsed, consumed / elapsed))
            self._previous = (now, offsets)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sample()
            except ConsoleError as exc:
                logger.warning("cannot sample the cluster's offsets: %s", exc.message)
            except Exception:
                logger.exception("sampling the cluster's offsets failed")
            self._stopping.wait(self.interval_s)


def growth(before: Mapping[Partition, int], after: Mapping[Partition, int]) -> int:
    """How much the offsets of partitions present both times grew; partitions that fell count nothing."""
    return sum(max(offset - before[key], 0) for key, offset in after.items() if key in before)
