"""Metadata (API key 3): brokers, cluster id, controller, and topics with their partitions.

Versions served: 0-12.
- v0: an empty topic list means all topics.
- v1: rack, controller id, is_internal; a null topic list means all topics, an empty one none.
- v2: cluster id.
- v3: throttle time.
- v4: allow_auto_topic_creation (older versions always allow it).
- v5: offline replicas.
- v6: same as v5.
- v7: leader epoch (KIP-320).
- v8: authorized operations (KIP-430).
- v9: flexible versions.
- v10: topic ids (KIP-516); topics may be asked for by id.
- v11: cluster authorized operations removed (moved to DescribeCluster).
- v12: topic names nullable in the response (by-id lookups of unknown ids).

Topics that don't exist are created here when both the request and the broker's `auto.create.topics.enable`
allow it, with the broker's `num.partitions` and `default.replication.factor`, as Kafka does.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.messages import metadata as schema

if TYPE_CHECKING:
    from strom.server.broker import Broker
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 12)

#: Authorized-operations bitfield when not asked for (Kafka's Integer.MIN_VALUE sentinel).
OPERATIONS_NOT_REQUESTED = -(2**31)
#: Every topic operation (READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS):
#: Strom has no authorizer, so every client may do everything.
ALL_TOPIC_OPERATIONS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))
NO_TOPIC_ID = uuid.UUID(int=0)

Response = schema.MetadataResponse
TopicResponse = schema.MetadataResponse.MetadataResponseTopic
PartitionResponse = schema.MetadataResponse.MetadataResponsePartition
BrokerResponse = schema.MetadataResponse.MetadataResponseBroker


async def handle(ctx: RequestContext, request: schema.MetadataRequest) -> Response:
    broker = ctx.broker
    version = ctx.api_version
    all_topics = request.topics is None or (version == 0 and not request.topics)
    allow_create = (version < 4 or request.allow_auto_topic_creation) and broker.auto_create_topics
    operations = (
        ALL_TOPIC_OPERATIONS if request.include_topic_authorized_operations else OPERATIONS_NOT_REQUESTED
    )
    if version < 12 and any(t.name is None or t.topic_id != NO_TOPIC_ID for t in request.topics or ()):
        # Asking by topic id needs v12; Kafka rejects the whole request (its error response has no brokers).
        return Response(
            controller_id=-1,
            topics=[
                TopicResponse(error_code=ErrorCode.INVALID_REQUEST, name=t.name or "", topic_id=NO_TOPIC_ID)
                for t in request.topics or ()
            ],
        )
    topics: list[TopicResponse] = []
    if all_topics:
        for name in sorted(broker.image.topic_names()):
            topics.append(_describe_topic(broker, name, operations))
    else:
        for wanted in request.topics or ():
            topics.append(_requested_topic(broker, wanted, allow_create, operations))
    return Response(
        brokers=[
            BrokerResponse(node_id=b.node_id, host=b.host, port=b.port, rack=b.rack)
            for b in broker.live_brokers()
        ],
        cluster_id=broker.cluster_id,
        controller_id=broker.controller_id,
        topics=topics,
        cluster_authorized_operations=OPERATIONS_NOT_REQUESTED,
    )


def _requested_topic(
    broker: Broker, wanted: schema.MetadataRequest.MetadataRequestTopic, allow_create: bool, operations: int
) -> TopicResponse:
    name = wanted.name
    if name is None:
        name = broker.topic_name(wanted.topic_id)
        if name is None:
            return TopicResponse(
                error_code=ErrorCode.UNKNOWN_TOPIC_ID,
                name=None,
                topic_id=wanted.topic_id,
                topic_authorized_operations=operations,
            )
    if broker.image.topic(name) is None:
        if not allow_create:
            return TopicResponse(
                error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, name=name, topic_id=NO_TOPIC_ID
            )
        try:
            broker.auto_create_topic(name)
        except KafkaError as exc:
            return TopicResponse(error_code=exc.code, name=name, topic_id=NO_TOPIC_ID)
    return _describe_topic(broker, name, operations)


def _describe_topic(broker: Broker, name: str, operations: int) -> TopicResponse:
    topic = broker.image.topic(name)
    assert topic is not None
    partitions = [
        PartitionResponse(
            error_code=ErrorCode.NONE if p.leader >= 0 else ErrorCode.LEADER_NOT_AVAILABLE,
            partition_index=index,
            leader_id=p.leader,
            leader_epoch=p.leader_epoch,
            replica_nodes=list(p.replicas),
            isr_nodes=list(p.isr),
            offline_replicas=broker.offline_replicas(p.replicas),
        )
        for index, p in sorted(topic.partitions.items())
    ]
    return TopicResponse(
        error_code=ErrorCode.NONE,
        name=name,
        topic_id=topic.topic_id,
        is_internal=broker.is_internal_topic(name),
        partitions=partitions,
        topic_authorized_operations=operations,
    )
