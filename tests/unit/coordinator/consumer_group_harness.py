"""A coordinator serving consumer-protocol groups on a fake clock and fake topics, and clients that drive it.

`Client` behaves like a cooperative KIP-848 consumer: it heartbeats with its epoch and the partitions it
owns, and adopts any assignment it is sent at once (revoking what is gone, taking what is new).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from group_harness import PARTITIONS, FakeClock, MemoryLog

from strom.coordinator.group import GroupConfig, GroupCoordinator
from strom.coordinator.group.consumer_group import ConsumerGroup, TopicInfo
from strom.coordinator.group.consumer_membership import ConsumerGroupConfig
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.consumer_group_heartbeat import (
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
)

REBALANCE_MS = 30_000
GROUP = "orders"


class FakeTopics:
    """Topics by name with stable ids; `grow` is CreatePartitions."""

    def __init__(self) -> None:
        self._by_name: dict[str, TopicInfo] = {}

    def add(self, name: str, partitions: int) -> uuid.UUID:
        topic_id = uuid.uuid5(uuid.NAMESPACE_URL, name)
        self._by_name[name] = TopicInfo(topic_id, name, partitions)
        return topic_id

    def grow(self, name: str, partitions: int) -> None:
        self._by_name[name] = TopicInfo(self._by_name[name].topic_id, name, partitions)

    def by_name(self, name: str) -> TopicInfo | None:
        return self._by_name.get(name)

    def by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return next((t for t in self._by_name.values() if t.topic_id == topic_id), None)


class ConsumerHarness:
    def __init__(self, **consumer_config: Any) -> None:
        self.clock = FakeClock()
        self.log = MemoryLog()
        self.topics = FakeTopics()
        self.config = GroupConfig(initial_rebalance_delay_ms=0, offsets_topic_num_partitions=PARTITIONS)
        self.consumer_config = ConsumerGroupConfig(**consumer_config)
        self.coordinator = self.rebuilt()

    def rebuilt(self) -> GroupCoordinator:
        """A coordinator loaded from everything written so far (nothing, the first time)."""
        coordinator = GroupCoordinator(
            self.config, self.log, self.clock, consumer_config=self.consumer_config, topics=self.topics
        )
        coordinator.begin_loading(PARTITIONS, range(PARTITIONS))
        for partition in range(PARTITIONS):
            for record in self.log.partitions.get(partition, []):
                coordinator.replay(record)
            coordinator.finish_loading(partition)
        return coordinator

    def advance(self, ms: int) -> None:
        self.clock.now += ms
        self.coordinator.tick()

    def group(self, group_id: str = GROUP) -> ConsumerGroup:
        group = self.coordinator.consumer_groups.get(group_id)
        assert group is not None, f"no consumer group {group_id}"
        return group

    def send(
        self, request: ConsumerGroupHeartbeatRequest, version: int = 1
    ) -> ConsumerGroupHeartbeatResponse:
        return self.coordinator.consumer_group_heartbeat(
            request, client_id="client", client_host="/127.0.0.1", api_version=version
        )

    def client(self, topics: Iterable[str], **kwargs: Any) -> Client:
        return Client(self, list(topics), **kwargs)


@dataclass
class Client:
    harness: ConsumerHarness
    topics: list[str]
    group_id: str = GROUP
    instance_id: str | None = None
    assignor: str | None = None
    member_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    epoch: int = 0
    owned: dict[uuid.UUID, list[int]] = field(default_factory=dict)
    #: Set to hold on to partitions instead of revoking them (a member slow to revoke).
    stubborn: bool = False
    last: ConsumerGroupHeartbeatResponse | None = None

    def heartbeat(self, **overrides: Any) -> ConsumerGroupHeartbeatResponse:
        joining = self.epoch == 0
        fields: dict[str, Any] = {
            "group_id": self.group_id,
            "member_id": self.member_id,
            "member_epoch": self.epoch,
            "instance_id": self.instance_id,
            "rebalance_timeout_ms": REBALANCE_MS if joining else -1,
            "subscribed_topic_names": self.topics if joining else None,
            "server_assignor": self.assignor,
            "topic_partitions": [
                ConsumerGroupHeartbeatRequest.TopicPartitions(t, sorted(p)) for t, p in self.owned.items()
            ],
        }
        fields.update(overrides)
        response = self.harness.send(ConsumerGroupHeartbeatRequest(**fields))
        self.last = response
        if response.error_code == ErrorCode.NONE:
            self.epoch = response.member_epoch
            if response.assignment is not None and not self.stubborn:
                self.owned = {tp.topic_id: list(tp.partitions) for tp in response.assignment.topic_partitions}
        return response

    def leave(self, epoch: int = -1) -> ConsumerGroupHeartbeatResponse:
        response = self.heartbeat(member_epoch=epoch, topic_partitions=None)
        self.epoch, self.owned = 0, {}
        return response

    def partitions(self) -> set[tuple[uuid.UUID, int]]:
        return {(t, p) for t, ps in self.owned.items() for p in ps}


def settle(clients: Iterable[Client], rounds: int = 6) -> None:
    """Heartbeat every client in turn until nothing changes (at most `rounds` rounds)."""
    members = list(clients)
    for _ in range(rounds):
        before = [(c.epoch, c.partitions()) for c in members]
        for client in members:
            assert client.heartbeat().error_code == ErrorCode.NONE, client.last
        if [(c.epoch, c.partitions()) for c in members] == before:
            return
