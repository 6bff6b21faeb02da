"""``strom groups`` without a cluster: argument parsing, reset plans, rendering, and the OffsetDelete exchange
against a scripted coordinator on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState

from strom.cli.errors import CliError
from strom.cli.groups import (
    GroupState,
    LogBounds,
    MemberState,
    OffsetDeleter,
    OffsetReset,
    PartitionProgress,
    ResetTarget,
    group_state_json,
    plan_offset_reset,
    render_group_state,
)
from strom.cli.main import build_parser
from strom.protocol.errors import ErrorCode
from strom.protocol.frames import encode_response_frame
from strom.protocol.headers import decode_request_header
from strom.protocol.messages import APIS, api_versions, find_coordinator, offset_delete

# ------------------------------------------------------------------------------------------------ arguments


def parse(*argv: str) -> Any:
    return build_parser("groups").parse_args(["groups", *argv])


def test_list_states_accept_kafka_names_in_any_case_and_commas() -> None:
    args = parse("list", "--state", "stable,Empty", "--state", "PREPARINGREBALANCE")
    assert set().union(*args.state) == {
        ConsumerGroupState.STABLE,
        ConsumerGroupState.EMPTY,
        ConsumerGroupState.PREPARING_REBALANCING,
    }


def test_unknown_state_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("list", "--state", "Sleeping")
    assert exit_info.value.code == 2
    assert "unknown group state 'Sleeping'" in capsys.readouterr().err


def test_reset_topics_take_optional_partition_lists() -> None:
    args = parse("reset-offsets", "g", "--topic", "orders", "--topic", "pay:2,0,2", "--to-earliest")
    assert args.topic == [("orders", None), ("pay", [0, 2])]
    assert args.execute is False


@pytest.mark.parametrize(
    "argv",
    [
        ["reset-offsets", "g", "--to-earliest"],  # no scope
        ["reset-offsets", "g", "--all-topics"],  # no target
        ["reset-offsets", "g", "--all-topics", "--topic", "t", "--to-latest"],
        ["reset-offsets", "g", "--all-topics", "--to-latest", "--to-earliest"],
        ["reset-offsets", "g", "--topic", "t:x", "--to-latest"],
        ["reset-offsets", "g", "--topic", "t:-1", "--to-latest"],
        ["reset-offsets", "g", "--all-topics", "--to-datetime", "yesterday"],
        ["reset-offsets", "g", "--all-topics", "--to-offset", "-1"],
        ["delete-offsets", "g"],
    ],
)
def test_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2


def test_shift_by_takes_negative_numbers_and_datetime_takes_iso() -> None:
    assert parse("reset-offsets", "g", "--all-topics", "--shift-by", "-3").shift_by == -3
    args = parse("reset-offsets", "g", "--all-topics", "--to-datetime", "2024-05-01T00:00:00Z")
    assert args.to_datetime == 1_714_521_600_000


# ----------------------------------------------------------------------------------------------- reset plans

PARTITIONS = [("t", 0), ("t", 1)]
BOUNDS = LogBounds(
    earliest={("t", 0): 10, ("t", 1): 0},
    latest={("t", 0): 50, ("t", 1): 5},
    committed={("t", 0): 20},
    at_time={("t", 0): 30, ("t", 1): None},
)


def test_earliest_and_latest_use_the_log_bounds() -> None:
    earliest, _ = plan_offset_reset(PARTITIONS, ResetTarget("earliest"), BOUNDS)
    latest, _ = plan_offset_reset(PARTITIONS, ResetTarget("latest"), BOUNDS)
    assert earliest == [OffsetReset("t", 0, 20, 10), OffsetReset("t", 1, None, 0)]
    assert [row.new for row in latest] == [50, 5]


def test_datetime_falls_back_to_the_log_end_where_every_record_is_older() -> None:
    plan, warnings = plan_offset_reset(PARTITIONS, ResetTarget("datetime", 123), BOUNDS)
    assert [row.new for row in plan] == [30, 5]
    assert len(warnings) == 1 and "t-1" in warnings[0]


def test_explicit_offsets_are_clamped_into_the_log() -> None:
    plan, warnings = plan_offset_reset(PARTITIONS, ResetTarget("offset", 7), BOUNDS)
    assert [row.new for row in plan] == [10, 5]
    assert len(warnings) == 2


def test_shift_moves_from_the_committed_offset_and_needs_one() -> None:
    plan, warnings = plan_offset_reset([("t", 0)], ResetTarget("shift", -5), BOUNDS)
    assert plan == [OffsetReset("t", 0, 20, 15)] and warnings == []
    beyond, _ = plan_offset_reset([("t", 0)], ResetTarget("shift", 100), BOUNDS)
    assert beyond[0].new == 50
    with pytest.raises(CliError, match="no committed offset"):
        plan_offset_reset(PARTITIONS, ResetTarget("shift", 1), BOUNDS)


# ----------------------------------------------------------------------------------------------- rendering

STATE = GroupState(
    group="notify-service",
    state="Stable",
    assignor="roundrobin",
    coordinator="1 (127.0.0.1:9092)",
    members=[MemberState("m-1", None, "ecommerce-server", "/127.0.0.1", [("pay", 0), ("pay", 1), ("x", 3)])],
    partitions=[
        PartitionProgress("pay", 0, committed=4, log_end=10, member_id="m-1"),
        PartitionProgress("pay", 1, committed=None, log_end=7, member_id="m-1"),
        PartitionProgress("x", 3, committed=2, log_end=None, member_id="m-1"),
        PartitionProgress("old", 0, committed=1, log_end=3, member_id=None),
    ],
)


def test_total_lag_counts_partitions_whose_lag_is_known() -> None:
    assert [progress.lag for progress in STATE.partitions] == [6, None, None, 2]
    assert STATE.total_lag == 8


def test_text_shows_state_members_and_lag() -> None:
    lines = render_group_state(STATE).splitlines()
    assert lines[0] == "Group: notify-service"
    assert lines[1] == "  State: Stable  Assignor: roundrobin  Coordinator: 1 (127.0.0.1:9092)  Members: 1"
    assert ["m-1", "-", "ecommerce-server", "/127.0.0.1", "pay:0,1;x:3"] in [line.split() for line in lines]
    assert ["pay", "0", "4", "10", "6", "m-1"] in [line.split() for line in lines]
    assert ["old", "0", "1", "3", "2", "-"] in [line.split() for line in lines]
    assert lines[-1] == "  Total lag: 8"


def test_json_is_a_complete_document() -> None:
    document = json.loads(json.dumps(group_state_json(STATE)))
    assert document["members"] == [
        {
            "member_id": "m-1",
            "instance_id": None,
            "client_id": "ecommerce-server",
            "host": "/127.0.0.1",
            "assignment": {"pay": [0, 1], "x": [3]},
        }
    ]
    assert document["partitions"][1] == {
        "topic": "pay",
        "partition": 1,
        "committed": None,
        "log_end": 7,
        "lag": None,
        "member_id": "m-1",
    }
    assert document["total_lag"] == 8


def test_an_empty_group_says_so() -> None:
    empty = GroupState("g", "Empty", "", None, [], [])
    assert "No partitions assigned or committed." in render_group_state(empty)


# ------------------------------------------------------------------------------- OffsetDelete on the wire

SIZE = struct.Struct(">i")
ACCEPT_POLL_S = 0.05


class ScriptedCoordinator:
    """A listener on 127.0.0.1 that is its own group coordinator: it answers ApiVersions (FindCoordinator
    up to v4, OffsetDelete v0) and FindCoordinator itself, and each OffsetDelete with the next of
    ``delete_replies``. It records every request it decodes."""

    def __init__(self, delete_replies: list[offset_delete.OffsetDeleteResponse]) -> None:
        self.requests: list[tuple[int, int, Any]] = []
        self._delete_replies = iter(delete_replies)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(ACCEPT_POLL_S)
        self.port = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(None)
                self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        reader = connection.makefile("rb")
        while header := reader.read(SIZE.size):
            body = memoryview(reader.read(SIZE.unpack(header)[0]))
            request_header, position = decode_request_header(body)
            key, version = request_header.api_key, request_header.api_version
            request, _ = APIS[key].module.decode_request(body, position, version)
            self.requests.append((key, version, request))
            reply = self._reply(key, request)
            chunks = encode_response_frame(key, version, request_header.correlation_id, reply)
            connection.sendall(b"".join(bytes(chunk) for chunk in chunks))

    def _reply(self, key: int, request: Any) -> Any:
        if key == 18:
            versions = [(10, 0, 4), (47, 0, 0)]
            return api_versions.ApiVersionsResponse(
                api_keys=[api_versions.ApiVersionsResponse.ApiVersion(*entry) for entry in versions]
            )
        if key == 10:
            found = find_coordinator.FindCoordinatorResponse.Coordinator(
                key=request.coordinator_keys[0], node_id=1, host="127.0.0.1", port=self.port
            )
            return find_coordinator.FindCoordinatorResponse(coordinators=[found])
        return next(self._delete_replies)


def delete_response(top: ErrorCode, partitions: dict[int, ErrorCode]) -> offset_delete.OffsetDeleteResponse:
    response = offset_delete.OffsetDeleteResponse
    return response(
        error_code=top,
        topics=[
            response.OffsetDeleteResponseTopic(
                name="orders",
                partitions=[
                    response.OffsetDeleteResponsePartition(p, code) for p, code in partitions.items()
                ],
            )
        ],
    )


@pytest.fixture
def scripted() -> Iterator[Callable[[list[offset_delete.OffsetDeleteResponse]], ScriptedCoordinator]]:
    coordinators: list[ScriptedCoordinator] = []

    def start(delete_replies: list[offset_delete.OffsetDeleteResponse]) -> ScriptedCoordinator:
        coordinators.append(ScriptedCoordinator(delete_replies))
        return coordinators[-1]

    yield start
    for coordinator in coordinators:
        coordinator.close()


def test_offset_delete_reports_each_partition(scripted: Any) -> None:
    broker = scripted(
        [delete_response(ErrorCode.NONE, {0: ErrorCode.NONE, 1: ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC})]
    )
    outcome = OffsetDeleter([("127.0.0.1", broker.port)], timeout=10).delete("g", "orders", [0, 1])
    assert outcome == {0: ErrorCode.NONE, 1: ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC}
    keys = [(key, version) for key, version, _ in broker.requests]
    assert keys == [(18, 0), (10, 4), (18, 0), (47, 0)]
    find = broker.requests[1][2]
    assert (find.key_type, find.coordinator_keys) == (0, ["g"])
    sent = broker.requests[3][2]
    assert sent.group_id == "g"
    assert [(topic.name, [p.partition_index for p in topic.partitions]) for topic in sent.topics] == [
        ("orders", [0, 1])
    ]


def test_offset_delete_retries_a_loading_coordinator(scripted: Any) -> None:
    broker = scripted(
        [
            delete_response(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, {}),
            delete_response(ErrorCode.NONE, {0: ErrorCode.NONE}),
        ]
    )
    outcome = OffsetDeleter([("127.0.0.1", broker.port)], timeout=10).delete("g", "orders", [0])
    assert outcome == {0: ErrorCode.NONE}
    assert [key for key, _, _ in broker.requests].count(47) == 2


def test_offset_delete_of_an_unknown_group_is_an_error(scripted: Any) -> None:
    broker = scripted([delete_response(ErrorCode.GROUP_ID_NOT_FOUND, {})])
    with pytest.raises(CliError, match="GROUP_ID_NOT_FOUND"):
        OffsetDeleter([("127.0.0.1", broker.port)], timeout=10).delete("g", "orders", [0])


def test_offset_delete_asks_the_next_broker_when_one_is_down(scripted: Any) -> None:
    coordinator = scripted([delete_response(ErrorCode.NONE, {0: ErrorCode.NONE})])
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        down = bound_not_listening.getsockname()
        deleter = OffsetDeleter([down, ("127.0.0.1", coordinator.port)], timeout=10)
        assert deleter.delete("g", "orders", [0]) == {0: ErrorCode.NONE}
