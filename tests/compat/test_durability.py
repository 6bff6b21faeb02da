"""Acknowledged messages survive the broker being killed with SIGKILL.

A message the broker acknowledged with acks=all must be in its log when it comes back, however abruptly
it died: no message lost, none written twice, each partition in the order it was produced.
"""

from __future__ import annotations

import signal

from scenario import (
    create_topic_with_confluent,
    keyed_messages,
    produce_with_confluent,
    read_with_confluent,
    verify_round_trip,
)

ACKNOWLEDGED_COUNT = 20_000


def test_acknowledged_messages_survive_kill_9(fresh_broker, unique_topic):
    create_topic_with_confluent(fresh_broker.bootstrap, unique_topic)
    messages = keyed_messages(ACKNOWLEDGED_COUNT)

    # Fails unless every message got a delivery callback without error.
    deliveries = produce_with_confluent(
        fresh_broker.bootstrap, unique_topic, messages, config={"acks": "all"}
    )
    assert len(deliveries) == ACKNOWLEDGED_COUNT
    assert fresh_broker.kill() == -signal.SIGKILL

    fresh_broker.restart()
    consumed = read_with_confluent(fresh_broker.bootstrap, unique_topic)

    verify_round_trip(messages, consumed, deliveries=deliveries)
