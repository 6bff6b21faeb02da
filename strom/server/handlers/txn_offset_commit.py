"""TxnOffsetCommit (API key 28): consumed offsets committed inside a producer's transaction.

Versions served: 0-4.
- v0: transactional id, group, producer id and epoch, offsets.
- v1: same as v0.
- v2: the leader epoch of each offset (KIP-320).
- v3: generation, member id and group instance id, checked as OffsetCommit checks them (KIP-447), so a
  producer whose consumer was kicked out of the group cannot commit.
- v4: TRANSACTION_ABORTABLE may be answered (KIP-890).

The group's partition of ``__consumer_offsets`` must be in the producer's open transaction (AddOffsetsToTxn
first; KIP-890's verification, as for Produce): otherwise INVALID_TXN_STATE, or INVALID_PRODUCER_EPOCH for a
fenced producer, and nothing is written. The offsets go to ``__consumer_offsets`` in a transactional batch
stamped with the producer's id and epoch (an older epoch than the partition has seen is
INVALID_PRODUCER_EPOCH) and stay pending until the transaction's marker: the group's committed offsets
change only if it commits. Partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.messages import txn_offset_commit as schema
from strom.server.partition_requests import answer_known_partitions

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 4)

Response = schema.TxnOffsetCommitResponse
TopicResponse = schema.TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic
PartitionResponse = schema.TxnOffsetCommitResponse.TxnOffsetCommitResponsePartition
RequestTopic = schema.TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic


async def handle(ctx: RequestContext, request: schema.TxnOffsetCommitRequest) -> Response:
    broker = ctx.broker
    try:
        broker.verify_in_transaction(
            request.transactional_id,
            request.producer_id,
            request.producer_epoch,
            broker.offsets_topic.name,
            broker.groups.partition_for(request.group_id),
            retriable=ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        )
    except KafkaError as exc:
        return Response(
            topics=[
                TopicResponse(t.name, [PartitionResponse(p.partition_index, exc.code) for p in t.partitions])
                for t in request.topics
            ]
        )
    return Response(
        topics=answer_known_partitions(
            broker,
            request.topics,
            lambda topic, partitions: RequestTopic(topic.name, partitions),
            lambda known: broker.groups.commit_txn_offsets(
                dataclasses.replace(request, topics=known), ctx.api_version
            ),
            TopicResponse,
            PartitionResponse,
        )
    )
