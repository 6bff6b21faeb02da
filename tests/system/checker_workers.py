"""Client programs for the checker run (test_checker.py), each its own process so that it can be killed -9.

    python checker_workers.py {idempotent,transactional,consumer} --bootstrap HOST:PORT --name NAME \
        --history FILE [role options]

A worker records what it does as JSON lines in its history file, writing each line out at once, so a worker
killed mid-run leaves everything it recorded up to that moment. Lines come in Jepsen's pairs: an ``invoke``
line before a request, then ``ok``, ``fail`` or ``info`` (outcome unknown) when the client learns how it
went. `load_history` turns a file into `strom.testing.history` operations; an invocation that never completed
(its worker was killed, or it timed out) has an unknown outcome.

- ``idempotent``: an idempotent producer (acks=all) sending ``--count`` unique values to random partitions.
- ``transactional``: a transactional producer running ``--count`` transactions of one to four values,
  committing or (with probability ``--abort-ratio``) aborting each; a new incarnation reuses the
  transactional id, which fences the previous one and aborts what it left open.
- ``consumer``: a group member at ``--isolation``, committing its positions after each non-empty poll,
  until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from strom.testing.history import Assign, EndTxn, Isolation, Operation, Outcome, Partition, Poll, Record, Send

#: How long one transactional call may block before it is retried (librdkafka allows calling it again).
TXN_CALL_TIMEOUT_S = 10.0
TXN_CALL_ATTEMPTS = 6
MESSAGE_TIMEOUT_MS = 60_000
FLUSH_TIMEOUT_S = 90.0
POLL_TIMEOUT_S = 0.5
POLL_BATCH = 50
#: librdkafka waits up to 10 s between reconnects by default; a restarted broker is back within seconds.
RECONNECT_BACKOFF_MAX_MS = 500

_OUTCOMES = {"ok": Outcome.OK, "fail": Outcome.FAIL, "info": Outcome.UNKNOWN}


class EventLog:
    """The worker's history file: one JSON object per line, each written out before the call it announces."""

    def __init__(self, path: Path, process: str) -> None:
        self._file: TextIO = path.open("a", buffering=1)
        self._process = process

    def write(self, f: str, type: str, **fields: Any) -> None:
        self._file.write(json.dumps({"process": self._process, "f": f, "type": type, **fields}) + "\n")

    def client_error(self, error: KafkaError) -> None:
        """librdkafka's error_cb: connection trouble while the broker is down, mostly; kept for the record."""
        self.write("client_error", "info", error=str(error), fatal=error.fatal())


# -- producers -----------------------------------------------------------------------------------------------


def run_idempotent(args: argparse.Namespace, log: EventLog) -> None:
    producer = Producer(_producer_config(args, log, {"enable.idempotence": True}))
    rng = random.Random(args.seed)
    partitions = _partitions(args.topics)
    for n in range(args.count):
        _send(producer, log, rng.choice(partitions), f"{args.name}-{n}", txn=None)
        time.sleep(args.pace)
        producer.poll(0)
    _flush(producer)


def _transactional_producer(args: argparse.Namespace, log: EventLog) -> Producer:
    producer = Producer(
        _producer_config(args, log, {"transactional.id": args.transactional_id, "enable.idempotence": True})
    )
    _retrying(lambda: producer.init_transactions(TXN_CALL_TIMEOUT_S))
    return producer


def run_transactional(args: argparse.Namespace, log: EventLog) -> None:
    producer = _transactional_producer(args, log)
    rng = random.Random(args.seed)
    partitions = _partitions(args.topics)
    for n in range(args.count):
        txn = f"{args.name}.{n}"
        commit = rng.random() >= args.abort_ratio
        producer.begin_transaction()
        try:
            for k in range(rng.randint(1, 4)):
                _send(producer, log, rng.choice(partitions), f"{txn}-{k}", txn=txn)
            time.sleep(rng.uniform(0, args.pace))  # keep the transaction open a while: kills land inside
            producer.poll(0)
        except KafkaException as error:
            if not error.args[0].txn_requires_abort():
                raise
            commit = False
        try:
            if commit:
                _commit(producer, log, txn)
            else:
                _end_transaction(producer, log, txn, commit=False)
        except KafkaException as error:
            if not error.args[0].fatal():
                raise
            # What an application does with a fatal producer error: a new producer, whose
            # init_transactions fences the old one and aborts whatever it left open. (librdkafka ends an
            # abort with a fatal INVALID_TXN_STATE when the broker died before it saw the transaction's
            # AddPartitionsToTxn: the coordinator has no transaction to abort.)
            producer = _transactional_producer(args, log)
        producer.poll(0)
    _flush(producer)


def _producer_config(args: argparse.Namespace, log: EventLog, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": MESSAGE_TIMEOUT_MS,
        "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
        "error_cb": log.client_error,
        **extra,
    }


def _send(producer: Producer, log: EventLog, partition: Partition, value: str, txn: str | None) -> None:
    log.write("send", "invoke", value=value, topic=partition.topic, partition=partition.number, txn=txn)

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is None:
            log.write("send", "ok", value=value, offset=message.offset())
        else:
            # Even a "permanent" delivery error may follow a write the broker made but could not answer.
            log.write("send", "info", value=value, error=str(error))

    producer.produce(partition.topic, value.encode(), partition=partition.number, on_delivery=delivered)


def _commit(producer: Producer, log: EventLog, txn: str) -> None:
    """Commit; a commit the client says must be aborted certainly did not happen, so it is aborted."""
    try:
        _end_transaction(producer, log, txn, commit=True)
    except KafkaException as error:
        if not error.args[0].txn_requires_abort():
            raise
        _end_transaction(producer, log, txn, commit=False)


def _end_transaction(producer: Producer, log: EventLog, txn: str, *, commit: bool) -> None:
    log.write("end_txn", "invoke", txn=txn, commit=commit)
    call = producer.commit_transaction if commit else producer.abort_transaction
    try:
        _retrying(lambda: call(TXN_CALL_TIMEOUT_S))
    except KafkaException as error:
        certainly_not = commit and error.args[0].txn_requires_abort()
        log.write("end_txn", "fail" if certainly_not else "info", txn=txn, commit=commit, error=str(error))
        raise
    log.write("end_txn", "ok", txn=txn, commit=commit)


def _retrying(call: Callable[[], None]) -> None:
    """Call again while librdkafka says the error is retriable (a timeout while the broker restarts)."""
    for attempt in range(TXN_CALL_ATTEMPTS):
        try:
            call()
            return
        except KafkaException as error:
            if not error.args[0].retriable() or attempt == TXN_CALL_ATTEMPTS - 1:
                raise


def _flush(producer: Producer) -> None:
    unsent = producer.flush(FLUSH_TIMEOUT_S)
    if unsent:
        raise RuntimeError(f"{unsent} messages still undelivered after {FLUSH_TIMEOUT_S:g} s")


# -- consumer ------------------------------------------------------------------------------------------------


def run_consumer(args: argparse.Namespace, log: EventLog) -> None:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "isolation.level": args.isolation,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
            "error_cb": log.client_error,
        }
    )

    def assigned(_: Consumer, partitions: list[TopicPartition]) -> None:
        log.write("assign", "ok", partitions=[[tp.topic, tp.partition] for tp in partitions])

    consumer.subscribe(list(args.topics), on_assign=assigned)
    while not stopping:
        messages = consumer.consume(num_messages=POLL_BATCH, timeout=POLL_TIMEOUT_S)
        records = [
            [m.topic(), m.partition(), m.offset(), (m.value() or b"").decode()]
            for m in messages
            if m.error() is None
        ]
        if not records:
            continue
        log.write("poll", "ok", isolation=args.isolation, records=records)
        try:
            consumer.commit(asynchronous=False)
            log.write("commit_offsets", "ok")
        except KafkaException as error:
            log.write("commit_offsets", "info", error=str(error))
    consumer.close()


# -- reading histories ---------------------------------------------------------------------------------------


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events of one history file; a last line cut short by a kill is left out."""
    lines = path.read_text().splitlines()
    events = []
    for number, line in enumerate(lines):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines) - 1:
                raise
    return events


def load_history(path: Path) -> list[Operation]:
    """One worker's operations in the order it invoked them, completed with what it learned."""
    events = read_events(path)
    sent = {e["value"]: e for e in events if e["f"] == "send" and e["type"] != "invoke"}
    ended = {(e["txn"], e["commit"]): e for e in events if e["f"] == "end_txn" and e["type"] != "invoke"}
    operations: list[Operation] = []
    for event in events:
        kind, process = (event["f"], event["type"]), event["process"]
        if kind == ("send", "invoke"):
            done = sent.get(event["value"], {"type": "info"})
            operations.append(
                Send(
                    process,
                    event["value"],
                    Partition(event["topic"], event["partition"]),
                    _OUTCOMES[done["type"]],
                    done.get("offset"),
                    event["txn"],
                )
            )
        elif kind == ("end_txn", "invoke"):
            done = ended.get((event["txn"], event["commit"]), {"type": "info"})
            operations.append(EndTxn(process, event["txn"], event["commit"], _OUTCOMES[done["type"]]))
        elif kind == ("assign", "ok"):
            operations.append(Assign(process, frozenset(Partition(t, p) for t, p in event["partitions"])))
        elif kind == ("poll", "ok"):
            records = tuple(Record(Partition(t, p), o, value) for t, p, o, value in event["records"])
            operations.append(Poll(process, Isolation(event["isolation"]), records))
    return operations


# -- command line --------------------------------------------------------------------------------------------


def _partitions(topics: Sequence[str]) -> list[Partition]:
    """``name:count`` arguments as the partitions they name."""
    partitions = []
    for spec in topics:
        name, count = spec.split(":")
        partitions += [Partition(name, number) for number in range(int(count))]
    return partitions


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A client of the checker run, recording its history.")
    parser.add_argument("role", choices=["idempotent", "transactional", "consumer"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--name", required=True, help="this incarnation's name, unique in the run")
    parser.add_argument("--history", type=Path, required=True)
    parser.add_argument("--topics", nargs="+", required=True, help="name:partitions (consumers: names)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--pace", type=float, default=0.05, help="seconds between sends or transactions")
    parser.add_argument("--transactional-id")
    parser.add_argument("--abort-ratio", type=float, default=0.3)
    parser.add_argument("--group")
    parser.add_argument("--isolation", choices=[isolation.value for isolation in Isolation])
    args = parser.parse_args(argv)
    log = EventLog(args.history, args.name)
    {"idempotent": run_idempotent, "transactional": run_transactional, "consumer": run_consumer}[args.role](
        args, log
    )


if __name__ == "__main__":
    main()
