"""What the coordinator reads of the consumer protocol: the topics a member subscribes to.

A classic group's member metadata is opaque to the coordinator, except for groups of protocol type
"consumer", whose subscriptions it reads to know which topics the group consumes: their offsets never expire
while the group is active, and OffsetDelete refuses them (GROUP_SUBSCRIBED_TO_TOPIC). Like Kafka, only the
version-0 prefix of the subscription is read (every later version starts with it), so newer clients stay
readable.
"""

from __future__ import annotations

from strom.protocol.messages.consumer_protocol import decode_subscription
from strom.protocol.primitives import DecodeError, read_int16

CONSUMER_PROTOCOL_TYPE = "consumer"


def subscribed_topics(metadata: bytes) -> frozenset[str] | None:
    """The topics in a consumer's subscription, or None if the bytes are not a consumer subscription."""
    try:
        version, pos = read_int16(metadata, 0)
        if version < 0:
            return None
        subscription, _ = decode_subscription(memoryview(metadata), pos, 0)
    except DecodeError:
        return None
    return frozenset(subscription.topics)
