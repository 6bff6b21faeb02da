"""kafkajs consumers as group members of a real Strom broker, and the seed's own consumer.

Members run ``js/group_member.js`` (see group_scenario). kafkajs has neither static membership nor a
cooperative assignor, so those two scenarios do not apply. ``js/seed_consumer.js`` is the e-commerce
service's consumer exactly as the seed configures it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from group_scenario import (
    Member,
    MemberConfig,
    auto_commit_commits_while_consuming,
    broker_restart_keeps_group_and_offsets,
    members_closed,
    no_auto_commit_commits_nothing,
    reset_to_earliest_reads_everything,
    reset_to_latest_skips_old_records,
    restart_resumes_after_last_commit,
    split_then_survive_sigkill,
    strom_command,
    wait_for,
)
from scenario import create_topic_with_confluent

from strom.testing.process import StromProcess

JS_DIR = Path(__file__).parent / "js"
DRIVER_TIMEOUT_S = 120

# The seed's names and numbers.
SEED_TOPIC = "pay.completed"
SEED_GROUP = "notify-service"
SEED_PARTITIONS = 3
ROUND_ROBIN_ASSIGNER = "RoundRobinAssigner"


@pytest.fixture(scope="module", autouse=True)
def node_modules() -> None:
    """Install the pinned kafkajs packages on first use (node_modules is not committed)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run kafkajs")
    if not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, capture_output=True, timeout=300
        )


def spawn(config: MemberConfig) -> Member:
    return Member(config.client_id, ["node", "group_member.js", config.to_json()], cwd=JS_DIR)


def test_three_members_split_six_partitions_and_survive_a_sigkill(group_broker, unique_topic):
    split_then_survive_sigkill(spawn, group_broker.bootstrap, unique_topic)


def test_auto_offset_reset_earliest(group_broker, unique_topic):
    reset_to_earliest_reads_everything(spawn, group_broker.bootstrap, unique_topic)


def test_auto_offset_reset_latest(group_broker, unique_topic):
    reset_to_latest_skips_old_records(spawn, group_broker.bootstrap, unique_topic)


def test_auto_commit_on(group_broker, unique_topic):
    auto_commit_commits_while_consuming(spawn, group_broker.bootstrap, unique_topic)


def test_auto_commit_off(group_broker, unique_topic):
    no_auto_commit_commits_nothing(spawn, group_broker.bootstrap, unique_topic)


def test_restart_resumes_after_last_commit(group_broker, unique_topic):
    restart_resumes_after_last_commit(spawn, group_broker.bootstrap, unique_topic)


def test_broker_restart_keeps_groups_and_offsets(own_group_broker, unique_topic):
    broker_restart_keeps_group_and_offsets(spawn, own_group_broker, unique_topic)


# ---------------------------------------------------------------------------------------- the seed's consumer


def publish_orders(bootstrap: str, orders: list[dict[str, Any]]) -> None:
    """Publish as the seed's publisher does (client id ecommerce-server, one keyed JSON message per send)."""
    completed = subprocess.run(
        ["node", "driver.js", "publishOrders"],
        cwd=JS_DIR,
        input=json.dumps({"brokers": [bootstrap], "topic": SEED_TOPIC, "orders": orders}),
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT_S,
        env={**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"},
    )
    assert completed.returncode == 0, completed.stderr[-4000:]


def paid_orders(tag: str, count: int) -> list[dict[str, Any]]:
    return [
        {"orderId": f"{tag}-{index:03d}", "customerId": f"customer-{index % 5}", "totalPrice": 1000 + index}
        for index in range(count)
    ]


def handled_order_ids(consumer: Member) -> list[str]:
    return [event["order"]["orderId"] for event in consumer.events if event["event"] == "handled"]


def test_seed_notify_consumer_joins_with_round_robin_and_handles_new_orders(fresh_broker: StromProcess):
    """The seed's consumer, on a broker with default settings: it joins notify-service as leader with the
    round-robin assigner, owns pay.completed [0,1,2], skips what was published before it joined (it does not
    read from the beginning) and handles every order published afterwards."""
    bootstrap = fresh_broker.bootstrap
    create_topic_with_confluent(bootstrap, SEED_TOPIC, partitions=SEED_PARTITIONS)
    earlier = paid_orders("before-join", 6)
    publish_orders(bootstrap, earlier)

    consumer = Member(
        "notify-service", ["node", "seed_consumer.js", json.dumps({"brokers": [bootstrap]})], cwd=JS_DIR
    )
    with members_closed([consumer]):
        wait_for(
            lambda: any(event["event"] == "fetched" for event in consumer.events),
            "the seed's consumer to join and fetch",
            [consumer],
        )
        joins = [event for event in consumer.events if event["event"] == "joined"]
        assert len(joins) == 1, joins
        (joined,) = joins
        assert joined["groupId"] == SEED_GROUP
        assert joined["memberAssignment"] == {SEED_TOPIC: [0, 1, 2]}
        assert joined["groupProtocol"] == ROUND_ROBIN_ASSIGNER
        assert joined["isLeader"] is True and joined["leaderId"] == joined["memberId"]
        (group,) = json.loads(strom_command(bootstrap, "groups", "describe", SEED_GROUP, "--json").stdout)
        assert (group["state"], group["assignor"]) == ("Stable", ROUND_ROBIN_ASSIGNER)
        assert [(member["client_id"], member["assignment"]) for member in group["members"]] == [
            ("ecommerce-server", {SEED_TOPIC: [0, 1, 2]})
        ]

        later = paid_orders("after-join", 12)
        publish_orders(bootstrap, later)
        expected = sorted(order["orderId"] for order in later)
        wait_for(
            lambda: sorted(handled_order_ids(consumer)) == expected,
            "every new order to be handled",
            [consumer],
        )
        assert not {order["orderId"] for order in earlier} & set(handled_order_ids(consumer))
