"""The group coordinator's settings, read from Kafka's broker configs.

Kafka's defaults apply. `strom serve` itself sets the two that Kafka's single-node `server.properties` also
overrides for a development node (``group.initial.rebalance.delay.ms=0``,
``offsets.topic.replication.factor=1``; see `strom.metadata.properties.SINGLE_NODE_DEFAULTS`), so that
DescribeConfigs reports the values in force.
"""

from __future__ import annotations

from dataclasses import dataclass

from strom.metadata.properties import BrokerConfig

#: Kafka's classic-group join timeout for members that have no member id yet: they cannot heartbeat, and a
#: client that gave up on its parked JoinGroup must not stay in the group forever.
NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """Everything the coordinator and its storage need, in milliseconds and counts."""

    offsets_topic_num_partitions: int = 50
    offsets_topic_replication_factor: int = 3
    offsets_topic_segment_bytes: int = 100 * 1024 * 1024
    offsets_retention_ms: int = 7 * 24 * 60 * 60 * 1000
    offsets_retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = 4096
    initial_rebalance_delay_ms: int = 3000
    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    max_size: int = 2**31 - 1
    new_member_join_timeout_ms: int = NEW_MEMBER_JOIN_TIMEOUT_MS

    @classmethod
    def from_broker_config(cls, config: BrokerConfig) -> GroupConfig:
        """The broker's settings, by Kafka's names."""
        return cls(
            offsets_topic_num_partitions=config.get_int("offsets.topic.num.partitions"),
            offsets_topic_replication_factor=config.get_int("offsets.topic.replication.factor"),
            offsets_topic_segment_bytes=config.get_int("offsets.topic.segment.bytes"),
            offsets_retention_ms=config.get_int("offsets.retention.minutes") * 60_000,
            offsets_retention_check_interval_ms=config.get_int("offsets.retention.check.interval.ms"),
            offset_metadata_max_bytes=config.get_int("offset.metadata.max.bytes"),
            initial_rebalance_delay_ms=config.get_int("group.initial.rebalance.delay.ms"),
            min_session_timeout_ms=config.get_int("group.min.session.timeout.ms"),
            max_session_timeout_ms=config.get_int("group.max.session.timeout.ms"),
            max_size=config.get_int("group.max.size"),
        )
