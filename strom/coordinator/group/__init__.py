"""Consumer groups, classic (JoinGroup/SyncGroup/Heartbeat/LeaveGroup) and of the consumer group protocol
(KIP-848, ConsumerGroupHeartbeat), and their committed offsets.

`GroupCoordinator` is the state machine the request handlers call; `OffsetsTopic` stores its records in
``__consumer_offsets`` and replays them at start-up; `GroupConfig` holds the broker settings both use.
"""

from strom.coordinator.group.config import GroupConfig
from strom.coordinator.group.coordinator import GroupCoordinator
from strom.coordinator.group.storage import OFFSETS_TOPIC, OffsetsTopic

__all__ = ["OFFSETS_TOPIC", "GroupConfig", "GroupCoordinator", "OffsetsTopic"]
