"""A Jepsen-style history of a Kafka workload, and a checker that finds the anomalies in it.

A run of producers and consumers against a broker (with crashes, restarts and timeouts along the way) is
recorded as a list of operations: what each producer was asked to send and what became of it, how each
transaction ended, what each consumer polled, which offsets a group had committed, and, after the run, a
complete read of every partition from its start. `check` then looks for what Kafka promises cannot happen:

- lost write: a value known to be in the log (acknowledged, part of a committed transaction, or seen by some
  reader) is missing from the final read at that isolation level;
- duplicate: a value read at more than one offset (every value is sent once, so idempotence must keep it
  there once);
- aborted read (Jepsen's G1a): a value whose send certainly failed was read, or a read_committed reader saw a
  value of a transaction that certainly aborted;
- inconsistent offset: two different values at one offset, or a value read elsewhere than its acknowledgement
  or its send placed it;
- unwritten read: a value nobody was asked to send;
- non-monotonic poll / poll skip: within one assignment, a consumer's offsets in a partition did not strictly
  increase, or jumped over a value the final read shows between them;
- non-monotonic send: a producer's acknowledged offsets in a partition did not increase in the order it was
  given the values;
- committed offset backwards: a group's committed offset for a partition decreased over time.

Outcomes that the client could not learn (it crashed, or gave up waiting) are `Outcome.UNKNOWN`, as Jepsen's
``:info``: such a write is never required to be read, but once someone reads it, it is known to be in the log
(and, read at read_committed, its transaction is known to have committed, so all of that transaction must
be visible). A transaction counts as aborted for sure when an abort was acknowledged, a commit certainly
failed, or no commit was ever asked for (nobody else can commit it).

The checker relies on the order of operations only within each producer, each consumer and each group's
committed-offset observations, so per-client logs may simply be concatenated. Values must be unique per send.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, TypeVar

_Key = TypeVar("_Key", bound=str)


class Outcome(StrEnum):
    """What the client learned about an operation, in Jepsen's terms (ok, fail, info)."""

    OK = "ok"
    FAIL = "fail"  # certainly did not take effect
    UNKNOWN = "unknown"  # crashed or timed out: may or may not have taken effect


class Isolation(StrEnum):
    """A consumer's ``isolation.level``."""

    READ_COMMITTED = "read_committed"
    READ_UNCOMMITTED = "read_uncommitted"


class Partition(NamedTuple):
    """A topic partition."""

    topic: str
    number: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.number}"


@dataclass(frozen=True, slots=True)
class Send:
    """One value handed to a producer, and what became of it; ``offset`` is the acknowledged one, if any.

    ``txn`` names the transaction it was sent in (unique across the history), None outside transactions.
    """

    producer: str
    value: str
    partition: Partition
    outcome: Outcome
    offset: int | None = None
    txn: str | None = None


@dataclass(frozen=True, slots=True)
class EndTxn:
    """A request to commit (``commit=True``) or abort a transaction, and its outcome."""

    producer: str
    txn: str
    commit: bool
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Assign:
    """A consumer was given a new assignment: its positions restart from the committed offsets."""

    consumer: str
    partitions: frozenset[Partition]


@dataclass(frozen=True, slots=True)
class Record:
    """A value as a reader found it."""

    partition: Partition
    offset: int
    value: str


@dataclass(frozen=True, slots=True)
class Poll:
    """What one poll of a consumer returned, in the order returned."""

    consumer: str
    isolation: Isolation
    records: tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class FinalRead:
    """After the run, every record of the partitions read from their first offset to their end."""

    isolation: Isolation
    records: tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    """A group's committed offset for a partition, as an observer read it (say, ``Consumer.committed()``)."""

    group: str
    partition: Partition
    offset: int


Operation = Send | EndTxn | Assign | Poll | FinalRead | CommittedOffset


class AnomalyKind(StrEnum):
    LOST_WRITE = "lost-write"
    DUPLICATE = "duplicate"
    ABORTED_READ = "aborted-read"
    INCONSISTENT_OFFSET = "inconsistent-offset"
    UNWRITTEN_READ = "unwritten-read"
    NONMONOTONIC_POLL = "nonmonotonic-poll"
    POLL_SKIP = "poll-skip"
    NONMONOTONIC_SEND = "nonmonotonic-send"
    COMMITTED_OFFSET_BACKWARDS = "committed-offset-backwards"


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One violation, with the value and partition involved where there is one."""

    kind: AnomalyKind
    detail: str
    partition: Partition | None = None
    value: str | None = None


class TxnFate(StrEnum):
    COMMITTED = "committed"
    ABORTED = "aborted"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Stats:
    """How much the history exercised, so a reader can tell a clean report from an idle run."""

    sends: Mapping[Outcome, int]
    txns: Mapping[TxnFate, int]  # after inferring commits from read_committed reads
    polls: Mapping[Isolation, int]
    records_polled: Mapping[Isolation, int]
    final_records: Mapping[Isolation, int]
    committed_observations: int


@dataclass(frozen=True, slots=True)
class Report:
    anomalies: tuple[Anomaly, ...]
    stats: Stats

    @property
    def ok(self) -> bool:
        return not self.anomalies

    def of_kind(self, kind: AnomalyKind) -> list[Anomaly]:
        return [anomaly for anomaly in self.anomalies if anomaly.kind is kind]

    def summary(self, examples: int = 5) -> str:
        """Counts of what ran, then each kind of anomaly with its count and a few examples."""
        stats = self.stats
        lines = [
            "sends: " + _counts(stats.sends),
            "transactions: " + _counts(stats.txns),
            "polls: " + _counts(stats.polls) + "; records polled: " + _counts(stats.records_polled),
            "final reads: " + _counts(stats.final_records),
            f"committed-offset observations: {stats.committed_observations}",
        ]
        by_kind = Counter(anomaly.kind for anomaly in self.anomalies)
        if not by_kind:
            lines.append("no anomalies")
        for kind in AnomalyKind:
            if by_kind[kind]:
                lines.append(f"{kind}: {by_kind[kind]}")
                lines += [f"  {anomaly.detail}" for anomaly in self.of_kind(kind)[:examples]]
        return "\n".join(lines)


def _counts(counts: Mapping[_Key, int]) -> str:
    return ", ".join(f"{count} {key}" for key, count in counts.items()) or "none"


def check(history: Iterable[Operation]) -> Report:
    """Look for every anomaly kind in ``history``; see the module docstring for what each one means."""
    return _Analysis(list(history)).report()


class _Analysis:
    """Indexes of one history, built once and shared by the individual checks."""

    def __init__(self, history: Sequence[Operation]) -> None:
        self.history = history
        self.sends: dict[str, Send] = {}
        self.txns: set[str] = set()
        self.txn_ends: defaultdict[str, list[EndTxn]] = defaultdict(list)
        self.final_offsets: dict[Isolation, dict[Partition, list[int]]] = {}
        self.final_values: dict[Isolation, set[str]] = {}
        for op in history:
            if isinstance(op, Send):
                if op.value in self.sends:
                    raise ValueError(f"value {op.value!r} sent twice: values must be unique per send")
                self.sends[op.value] = op
                if op.txn is not None:
                    self.txns.add(op.txn)
            elif isinstance(op, EndTxn):
                self.txns.add(op.txn)
                self.txn_ends[op.txn].append(op)
            elif isinstance(op, FinalRead):
                offsets = self.final_offsets.setdefault(op.isolation, defaultdict(list))
                for record in op.records:
                    offsets[record.partition].append(record.offset)
                self.final_values.setdefault(op.isolation, set()).update(r.value for r in op.records)
        for by_partition in self.final_offsets.values():
            for final_offsets in by_partition.values():
                final_offsets.sort()
        self.reads = list(self._reads())
        self.fates = self._txn_fates()

    def report(self) -> Report:
        anomalies = [
            *self._placement_anomalies(),
            *self._aborted_and_unwritten_reads(),
            *self._lost_writes(),
            *self._poll_order_anomalies(),
            *self._nonmonotonic_sends(),
            *self._committed_offsets_backwards(),
        ]
        return Report(tuple(anomalies), self._stats())

    # -- indexes ---------------------------------------------------------------------------------------------

    def _reads(self) -> Iterator[tuple[Isolation, Record]]:
        for op in self.history:
            if isinstance(op, Poll | FinalRead):
                for record in op.records:
                    yield op.isolation, record

    def _txn_fates(self) -> dict[str, TxnFate]:
        """Each transaction's fate from its EndTxn operations, then from what read_committed readers saw."""
        fates = {txn: _fate_from_ends(self.txn_ends.get(txn, [])) for txn in self.txns}
        for isolation, record in self.reads:
            send = self.sends.get(record.value)
            txn = send.txn if send is not None else None
            if isolation is Isolation.READ_COMMITTED and txn is not None and fates[txn] is TxnFate.UNKNOWN:
                fates[txn] = TxnFate.COMMITTED
        return fates

    def _must_be_visible(self, send: Send, isolation: Isolation, in_log: set[str]) -> bool:
        """Whether a final read at ``isolation`` must hold the value; ``in_log`` are the values ever read."""
        if send.outcome is Outcome.FAIL:
            return False
        if send.txn is not None and isolation is Isolation.READ_COMMITTED:
            return self.fates[send.txn] is TxnFate.COMMITTED
        committed_txn = send.txn is not None and self.fates[send.txn] is TxnFate.COMMITTED
        return send.outcome is Outcome.OK or committed_txn or send.value in in_log

    # -- checks ----------------------------------------------------------------------------------------------

    def _placement_anomalies(self) -> Iterator[Anomaly]:
        """Duplicates, and writers and readers disagreeing about what is where."""
        read_positions: defaultdict[str, set[tuple[Partition, int]]] = defaultdict(set)
        values_at: defaultdict[tuple[Partition, int], set[str]] = defaultdict(set)
        for _, record in self.reads:
            read_positions[record.value].add((record.partition, record.offset))
            values_at[(record.partition, record.offset)].add(record.value)
        for send in self.sends.values():
            if send.outcome is Outcome.OK and send.offset is not None:
                values_at[(send.partition, send.offset)].add(send.value)
        for (partition, offset), values in values_at.items():
            if len(values) > 1:
                yield Anomaly(
                    AnomalyKind.INCONSISTENT_OFFSET,
                    f"{partition}@{offset} holds {sorted(values)} according to acks and reads",
                    partition,
                )
        for value, positions in read_positions.items():
            where = ", ".join(f"{partition}@{offset}" for partition, offset in sorted(positions))
            if len(positions) > 1:
                yield Anomaly(AnomalyKind.DUPLICATE, f"{value!r} read at {where}", value=value)
            sent = self.sends.get(value)
            if sent is not None and not any(_placed_by(sent, position) for position in positions):
                yield Anomaly(
                    AnomalyKind.INCONSISTENT_OFFSET,
                    f"{value!r} sent to {sent.partition} (acknowledged at {sent.offset}) but read at {where}",
                    sent.partition,
                    value,
                )

    def _aborted_and_unwritten_reads(self) -> Iterator[Anomaly]:
        reported: set[tuple[Isolation, str]] = set()
        for isolation, record in self.reads:
            if (isolation, record.value) in reported:
                continue
            send = self.sends.get(record.value)
            if send is None:
                reported.add((isolation, record.value))
                yield Anomaly(
                    AnomalyKind.UNWRITTEN_READ,
                    f"{record.value!r} read at {record.partition}@{record.offset} was never sent",
                    record.partition,
                    record.value,
                )
                continue
            if send.outcome is Outcome.FAIL:
                why = "whose send failed"
            elif (
                isolation is Isolation.READ_COMMITTED
                and send.txn is not None
                and self.fates[send.txn] is TxnFate.ABORTED
            ):
                why = f"of aborted transaction {send.txn}"
            else:
                continue
            reported.add((isolation, record.value))
            yield Anomaly(
                AnomalyKind.ABORTED_READ,
                f"{isolation} read {record.value!r} {why} at {record.partition}@{record.offset}",
                record.partition,
                record.value,
            )

    def _lost_writes(self) -> Iterator[Anomaly]:
        """Values known to be in the log (and visible at the isolation level) that a final read lacks."""
        in_log = {record.value for _, record in self.reads}
        for isolation, final_values in self.final_values.items():
            for send in self.sends.values():
                if send.value in final_values or not self._must_be_visible(send, isolation, in_log):
                    continue
                if send.txn is not None and self.fates[send.txn] is TxnFate.COMMITTED:
                    known = f"transaction {send.txn} committed"
                elif send.outcome is Outcome.OK:
                    known = f"acknowledged at {send.partition}@{send.offset}"
                else:
                    known = "read earlier"
                yield Anomaly(
                    AnomalyKind.LOST_WRITE,
                    f"{send.value!r} from {send.producer} ({known}) is not in the final {isolation} read",
                    send.partition,
                    send.value,
                )

    def _poll_order_anomalies(self) -> Iterator[Anomaly]:
        """Per consumer and assignment, offsets must rise one visible record at a time."""
        last_offsets: defaultdict[str, dict[Partition, int]] = defaultdict(dict)
        for number, op in enumerate(self.history):
            if isinstance(op, Assign):
                last_offsets[op.consumer] = {}
            elif isinstance(op, Poll | FinalRead):
                reader = op.consumer if isinstance(op, Poll) else f"final {op.isolation} read #{number}"
                last = last_offsets[reader]
                for record in op.records:
                    previous = last.get(record.partition)
                    last[record.partition] = record.offset
                    if previous is None:
                        continue
                    if record.offset <= previous:
                        yield Anomaly(
                            AnomalyKind.NONMONOTONIC_POLL,
                            f"{reader} read {record.partition}@{record.offset} after offset {previous}",
                            record.partition,
                            record.value,
                        )
                    else:
                        yield from self._skip(reader, op.isolation, record, previous)

    def _skip(self, reader: str, isolation: Isolation, record: Record, previous: int) -> Iterator[Anomaly]:
        offsets = self.final_offsets.get(isolation, {}).get(record.partition, [])
        skipped = offsets[bisect_right(offsets, previous) : bisect_left(offsets, record.offset)]
        if skipped:
            yield Anomaly(
                AnomalyKind.POLL_SKIP,
                f"{reader} read {record.partition}@{previous} then @{record.offset}, "
                f"skipping offsets {skipped[:10]} of the final {isolation} read",
                record.partition,
                record.value,
            )

    def _nonmonotonic_sends(self) -> Iterator[Anomaly]:
        last_acked: defaultdict[tuple[str, Partition], int] = defaultdict(lambda: -1)
        for op in self.history:
            if isinstance(op, Send) and op.outcome is Outcome.OK and op.offset is not None:
                key = (op.producer, op.partition)
                if op.offset <= last_acked[key]:
                    yield Anomaly(
                        AnomalyKind.NONMONOTONIC_SEND,
                        f"{op.producer} got {op.partition}@{op.offset} for {op.value!r} after "
                        f"offset {last_acked[key]}",
                        op.partition,
                        op.value,
                    )
                last_acked[key] = max(last_acked[key], op.offset)

    def _committed_offsets_backwards(self) -> Iterator[Anomaly]:
        highest: dict[tuple[str, Partition], int] = {}
        for op in self.history:
            if isinstance(op, CommittedOffset):
                key = (op.group, op.partition)
                if key in highest and op.offset < highest[key]:
                    yield Anomaly(
                        AnomalyKind.COMMITTED_OFFSET_BACKWARDS,
                        f"group {op.group} committed offset for {op.partition} went from {highest[key]} "
                        f"to {op.offset}",
                        op.partition,
                    )
                highest[key] = max(highest.get(key, op.offset), op.offset)

    def _stats(self) -> Stats:
        polls: Counter[Isolation] = Counter()
        polled: Counter[Isolation] = Counter()
        final: Counter[Isolation] = Counter()
        for op in self.history:
            if isinstance(op, Poll):
                polls[op.isolation] += 1
                polled[op.isolation] += len(op.records)
            elif isinstance(op, FinalRead):
                final[op.isolation] += len(op.records)
        return Stats(
            sends=Counter(send.outcome for send in self.sends.values()),
            txns=Counter(self.fates.values()),
            polls=polls,
            records_polled=polled,
            final_records=final,
            committed_observations=sum(isinstance(op, CommittedOffset) for op in self.history),
        )


def _placed_by(send: Send, position: tuple[Partition, int]) -> bool:
    """Whether a send put its value at ``position``: its partition, and its acknowledged offset if known."""
    partition, offset = position
    acknowledged = send.outcome is Outcome.OK and send.offset is not None
    return partition == send.partition and (not acknowledged or offset == send.offset)


def _fate_from_ends(ends: Sequence[EndTxn]) -> TxnFate:
    """Committed if a commit was acknowledged, aborted if an abort was; else unknown if a commit may have
    happened, and otherwise aborted: only its producer could commit it (a commit that certainly failed did
    not), and the coordinator aborts what a dead producer left open.
    """
    if any(end.commit and end.outcome is Outcome.OK for end in ends):
        return TxnFate.COMMITTED
    if any(not end.commit and end.outcome is Outcome.OK for end in ends):
        return TxnFate.ABORTED
    if any(end.commit and end.outcome is Outcome.UNKNOWN for end in ends):
        return TxnFate.UNKNOWN
    return TxnFate.ABORTED
