"""The history checker: each anomaly kind is reported when a history has it, and clean histories pass."""

from __future__ import annotations

import pytest

from strom.testing.history import (
    AnomalyKind,
    Assign,
    CommittedOffset,
    EndTxn,
    FinalRead,
    Isolation,
    Operation,
    Outcome,
    Partition,
    Poll,
    Record,
    Report,
    Send,
    TxnFate,
    check,
)

P0 = Partition("events", 0)
P1 = Partition("events", 1)
RC = Isolation.READ_COMMITTED
RU = Isolation.READ_UNCOMMITTED


def sent(
    value: str,
    offset: int | None,
    partition: Partition = P0,
    *,
    producer: str = "producer-1",
    txn: str | None = None,
    outcome: Outcome = Outcome.OK,
) -> Send:
    return Send(producer, value, partition, outcome, offset if outcome is Outcome.OK else None, txn)


def at(offset: int, value: str, partition: Partition = P0) -> Record:
    return Record(partition, offset, value)


def poll(consumer: str, isolation: Isolation, *records: Record) -> Poll:
    return Poll(consumer, isolation, records)


def final(isolation: Isolation, *records: Record) -> FinalRead:
    return FinalRead(isolation, records)


def kinds(report: Report) -> list[AnomalyKind]:
    return [anomaly.kind for anomaly in report.anomalies]


def clean_history() -> list[Operation]:
    """Plain sends, a committed and an aborted transaction, consumers at both levels, committed offsets."""
    return [
        sent("a", 0),
        sent("b", 1),
        sent("t1-x", 2, txn="t1", producer="tx"),
        sent("t1-y", 0, P1, txn="t1", producer="tx"),
        EndTxn("tx", "t1", commit=True, outcome=Outcome.OK),
        sent("t2-x", 4, txn="t2", producer="tx"),
        EndTxn("tx", "t2", commit=False, outcome=Outcome.OK),
        sent("c", 6),
        sent("lost-in-flight", None, outcome=Outcome.UNKNOWN),
        Assign("rc-1", frozenset({P0, P1})),
        poll("rc-1", RC, at(0, "a"), at(1, "b"), at(2, "t1-x"), at(0, "t1-y", P1)),
        poll("rc-1", RC, at(6, "c")),
        poll("ru-1", RU, at(0, "a"), at(1, "b"), at(2, "t1-x"), at(4, "t2-x"), at(6, "c")),
        CommittedOffset("group", P0, 2),
        CommittedOffset("group", P0, 2),
        CommittedOffset("group", P0, 7),
        final(RC, at(0, "a"), at(1, "b"), at(2, "t1-x"), at(6, "c"), at(0, "t1-y", P1)),
        final(RU, at(0, "a"), at(1, "b"), at(2, "t1-x"), at(4, "t2-x"), at(6, "c"), at(0, "t1-y", P1)),
    ]


def test_clean_history_has_no_anomalies_and_counts_what_ran() -> None:
    report = check(clean_history())

    assert report.ok, report.summary()
    assert report.stats.sends == {Outcome.OK: 6, Outcome.UNKNOWN: 1}
    assert report.stats.txns == {TxnFate.COMMITTED: 1, TxnFate.ABORTED: 1}
    assert report.stats.polls == {RC: 2, RU: 1}
    assert report.stats.records_polled == {RC: 5, RU: 5}
    assert report.stats.final_records == {RC: 5, RU: 6}
    assert report.stats.committed_observations == 3
    assert "no anomalies" in report.summary()


def test_acknowledged_write_missing_from_final_reads_is_lost() -> None:
    report = check([sent("a", 0), sent("b", 1), final(RC, at(0, "a")), final(RU, at(0, "a"))])

    assert kinds(report) == [AnomalyKind.LOST_WRITE, AnomalyKind.LOST_WRITE]
    assert {anomaly.value for anomaly in report.anomalies} == {"b"}
    assert "acknowledged at events-0@1" in report.anomalies[0].detail


def test_write_with_unknown_outcome_is_never_required() -> None:
    history = [sent("a", 0), sent("maybe", None, outcome=Outcome.UNKNOWN), final(RC, at(0, "a"))]

    assert check(history).ok


def test_write_with_unknown_outcome_once_read_must_stay() -> None:
    history = [
        sent("maybe", None, outcome=Outcome.UNKNOWN),
        poll("ru-1", RU, at(0, "maybe")),
        final(RU),
        final(RC),
    ]

    report = check(history)

    assert kinds(report) == [AnomalyKind.LOST_WRITE, AnomalyKind.LOST_WRITE]
    assert "read earlier" in report.anomalies[0].detail


def test_committed_transaction_must_be_visible_to_read_committed() -> None:
    history = [
        sent("t1-x", 0, txn="t1"),
        sent("t1-y", None, txn="t1", outcome=Outcome.UNKNOWN),  # its ack was lost, the commit was not
        EndTxn("producer-1", "t1", commit=True, outcome=Outcome.OK),
        final(RC, at(0, "t1-x")),
    ]

    report = check(history)

    assert kinds(report) == [AnomalyKind.LOST_WRITE]
    assert report.anomalies[0].value == "t1-y"
    assert "transaction t1 committed" in report.anomalies[0].detail


def test_aborted_transaction_stays_in_the_log_but_not_visible_to_read_committed() -> None:
    history = [
        sent("t1-x", 0, txn="t1"),
        sent("t1-y", 1, txn="t1"),
        EndTxn("producer-1", "t1", commit=False, outcome=Outcome.OK),
        final(RC),
        final(RU, at(0, "t1-x")),
    ]

    report = check(history)

    assert kinds(report) == [AnomalyKind.LOST_WRITE]
    assert report.anomalies[0].value == "t1-y"
    assert "final read_uncommitted read" in report.anomalies[0].detail


def test_read_committed_read_proves_an_unknown_commit_so_the_whole_transaction_must_show() -> None:
    history = [
        sent("t1-x", 0, txn="t1"),
        sent("t1-y", 0, P1, txn="t1"),
        EndTxn("producer-1", "t1", commit=True, outcome=Outcome.UNKNOWN),
        poll("rc-1", RC, at(0, "t1-x")),
        final(RC, at(0, "t1-x")),
    ]

    report = check(history)

    assert report.stats.txns == {TxnFate.COMMITTED: 1}
    assert [(anomaly.kind, anomaly.value) for anomaly in report.anomalies] == [
        (AnomalyKind.LOST_WRITE, "t1-y")
    ]


def test_transaction_with_unknown_commit_and_unread_may_have_aborted() -> None:
    history = [
        sent("t1-x", 0, txn="t1"),
        EndTxn("producer-1", "t1", commit=True, outcome=Outcome.UNKNOWN),
        poll("ru-1", RU, at(0, "t1-x")),
        final(RC),
        final(RU, at(0, "t1-x")),
    ]

    report = check(history)

    assert report.ok, report.summary()
    assert report.stats.txns == {TxnFate.UNKNOWN: 1}


@pytest.mark.parametrize(
    ("ends", "fate"),
    [
        pytest.param([(True, Outcome.OK)], TxnFate.COMMITTED, id="commit-ok"),
        pytest.param([(True, Outcome.UNKNOWN), (True, Outcome.OK)], TxnFate.COMMITTED, id="commit-retried"),
        pytest.param([(False, Outcome.OK)], TxnFate.ABORTED, id="abort-ok"),
        pytest.param([(True, Outcome.FAIL), (False, Outcome.UNKNOWN)], TxnFate.ABORTED, id="commit-failed"),
        pytest.param(
            [(True, Outcome.UNKNOWN), (False, Outcome.OK)], TxnFate.ABORTED, id="abort-after-unknown"
        ),
        pytest.param([(True, Outcome.UNKNOWN)], TxnFate.UNKNOWN, id="commit-unknown"),
        pytest.param([(True, Outcome.UNKNOWN), (False, Outcome.FAIL)], TxnFate.UNKNOWN, id="abort-refused"),
        pytest.param([], TxnFate.ABORTED, id="crashed-before-commit"),
    ],
)
def test_transaction_fate_follows_its_end_requests(ends: list[tuple[bool, Outcome]], fate: TxnFate) -> None:
    history: list[Operation] = [sent("t1-x", 0, txn="t1")]
    history += [EndTxn("producer-1", "t1", commit, outcome) for commit, outcome in ends]

    assert check(history).stats.txns == {fate: 1}


def test_read_committed_read_of_aborted_transaction_is_aborted_read() -> None:
    history = [
        sent("t1-x", 0, txn="t1"),
        EndTxn("producer-1", "t1", commit=False, outcome=Outcome.OK),
        sent("t2-x", 1, txn="t2"),  # its producer crashed before asking to commit
        poll("ru-1", RU, at(0, "t1-x"), at(1, "t2-x")),
        poll("rc-1", RC, at(0, "t1-x")),
        final(RC, at(1, "t2-x")),
    ]

    report = check(history)

    assert [(anomaly.kind, anomaly.value) for anomaly in report.anomalies] == [
        (AnomalyKind.ABORTED_READ, "t1-x"),
        (AnomalyKind.ABORTED_READ, "t2-x"),
    ]
    assert "of aborted transaction t1" in report.anomalies[0].detail


def test_reading_a_send_that_certainly_failed_is_aborted_read_at_any_level() -> None:
    history = [
        sent("refused", None, outcome=Outcome.FAIL),
        poll("ru-1", RU, at(0, "refused")),
        poll("ru-2", RU, at(0, "refused")),  # reported once per isolation level, however often read
        poll("rc-1", RC, at(0, "refused")),
    ]

    report = check(history)

    assert kinds(report) == [AnomalyKind.ABORTED_READ, AnomalyKind.ABORTED_READ]
    assert report.anomalies[0].detail == "read_uncommitted read 'refused' whose send failed at events-0@0"
    assert report.anomalies[1].detail.startswith("read_committed read 'refused'")


def test_value_at_two_offsets_is_duplicate() -> None:
    history = [sent("a", 0), poll("ru-1", RU, at(0, "a")), final(RU, at(0, "a"), at(1, "a"))]

    report = check(history)

    assert kinds(report) == [AnomalyKind.DUPLICATE]
    assert report.anomalies[0].detail == "'a' read at events-0@0, events-0@1"


def test_read_elsewhere_than_acknowledged_is_inconsistent() -> None:
    history = [sent("a", 3), final(RU, at(4, "a"))]

    report = check(history)

    assert kinds(report) == [AnomalyKind.INCONSISTENT_OFFSET]
    assert report.anomalies[0].detail == "'a' sent to events-0 (acknowledged at 3) but read at events-0@4"


def test_read_in_another_partition_than_sent_is_inconsistent() -> None:
    history = [sent("a", None, P0, outcome=Outcome.UNKNOWN), final(RU, at(0, "a", P1))]

    assert kinds(check(history)) == [AnomalyKind.INCONSISTENT_OFFSET]


def test_two_values_at_one_offset_are_inconsistent() -> None:
    history = [sent("a", 0), sent("b", 1), poll("ru-1", RU, at(0, "a")), final(RU, at(0, "b"))]

    report = check(history)

    assert AnomalyKind.INCONSISTENT_OFFSET in kinds(report)
    assert "events-0@0 holds ['a', 'b']" in report.summary()


def test_value_nobody_sent_is_unwritten_read() -> None:
    report = check([final(RU, at(0, "garbage"))])

    assert kinds(report) == [AnomalyKind.UNWRITTEN_READ]
    assert report.anomalies[0].value == "garbage"


def test_offsets_going_backwards_within_an_assignment_are_nonmonotonic() -> None:
    history = [
        sent("a", 0),
        sent("b", 1),
        Assign("rc-1", frozenset({P0})),
        poll("rc-1", RC, at(0, "a"), at(1, "b")),
        poll("rc-1", RC, at(0, "a")),
    ]

    report = check(history)

    assert kinds(report) == [AnomalyKind.NONMONOTONIC_POLL]
    assert report.anomalies[0].detail == "rc-1 read events-0@0 after offset 1"


def test_new_assignment_or_other_consumer_may_read_again() -> None:
    history = [
        sent("a", 0),
        sent("b", 1),
        poll("rc-1", RC, at(0, "a"), at(1, "b")),
        poll("rc-2", RC, at(0, "a")),
        Assign("rc-1", frozenset({P0})),
        poll("rc-1", RC, at(1, "b")),
    ]

    assert check(history).ok


def test_jumping_over_a_visible_record_is_poll_skip() -> None:
    history = [
        sent("a", 0),
        sent("b", 1),
        sent("c", 2),
        poll("ru-1", RU, at(0, "a"), at(2, "c")),
        final(RU, at(0, "a"), at(1, "b"), at(2, "c")),
    ]

    report = check(history)

    assert kinds(report) == [AnomalyKind.POLL_SKIP]
    assert "skipping offsets [1]" in report.anomalies[0].detail


def test_read_committed_passes_over_aborted_records_and_markers_without_skipping() -> None:
    history = [
        sent("a", 0),
        sent("t1-x", 1, txn="t1"),
        EndTxn("producer-1", "t1", commit=False, outcome=Outcome.OK),
        sent("c", 3),  # offset 2 is the abort marker
        poll("rc-1", RC, at(0, "a"), at(3, "c")),
        final(RC, at(0, "a"), at(3, "c")),
        final(RU, at(0, "a"), at(1, "t1-x"), at(3, "c")),
    ]

    assert check(history).ok


def test_final_read_itself_must_be_in_order() -> None:
    history = [sent("a", 0), sent("b", 1), final(RU, at(1, "b"), at(0, "a"))]

    assert kinds(check(history)) == [AnomalyKind.NONMONOTONIC_POLL]


def test_acknowledged_offsets_going_backwards_for_one_producer_are_nonmonotonic_sends() -> None:
    history = [
        sent("a", 5),
        sent("b", 4, producer="producer-2"),  # another producer: no order between them
        sent("c", 0, P1),  # another partition
        sent("d", 3),
        sent("e", 6),
    ]

    report = check(history)

    assert [(anomaly.kind, anomaly.value) for anomaly in report.anomalies] == [
        (AnomalyKind.NONMONOTONIC_SEND, "d")
    ]
    assert report.anomalies[0].detail == "producer-1 got events-0@3 for 'd' after offset 5"


def test_committed_offset_decreasing_is_reported_per_group_and_partition() -> None:
    history = [
        CommittedOffset("g1", P0, 10),
        CommittedOffset("g2", P0, 3),  # another group
        CommittedOffset("g1", P1, 1),  # another partition
        CommittedOffset("g1", P0, 10),
        CommittedOffset("g1", P0, 8),
        CommittedOffset("g1", P0, 9),  # still below the 10 seen before
    ]

    report = check(history)

    assert kinds(report) == [AnomalyKind.COMMITTED_OFFSET_BACKWARDS] * 2
    assert report.anomalies[0].detail == "group g1 committed offset for events-0 went from 10 to 8"


def test_summary_counts_each_kind_with_examples() -> None:
    history = [sent(f"v{n}", n) for n in range(8)] + [final(RU)]

    summary = check(history).summary(examples=2)

    assert "lost-write: 8" in summary
    assert summary.count("is not in the final read_uncommitted read") == 2


def test_value_sent_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="sent twice"):
        check([sent("a", 0), sent("a", 1)])
