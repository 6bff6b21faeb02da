"""Error codes of the transactional APIs as each request version may carry them.

KIP-588 added PRODUCER_FENCED; requests older than the version that introduced it get the code clients
of that age know for the same situation, INVALID_PRODUCER_EPOCH, as Kafka does.
"""

from __future__ import annotations

from strom.protocol.errors import ErrorCode


def for_version(code: ErrorCode, api_version: int, producer_fenced_since: int) -> ErrorCode:
    if code is ErrorCode.PRODUCER_FENCED and api_version < producer_fenced_since:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return code
