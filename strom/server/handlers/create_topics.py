"""CreateTopics (API key 19): create topics through the metadata controller.

Versions served: 2-7.
- v2: throttle time (v0-v1, the error-message-less forms, are gone in Kafka 4).
- v3: same as v2.
- v4: default partitions and replication factor may be requested with -1 (KIP-464).
- v5: flexible versions; the result carries the topic's configs, partition count and replication factor.
- v6: same as v5 (quota violations).
- v7: topic id in the result (KIP-516).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.metadata.controller import NewTopic
from strom.protocol.messages import create_topics as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (2, 7)

Response = schema.CreateTopicsResponse
TopicResult = schema.CreateTopicsResponse.CreatableTopicResult
ConfigResult = schema.CreateTopicsResponse.CreatableTopicConfigs


async def handle(ctx: RequestContext, request: schema.CreateTopicsRequest) -> Response:
    new_topics = [
        NewTopic(
            name=t.name,
            num_partitions=t.num_partitions,
            replication_factor=t.replication_factor,
            assignments=[(a.partition_index, list(a.broker_ids)) for a in t.assignments],
            configs={c.name: c.value for c in t.configs},
        )
        for t in request.topics
    ]
    results = ctx.broker.controller.create_topics(new_topics, validate_only=request.validate_only)
    return Response(
        topics=[
            TopicResult(
                name=r.name,
                topic_id=r.topic_id,
                error_code=r.error_code,
                error_message=r.error_message,
                num_partitions=r.num_partitions,
                replication_factor=r.replication_factor,
                configs=[
                    ConfigResult(
                        name=c.name,
                        value=c.value,
                        read_only=c.read_only,
                        config_source=c.source,
                        is_sensitive=c.is_sensitive,
                    )
                    for c in r.configs
                ]
                if not r.error_code
                else None,
            )
            for r in results
        ]
    )
