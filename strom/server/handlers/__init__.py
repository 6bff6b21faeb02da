"""One module per Kafka API, named after it; this registry is what ApiVersions advertises.

Each handler module declares the schema module it serves (`schema`), the version range it really implements
(`VERSIONS`, with a line per version in its docstring saying what that version adds) and
`async def handle(ctx, request) -> response | None` (None: send nothing, as for Produce with acks=0).
Handlers stay thin: they turn a request into calls on the log, the metadata controller or a coordinator, and
the results into a response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from strom.protocol.messages import api_versions as api_versions_schema
from strom.server.handlers import (
    add_offsets_to_txn,
    add_partitions_to_txn,
    alter_configs,
    api_versions,
    consumer_group_describe,
    consumer_group_heartbeat,
    create_partitions,
    create_topics,
    delete_groups,
    delete_records,
    delete_topics,
    describe_cluster,
    describe_configs,
    describe_groups,
    describe_log_dirs,
    describe_producers,
    describe_transactions,
    end_txn,
    fetch,
    find_coordinator,
    heartbeat,
    incremental_alter_configs,
    init_producer_id,
    join_group,
    leave_group,
    list_groups,
    list_offsets,
    list_transactions,
    metadata,
    offset_commit,
    offset_delete,
    offset_fetch,
    produce,
    sync_group,
    txn_offset_commit,
)


@dataclass(frozen=True, slots=True)
class Handler:
    key: int
    name: str
    min_version: int
    max_version: int
    schema: Any
    handle: Callable[[Any, Any], Awaitable[Any]]


def _handler(module: ModuleType) -> Handler:
    low, high = module.VERSIONS
    schema = module.schema
    assert schema.MIN_VERSION <= low <= high <= schema.MAX_VERSION, module.__name__
    return Handler(schema.API_KEY, schema.API_NAME, low, high, schema, module.handle)


HANDLERS: dict[int, Handler] = {
    h.key: h
    for h in map(
        _handler,
        [
            produce,
            fetch,
            list_offsets,
            metadata,
            offset_commit,
            offset_fetch,
            find_coordinator,
            join_group,
            heartbeat,
            leave_group,
            sync_group,
            describe_groups,
            list_groups,
            api_versions,
            create_topics,
            delete_topics,
            delete_records,
            init_producer_id,
            add_partitions_to_txn,
            add_offsets_to_txn,
            end_txn,
            txn_offset_commit,
            describe_configs,
            alter_configs,
            describe_log_dirs,
            create_partitions,
            delete_groups,
            incremental_alter_configs,
            describe_cluster,
            offset_delete,
            consumer_group_heartbeat,
            describe_producers,
            describe_transactions,
            list_transactions,
            consumer_group_describe,
        ],
    )
}


def supported_api_versions() -> list[api_versions_schema.ApiVersionsResponse.ApiVersion]:
    """The ranges this broker advertises: exactly the versions its handlers implement."""
    return [
        api_versions_schema.ApiVersionsResponse.ApiVersion(
            api_key=h.key, min_version=h.min_version, max_version=h.max_version
        )
        for h in sorted(HANDLERS.values(), key=lambda h: h.key)
    ]
