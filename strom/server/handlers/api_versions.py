"""ApiVersions (API key 18): which APIs and versions this broker speaks.

Versions served: 0-4.
- v1: throttle time.
- v2: same as v1.
- v3: flexible versions; the client names its software (KIP-511); supported/finalized features.
- v4: same as v3 (clients may send it to learn about UNSUPPORTED_VERSION fallbacks).

The response header is always v0, whatever the version (the client can't know our flexible versions yet).
A request newer than v4 is answered by the dispatcher with a v0 UNSUPPORTED_VERSION response (KIP-511).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages import api_versions as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 4)

#: KIP-511: software names and versions are letters, digits, '-' and '.', starting and ending alphanumeric.
_SOFTWARE_FIELD = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")


async def handle(ctx: RequestContext, request: schema.ApiVersionsRequest) -> schema.ApiVersionsResponse:
    api_keys = ctx.broker.supported_api_versions
    if ctx.api_version >= 3 and not (
        _SOFTWARE_FIELD.fullmatch(request.client_software_name)
        and _SOFTWARE_FIELD.fullmatch(request.client_software_version)
    ):
        return schema.ApiVersionsResponse(error_code=ErrorCode.INVALID_REQUEST, api_keys=api_keys)
    return schema.ApiVersionsResponse(error_code=ErrorCode.NONE, api_keys=api_keys)
