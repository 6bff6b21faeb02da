"""Requests that name partitions and answer each with an error code (OffsetCommit, TxnOffsetCommit): those of
unknown topics are answered UNKNOWN_TOPIC_OR_PARTITION here, the rest go to a coordinator, and the answer
lists every partition in the order the request named them, as Kafka's does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from strom.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from strom.server.broker import Broker


class _Partition(Protocol):
    partition_index: int


class _Answered(Protocol):
    partition_index: int
    error_code: int


class _Topic(Protocol):
    name: str

    @property
    def partitions(self) -> Sequence[_Partition]: ...


class _AnsweredTopic(Protocol):
    name: str

    @property
    def partitions(self) -> Sequence[_Answered]: ...


RequestTopic = TypeVar("RequestTopic", bound=_Topic)
ResponseTopic = TypeVar("ResponseTopic")
ResponsePartition = TypeVar("ResponsePartition")


def answer_known_partitions(
    broker: Broker,
    topics: Sequence[RequestTopic],
    only: Callable[[RequestTopic, list[Any]], RequestTopic],
    handle: Callable[[list[RequestTopic]], Sequence[_AnsweredTopic]],
    make_topic: Callable[[str, list[ResponsePartition]], ResponseTopic],
    make_partition: Callable[[int, int], ResponsePartition],
) -> list[ResponseTopic]:
    """Hand the partitions that exist to ``handle`` (``only`` makes a request topic of some of its
    partitions) and answer every requested partition."""
    known: list[RequestTopic] = []
    errors: dict[tuple[str, int], int] = {}
    for topic in topics:
        partitions = []
        for p in topic.partitions:
            if broker.leader_epoch(topic.name, p.partition_index) >= 0:
                partitions.append(p)
            else:
                errors[topic.name, p.partition_index] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        if partitions:
            known.append(only(topic, partitions))
    if known:
        for result in handle(known):
            for answered in result.partitions:
                errors[result.name, answered.partition_index] = answered.error_code
    return [
        make_topic(
            t.name,
            [make_partition(p.partition_index, errors[t.name, p.partition_index]) for p in t.partitions],
        )
        for t in topics
    ]
