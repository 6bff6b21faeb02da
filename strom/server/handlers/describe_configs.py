"""DescribeConfigs (API key 32): topic and broker configs, with where each value comes from.

Versions served: 0-4.
- v1: config source and synonyms (is_default dropped).
- v2: same as v1.
- v3: config type and documentation (KIP-569).
- v4: flexible versions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.metadata.configs import ConfigSource
from strom.protocol.messages import describe_configs as schema

if TYPE_CHECKING:
    from strom.metadata.configs import ConfigEntry
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 4)

Response = schema.DescribeConfigsResponse
Result = schema.DescribeConfigsResponse.DescribeConfigsResult
ConfigResult = schema.DescribeConfigsResponse.DescribeConfigsResourceResult
Synonym = schema.DescribeConfigsResponse.DescribeConfigsSynonym


async def handle(ctx: RequestContext, request: schema.DescribeConfigsRequest) -> Response:
    controller = ctx.broker.controller
    version = ctx.api_version
    results = []
    for resource in request.resources:
        r = controller.describe_configs(
            resource.resource_type, resource.resource_name, resource.configuration_keys
        )
        results.append(
            Result(
                error_code=r.error_code,
                error_message=r.error_message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
                configs=[_entry(e, version, request) for e in r.configs],
            )
        )
    return Response(results=results)


def _entry(entry: ConfigEntry, version: int, request: schema.DescribeConfigsRequest) -> ConfigResult:
    source = entry.source
    if version == 0 and source == ConfigSource.STATIC_BROKER_CONFIG:
        source = ConfigSource.DEFAULT_CONFIG  # v0 has only is_default; static values read as defaults there
    return ConfigResult(
        name=entry.name,
        value=entry.value,
        read_only=entry.read_only,
        is_default=entry.is_default if version == 0 else False,
        config_source=source,
        is_sensitive=entry.is_sensitive,
        synonyms=[Synonym(name=n, value=v, source=s) for n, v, s in entry.synonyms]
        if request.include_synonyms
        else [],
        config_type=entry.config_type,
        documentation=entry.documentation if request.include_documentation else None,
    )
