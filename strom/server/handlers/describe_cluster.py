"""DescribeCluster (API key 60): cluster id, controller and brokers, for admin clients.

Versions served: 0-1.
- v0: flexible from the start.
- v1: endpoint type (brokers or controllers, KIP-919); Strom's brokers are also its controllers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages import describe_cluster as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 1)

#: Every cluster operation (CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
#: IDEMPOTENT_WRITE): with no authorizer, everything is allowed.
ALL_CLUSTER_OPERATIONS = sum(1 << op for op in (4, 7, 8, 9, 10, 11, 12))
OPERATIONS_NOT_REQUESTED = -(2**31)
ENDPOINT_BROKERS, ENDPOINT_CONTROLLERS = 1, 2


async def handle(
    ctx: RequestContext, request: schema.DescribeClusterRequest
) -> schema.DescribeClusterResponse:
    broker = ctx.broker
    if request.endpoint_type not in (ENDPOINT_BROKERS, ENDPOINT_CONTROLLERS):
        return schema.DescribeClusterResponse(
            error_code=ErrorCode.UNSUPPORTED_ENDPOINT_TYPE,
            error_message=f"unknown endpoint type {request.endpoint_type}",
            endpoint_type=request.endpoint_type,
            cluster_id=broker.cluster_id,
        )
    return schema.DescribeClusterResponse(
        error_code=ErrorCode.NONE,
        endpoint_type=request.endpoint_type,
        cluster_id=broker.cluster_id,
        controller_id=broker.controller_id,
        brokers=[
            schema.DescribeClusterResponse.DescribeClusterBroker(
                broker_id=b.node_id, host=b.host, port=b.port, rack=b.rack
            )
            for b in broker.live_brokers()
        ],
        cluster_authorized_operations=(
            ALL_CLUSTER_OPERATIONS
            if request.include_cluster_authorized_operations
            else OPERATIONS_NOT_REQUESTED
        ),
    )
