"""Bad input to consumer groups against a real broker process: Kafka's error codes, and nothing else harmed.

Each test sends the group coordinator one kind of bad input (an unknown group, a stale generation, a wrong
member id, an oversized field, a member that goes silent, a crowd) and checks the exact answer. After every
test the `bystander_unharmed` fixture checks that the broker still runs and answers, and that the offsets a
bystander group committed at the start read back unchanged: bad input to one group must not touch another.

Error codes are written as Kafka's numbers, not taken from Strom's enum, so a wrong constant can't hide.
Request versions are pinned rather than negotiated, because several answers depend on the version (JoinGroup
v4 brought MEMBER_ID_REQUIRED, OffsetCommit v9 GROUP_ID_NOT_FOUND, LeaveGroup v3 batches).

Two brokers serve the tests. The main one keeps `strom serve`'s defaults except for a lower
``group.min.session.timeout.ms``, so that a silent member expires in about a second rather than Kafka's
minimum of six. The crowd gets a broker of its own with Kafka's default ``group.initial.rebalance.delay.ms``
(3 s; `strom serve` sets 0 on a single node), the setting that exists so that members arriving together
form one generation instead of a rebalance per arrival.
"""

from __future__ import annotations

import resource
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psutil
import pytest
from wire_client import RawConnection, assert_broker_answers, create_topic

from strom.protocol.messages import (
    describe_groups,
    find_coordinator,
    heartbeat,
    join_group,
    leave_group,
    list_groups,
    offset_commit,
    offset_fetch,
    sync_group,
)
from strom.testing.process import StromProcess

NONE = 0
UNKNOWN_SERVER_ERROR = -1
OFFSET_METADATA_TOO_LARGE = 12
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
GROUP_ID_NOT_FOUND = 69
MEMBER_ID_REQUIRED = 79

JOIN_GROUP_VERSION = 9
SYNC_GROUP_VERSION = 5
HEARTBEAT_VERSION = 4
LEAVE_GROUP_VERSION = 5
OFFSET_COMMIT_VERSION = 9
OFFSET_FETCH_VERSION = 8
DESCRIBE_GROUPS_VERSION = 5
FIND_COORDINATOR_VERSION = 4
LIST_GROUPS_VERSION = 4

#: The main broker's group.min.session.timeout.ms: low, so a silent member expires within the test.
MIN_SESSION_TIMEOUT_MS = 1000
#: Kafka's group.max.session.timeout.ms default, which the main broker keeps.
MAX_SESSION_TIMEOUT_MS = 1_800_000
#: Kafka's offset.metadata.max.bytes default, which the main broker keeps.
OFFSET_METADATA_MAX_BYTES = 4096
#: Kafka's group.initial.rebalance.delay.ms default, given to the crowd's broker.
INITIAL_REBALANCE_DELAY_MS = 3000

SESSION_TIMEOUT_MS = 30_000
REBALANCE_TIMEOUT_MS = 60_000
CONSUMER = "consumer"
RANGE = "range"
#: Twice a member's one-second session is enough to expire it; this much longer only bounds a broken run.
EXPIRY_DEADLINE_S = 30.0
HEARTBEAT_INTERVAL_S = 0.1
COORDINATOR_WAIT_S = 20.0

TOPIC = "ledger"
PARTITIONS = 3
BYSTANDER = "bystander"
LOG_TAIL_CHARS = 3000

JoinProtocol = join_group.JoinGroupRequest.JoinGroupRequestProtocol
Assignment = sync_group.SyncGroupRequest.SyncGroupRequestAssignment
LeavingMember = leave_group.LeaveGroupRequest.MemberIdentity
CommitTopic = offset_commit.OffsetCommitRequest.OffsetCommitRequestTopic
CommitPartition = offset_commit.OffsetCommitRequest.OffsetCommitRequestPartition
FetchGroup = offset_fetch.OffsetFetchRequest.OffsetFetchRequestGroup
FetchTopics = offset_fetch.OffsetFetchRequest.OffsetFetchRequestTopics

#: partition -> (offset, metadata), as committed and as fetched back.
Offsets = dict[int, tuple[int, str | None]]

BYSTANDER_OFFSETS: Offsets = {0: (17, "checkpoint-a"), 1: (4242, ""), 2: (0, "x" * OFFSET_METADATA_MAX_BYTES)}


# ---------------------------------------------------------------------- requests, one helper per API
def join_request(
    group_id: str,
    member_id: str = "",
    *,
    session_timeout_ms: int = SESSION_TIMEOUT_MS,
    protocol_type: str = CONSUMER,
    protocols: Sequence[tuple[str, bytes]] = ((RANGE, b"subscription"),),
) -> join_group.JoinGroupRequest:
    return join_group.JoinGroupRequest(
        group_id=group_id,
        session_timeout_ms=session_timeout_ms,
        rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
        member_id=member_id,
        protocol_type=protocol_type,
        protocols=[JoinProtocol(name, metadata) for name, metadata in protocols],
    )


def join(
    conn: RawConnection, request: join_group.JoinGroupRequest, version: int = JOIN_GROUP_VERSION
) -> join_group.JoinGroupResponse:
    response: join_group.JoinGroupResponse = conn.call(join_group.API_KEY, version, request)
    return response


def join_as_new_member(
    conn: RawConnection, request: join_group.JoinGroupRequest
) -> join_group.JoinGroupResponse:
    """KIP-394's two steps: MEMBER_ID_REQUIRED hands out an id, and joining again with it joins."""
    first = join(conn, request)
    assert first.error_code == MEMBER_ID_REQUIRED, f"JoinGroup without a member id: error {first.error_code}"
    assert first.member_id, "MEMBER_ID_REQUIRED came without a member id"
    request.member_id = first.member_id
    return join(conn, request)


def sync(
    conn: RawConnection,
    group_id: str,
    generation_id: int,
    member_id: str,
    assignments: dict[str, bytes] | None = None,
) -> sync_group.SyncGroupResponse:
    request = sync_group.SyncGroupRequest(
        group_id=group_id,
        generation_id=generation_id,
        member_id=member_id,
        protocol_type=CONSUMER,
        protocol_name=RANGE,
        assignments=[Assignment(m, a) for m, a in (assignments or {}).items()],
    )
    response: sync_group.SyncGroupResponse = conn.call(sync_group.API_KEY, SYNC_GROUP_VERSION, request)
    return response


def heartbeat_error(conn: RawConnection, group_id: str, generation_id: int, member_id: str) -> int:
    request = heartbeat.HeartbeatRequest(group_id=group_id, generation_id=generation_id, member_id=member_id)
    error: int = conn.call(heartbeat.API_KEY, HEARTBEAT_VERSION, request).error_code
    return error


def leave(conn: RawConnection, group_id: str, member_ids: Sequence[str]) -> leave_group.LeaveGroupResponse:
    request = leave_group.LeaveGroupRequest(group_id=group_id, members=[LeavingMember(m) for m in member_ids])
    response: leave_group.LeaveGroupResponse = conn.call(leave_group.API_KEY, LEAVE_GROUP_VERSION, request)
    return response


def commit(
    conn: RawConnection,
    group_id: str,
    offsets: Mapping[int, tuple[int, str | None]],
    *,
    generation_id: int = -1,
    member_id: str = "",
    version: int = OFFSET_COMMIT_VERSION,
) -> dict[int, int]:
    """OffsetCommit to the test topic; returns partition -> error code."""
    request = offset_commit.OffsetCommitRequest(
        group_id=group_id,
        generation_id_or_member_epoch=generation_id,
        member_id=member_id,
        topics=[
            CommitTopic(
                TOPIC,
                [
                    CommitPartition(p, offset, committed_metadata=meta)
                    for p, (offset, meta) in offsets.items()
                ],
            )
        ],
    )
    response = conn.call(offset_commit.API_KEY, version, request)
    (topic,) = response.topics
    assert topic.name == TOPIC
    return {p.partition_index: p.error_code for p in topic.partitions}


def fetch_offsets(
    conn: RawConnection, group_id: str, partitions: Sequence[int] = range(PARTITIONS)
) -> Offsets:
    """The group's committed offsets of the test topic (offset -1 where none)."""
    request = offset_fetch.OffsetFetchRequest(
        groups=[FetchGroup(group_id=group_id, topics=[FetchTopics(TOPIC, list(partitions))])]
    )
    response = conn.call(offset_fetch.API_KEY, OFFSET_FETCH_VERSION, request)
    (group,) = response.groups
    assert group.error_code == NONE, f"OffsetFetch for {group_id}: error {group.error_code}"
    (topic,) = group.topics
    assert all(p.error_code == NONE for p in topic.partitions), topic
    return {p.partition_index: (p.committed_offset, p.metadata) for p in topic.partitions}


def describe(conn: RawConnection, group_id: str) -> describe_groups.DescribeGroupsResponse.DescribedGroup:
    request = describe_groups.DescribeGroupsRequest(groups=[group_id])
    (group,) = conn.call(describe_groups.API_KEY, DESCRIBE_GROUPS_VERSION, request).groups
    assert group.error_code == NONE, f"DescribeGroups for {group_id}: error {group.error_code}"
    return group


@dataclass(frozen=True)
class Member:
    """A member of a Stable group, as it knows itself."""

    member_id: str
    generation_id: int


def form_group(conn: RawConnection, group_id: str) -> Member:
    """A one-member group, joined and synced: Stable, with `conn`'s member as its leader."""
    joined = join_as_new_member(conn, join_request(group_id))
    assert joined.error_code == NONE, f"JoinGroup with the id given: error {joined.error_code}"
    assert joined.leader == joined.member_id
    synced = sync(conn, group_id, joined.generation_id, joined.member_id, {joined.member_id: b"all of it"})
    assert synced.error_code == NONE, f"the leader's SyncGroup: error {synced.error_code}"
    return Member(joined.member_id, joined.generation_id)


def wait_for_group_coordinator(conn: RawConnection, group_id: str) -> None:
    """FindCoordinator until it names this broker (the first lookup creates __consumer_offsets), then until
    every partition of it is loaded (ListGroups answers COORDINATOR_LOAD_IN_PROGRESS until then)."""
    deadline = time.monotonic() + COORDINATOR_WAIT_S
    lookup = find_coordinator.FindCoordinatorRequest(key_type=0, coordinator_keys=[group_id])
    while True:
        (found,) = conn.call(find_coordinator.API_KEY, FIND_COORDINATOR_VERSION, lookup).coordinators
        listed = conn.call(list_groups.API_KEY, LIST_GROUPS_VERSION, list_groups.ListGroupsRequest())
        if found.error_code == NONE and listed.error_code == NONE:
            return
        assert time.monotonic() < deadline, (
            f"no group coordinator after {COORDINATOR_WAIT_S:g} s: FindCoordinator error "
            f"{found.error_code}, ListGroups error {listed.error_code}"
        )
        time.sleep(0.05)


# ---------------------------------------------------------------------- the main broker and its bystander
@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StromProcess]:
    overrides = {"group.min.session.timeout.ms": str(MIN_SESSION_TIMEOUT_MS)}
    process = StromProcess(tmp_path_factory.mktemp("group-bad-input") / "data", overrides)
    with process:
        with RawConnection(process.port) as conn:
            assert create_topic(conn, TOPIC, PARTITIONS).error_code == NONE
            wait_for_group_coordinator(conn, BYSTANDER)
        yield process
    assert process.returncode == 0, (
        f"the broker did not stop cleanly:\n{process.read_log()[-LOG_TAIL_CHARS:]}"
    )


@pytest.fixture(scope="module")
def bystander(broker: StromProcess) -> Offsets:
    """Offsets of a group no test touches, committed once (as `assign()` + commit does: generation -1)."""
    with RawConnection(broker.port) as conn:
        assert commit(conn, BYSTANDER, BYSTANDER_OFFSETS) == dict.fromkeys(BYSTANDER_OFFSETS, NONE)
        committed = fetch_offsets(conn, BYSTANDER)
    assert committed == BYSTANDER_OFFSETS
    return committed


@pytest.fixture(autouse=True)
def bystander_unharmed(broker: StromProcess, bystander: Offsets) -> Iterator[None]:
    if not broker.running:  # an earlier test crashed it: start again so only that test fails
        broker.restart()
    yield
    assert broker.running, (
        f"the broker exited with status {broker.returncode}:\n{broker.read_log()[-LOG_TAIL_CHARS:]}"
    )
    assert_broker_answers(broker.port)
    with RawConnection(broker.port) as conn:
        assert fetch_offsets(conn, BYSTANDER) == bystander, "another group's committed offsets changed"


@pytest.fixture
def conn(broker: StromProcess) -> Iterator[RawConnection]:
    with RawConnection(broker.port) as connection:
        yield connection


@pytest.fixture
def group_id(request: pytest.FixtureRequest) -> str:
    """A group of the test's own, named after it."""
    return f"group-{request.node.name}"


# ---------------------------------------------------------------------- groups that don't exist
def test_heartbeat_to_an_unknown_group_is_unknown_member_id(conn: RawConnection, group_id: str) -> None:
    assert heartbeat_error(conn, group_id, 1, "someone") == UNKNOWN_MEMBER_ID


def test_sync_group_to_an_unknown_group_is_unknown_member_id(conn: RawConnection, group_id: str) -> None:
    assert sync(conn, group_id, 1, "someone", {"someone": b"x"}).error_code == UNKNOWN_MEMBER_ID


@pytest.mark.parametrize(
    ("version", "error"), [(8, ILLEGAL_GENERATION), (9, GROUP_ID_NOT_FOUND)], ids=["v8", "v9"]
)
def test_offset_commit_with_a_generation_to_an_unknown_group_is_refused_and_stores_nothing(
    conn: RawConnection, group_id: str, version: int, error: int
) -> None:
    """Only a commit with generation -1 (from outside group management) may bring a group into being."""
    results = commit(conn, group_id, {0: (5, "")}, generation_id=1, member_id="someone", version=version)
    assert results == {0: error}
    assert fetch_offsets(conn, group_id, [0]) == {0: (-1, "")}


def test_join_group_with_a_member_id_to_an_unknown_group_is_unknown_member_id(
    conn: RawConnection, group_id: str
) -> None:
    assert join(conn, join_request(group_id, "made-up-member")).error_code == UNKNOWN_MEMBER_ID
    assert describe(conn, group_id).group_state == "Dead", "a refused JoinGroup left a group behind"


# ---------------------------------------------------------------------- joining
@pytest.mark.parametrize("version", [4, JOIN_GROUP_VERSION])
def test_join_group_without_a_member_id_from_v4_gets_one_and_joins_with_it(
    conn: RawConnection, group_id: str, version: int
) -> None:
    request = join_request(group_id)
    first = join(conn, request, version)
    assert (first.error_code, first.generation_id) == (MEMBER_ID_REQUIRED, -1)
    assert first.member_id.startswith("strom-system-test-"), "member ids start with the client id"
    assert describe(conn, group_id).members == [], "a member id handed out is not yet a member"

    request.member_id = first.member_id
    joined = join(conn, request, version)
    assert joined.error_code == NONE
    assert joined.member_id == joined.leader == first.member_id
    assert joined.generation_id == 1
    assert [(m.member_id, m.metadata) for m in joined.members] == [(first.member_id, b"subscription")]


def test_join_group_v3_without_a_member_id_joins_at_once(conn: RawConnection, group_id: str) -> None:
    joined = join(conn, join_request(group_id), version=3)
    assert joined.error_code == NONE
    assert joined.member_id and joined.leader == joined.member_id


def test_join_group_with_a_member_id_unknown_to_an_existing_group_is_unknown_member_id(
    conn: RawConnection, group_id: str
) -> None:
    member = form_group(conn, group_id)
    assert join(conn, join_request(group_id, "made-up-member")).error_code == UNKNOWN_MEMBER_ID
    assert heartbeat_error(conn, group_id, member.generation_id, member.member_id) == NONE


@pytest.mark.parametrize(
    "session_timeout_ms",
    [0, MIN_SESSION_TIMEOUT_MS - 1, MAX_SESSION_TIMEOUT_MS + 1, 2**31 - 1],
    ids=["zero", "below-min", "above-max", "int-max"],
)
def test_session_timeout_outside_the_brokers_bounds_is_invalid_session_timeout(
    conn: RawConnection, group_id: str, session_timeout_ms: int
) -> None:
    response = join(conn, join_request(group_id, session_timeout_ms=session_timeout_ms))
    assert response.error_code == INVALID_SESSION_TIMEOUT
    assert describe(conn, group_id).group_state == "Dead", "a refused JoinGroup left a group behind"


@pytest.mark.parametrize("session_timeout_ms", [MIN_SESSION_TIMEOUT_MS, MAX_SESSION_TIMEOUT_MS])
def test_session_timeout_at_the_brokers_bounds_is_accepted(
    conn: RawConnection, group_id: str, session_timeout_ms: int
) -> None:
    response = join(conn, join_request(group_id, session_timeout_ms=session_timeout_ms))
    assert response.error_code == MEMBER_ID_REQUIRED


@pytest.mark.parametrize(
    ("protocol_type", "protocols"),
    [("connect", [(RANGE, b"s")]), (CONSUMER, [("roundrobin", b"s")]), ("", [(RANGE, b"s")])],
    ids=["other-protocol-type", "no-common-assignor", "empty-protocol-type"],
)
def test_join_group_that_cannot_agree_with_the_members_is_inconsistent_group_protocol(
    conn: RawConnection, group_id: str, protocol_type: str, protocols: list[tuple[str, bytes]]
) -> None:
    member = form_group(conn, group_id)
    stranger = join(conn, join_request(group_id, protocol_type=protocol_type, protocols=protocols))
    assert stranger.error_code == INCONSISTENT_GROUP_PROTOCOL
    group = describe(conn, group_id)
    assert (group.group_state, group.protocol_type) == ("Stable", CONSUMER)
    assert [m.member_id for m in group.members] == [member.member_id]
    assert heartbeat_error(conn, group_id, member.generation_id, member.member_id) == NONE


@pytest.mark.parametrize(
    ("protocol_type", "protocols"), [("", [(RANGE, b"s")]), (CONSUMER, [])], ids=["no-type", "no-protocols"]
)
def test_first_member_without_a_protocol_type_or_protocols_is_inconsistent_group_protocol(
    conn: RawConnection, group_id: str, protocol_type: str, protocols: list[tuple[str, bytes]]
) -> None:
    """Kafka creates the group before it looks at the protocols, and keeps it, Empty, after refusing the
    member (until the periodic cleanup removes empty groups without offsets)."""
    response = join(conn, join_request(group_id, protocol_type=protocol_type, protocols=protocols))
    assert response.error_code == INCONSISTENT_GROUP_PROTOCOL
    group = describe(conn, group_id)
    assert (group.group_state, group.members) == ("Empty", [])


# ---------------------------------------------------------------------- fencing: stale generations, wrong ids
@pytest.mark.parametrize("generation_delta", [-1, 1], ids=["older", "newer"])
def test_heartbeat_and_sync_group_with_another_generation_are_illegal_generation(
    conn: RawConnection, group_id: str, generation_delta: int
) -> None:
    member = form_group(conn, group_id)
    other_generation = member.generation_id + generation_delta
    assert heartbeat_error(conn, group_id, other_generation, member.member_id) == ILLEGAL_GENERATION
    assert sync(conn, group_id, other_generation, member.member_id).error_code == ILLEGAL_GENERATION
    assert heartbeat_error(conn, group_id, member.generation_id, member.member_id) == NONE


def test_heartbeat_and_sync_group_with_a_wrong_member_id_are_unknown_member_id(
    conn: RawConnection, group_id: str
) -> None:
    member = form_group(conn, group_id)
    for wrong in ("", "made-up-member", member.member_id + "x"):
        assert heartbeat_error(conn, group_id, member.generation_id, wrong) == UNKNOWN_MEMBER_ID, wrong
        assert sync(conn, group_id, member.generation_id, wrong).error_code == UNKNOWN_MEMBER_ID, wrong
    assert heartbeat_error(conn, group_id, member.generation_id, member.member_id) == NONE


def test_offset_commit_with_a_stale_generation_or_wrong_member_is_fenced(
    conn: RawConnection, group_id: str
) -> None:
    member = form_group(conn, group_id)
    stale = commit(
        conn, group_id, {0: (9, "")}, generation_id=member.generation_id - 1, member_id=member.member_id
    )
    assert stale == {0: ILLEGAL_GENERATION}
    stranger = commit(conn, group_id, {0: (9, "")}, generation_id=member.generation_id, member_id="made-up")
    assert stranger == {0: UNKNOWN_MEMBER_ID}
    assert fetch_offsets(conn, group_id, [0]) == {0: (-1, "")}, "a fenced commit was stored"
    current = commit(
        conn, group_id, {0: (9, "")}, generation_id=member.generation_id, member_id=member.member_id
    )
    assert current == {0: NONE}
    assert fetch_offsets(conn, group_id, [0]) == {0: (9, "")}


# ---------------------------------------------------------------------- oversized input
def test_offset_commit_metadata_longer_than_offset_metadata_max_bytes_is_refused_per_partition(
    conn: RawConnection, group_id: str
) -> None:
    assert commit(conn, group_id, {0: (1, "before"), 1: (1, "before")}) == {0: NONE, 1: NONE}
    fits = "m" * OFFSET_METADATA_MAX_BYTES
    results = commit(conn, group_id, {0: (2, fits + "m"), 1: (2, fits), 2: (2, None)})
    assert results == {0: OFFSET_METADATA_TOO_LARGE, 1: NONE, 2: NONE}
    # The refused partition keeps its offset; the others of the same request were committed.
    assert fetch_offsets(conn, group_id) == {0: (1, "before"), 1: (2, fits), 2: (2, "")}


def test_offset_commit_metadata_length_counts_utf16_code_units_as_kafka_does(
    conn: RawConnection, group_id: str
) -> None:
    """Kafka compares Java's String.length(): a character outside the BMP counts twice."""
    emoji = "\N{GRINNING FACE}"
    too_long = emoji * (OFFSET_METADATA_MAX_BYTES // 2 + 1)  # 2049 characters, 4098 UTF-16 code units
    fits = emoji * (OFFSET_METADATA_MAX_BYTES // 2)
    assert commit(conn, group_id, {0: (3, too_long), 1: (3, fits)}) == {0: OFFSET_METADATA_TOO_LARGE, 1: NONE}
    assert fetch_offsets(conn, group_id, [0, 1]) == {0: (-1, ""), 1: (3, fits)}


def test_join_group_with_one_mebibyte_of_protocol_metadata_is_served_without_harm(
    broker: StromProcess, conn: RawConnection, group_id: str
) -> None:
    """1 MiB is far below socket.request.max.bytes, so Kafka takes the JoinGroup and echoes the metadata to
    the leader. The group record holding it would exceed __consumer_offsets' max.message.bytes (1 MiB + 12
    bytes), so the leader's SyncGroup cannot be stored: Kafka maps that append error (MESSAGE_TOO_LARGE) to
    UNKNOWN_SERVER_ERROR. The member can still leave, and the group is then Empty."""
    metadata = bytes(range(256)) * 4096
    rss_before = psutil.Process(broker.pid).memory_info().rss
    joined = join_as_new_member(conn, join_request(group_id, protocols=[(RANGE, metadata)]))
    assert joined.error_code == NONE
    assert [(m.member_id, m.metadata) for m in joined.members] == [(joined.member_id, metadata)]

    synced = sync(conn, group_id, joined.generation_id, joined.member_id, {joined.member_id: b"a"})
    assert synced.error_code == UNKNOWN_SERVER_ERROR
    (left,) = leave(conn, group_id, [joined.member_id]).members
    assert left.error_code == NONE
    group = describe(conn, group_id)
    assert (group.group_state, group.members) == ("Empty", [])
    # A few copies of the metadata in flight are fine; what must not happen is one kept per step.
    grown = psutil.Process(broker.pid).memory_info().rss - rss_before
    assert grown < 32 * len(metadata), f"the broker grew by {grown / 2**20:.0f} MiB for 1 MiB of metadata"


# ---------------------------------------------------------------------- a member that goes silent
def test_member_that_never_heartbeats_is_removed_after_its_session_timeout(
    broker: StromProcess, group_id: str
) -> None:
    """The silent member has the broker's minimum session timeout; the live one heartbeats until it learns of
    the rebalance (REBALANCE_IN_PROGRESS), rejoins, and is alone in the next generation."""
    with RawConnection(broker.port) as live, RawConnection(broker.port) as silent:
        first = form_group(live, group_id)
        # The silent member joins: its JoinGroup parks until the live member rejoins for the rebalance.
        silent_request = join_request(group_id, session_timeout_ms=MIN_SESSION_TIMEOUT_MS)
        first_try = join(silent, silent_request)
        assert first_try.error_code == MEMBER_ID_REQUIRED
        silent_request.member_id = first_try.member_id
        parked = silent.send_request(join_group.API_KEY, JOIN_GROUP_VERSION, silent_request)
        assert heartbeat_error(live, group_id, first.generation_id, first.member_id) == REBALANCE_IN_PROGRESS
        rejoined = join(live, join_request(group_id, first.member_id))
        joined = silent.receive(join_group.API_KEY, JOIN_GROUP_VERSION, parked)
        assert rejoined.error_code == joined.error_code == NONE
        generation = rejoined.generation_id
        assert joined.generation_id == generation == first.generation_id + 1
        assignment = {first.member_id: b"p0", joined.member_id: b"p1"}
        assert sync(live, group_id, generation, first.member_id, assignment).error_code == NONE
        assert sync(silent, group_id, generation, joined.member_id).assignment == b"p1"

        # From here the silent member says nothing.
        deadline = time.monotonic() + EXPIRY_DEADLINE_S
        while (error := heartbeat_error(live, group_id, generation, first.member_id)) == NONE:
            assert time.monotonic() < deadline, "the silent member was never removed"
            time.sleep(HEARTBEAT_INTERVAL_S)
        assert error == REBALANCE_IN_PROGRESS

        alone = join(live, join_request(group_id, first.member_id))
        assert alone.error_code == NONE
        assert alone.generation_id == generation + 1
        assert alone.leader == first.member_id
        assert [m.member_id for m in alone.members] == [first.member_id]
        assert heartbeat_error(silent, group_id, generation, joined.member_id) == UNKNOWN_MEMBER_ID
        group = describe(live, group_id)
        assert [m.member_id for m in group.members] == [first.member_id]


# ---------------------------------------------------------------------- a crowd joining at once
#: A thousand members joining one group at once: what a coordinator must take without harm.
CROWD_SIZE = 1000
#: File descriptors kept free for everything but the crowd's sockets, in this process and in the broker
#: (which holds about 170 once __consumer_offsets exists, most of them its partitions' files).
FD_HEADROOM = 512
CROWD_GROUP = "crowd"
STEADY_GROUP = "steady"
#: The crowd's JoinGroups park for at least one initial rebalance delay; this bounds a broken run.
CROWD_IO_TIMEOUT_S = 120.0
#: How often the other group commits while the crowd joins: often, as a consumer committing per batch would.
STEADY_COMMIT_INTERVAL_S = 0.02
#: What the group coordinator may hold per member while the crowd rebalances: the member (ids, client id,
#: host, a few bytes of metadata), its parked request and its share of the leader's response come to well
#: under 2 KiB; 16 KiB allows eight times that for Python's object overhead. (Measured: under 4 MiB for a
#: thousand members. The connections themselves are not counted: they are open before the measure starts.)
GROUP_BYTES_PER_MEMBER = 16 * 1024
#: All a member costs, its connection included. Strom's connection layer reads into a buffer of its own
#: per connection (RECV_BUFFER_BYTES, 256 KiB, in strom.server.connection), which dominates; twice that
#: bounds the whole. (Measured: about 265 MiB for a thousand members, nearly all of it those buffers.)
BYTES_PER_CONNECTED_MEMBER = 512 * 1024
#: Allocator and garbage-collector noise: RSS readings of the same work differ by a few MiB.
RSS_SLACK_BYTES = 32 * 1024 * 1024


def crowd_size() -> int:
    """CROWD_SIZE, or as many as the open-files limit allows (raised to the hard limit if need be)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CROWD_SIZE + FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))  # the broker, started later, inherits it
        soft = raised
    return CROWD_SIZE if soft == resource.RLIM_INFINITY else min(CROWD_SIZE, soft - FD_HEADROOM)


@dataclass
class CrowdMember:
    """One member of the crowd: joined on its own connection, its parked JoinGroup timed."""

    index: int
    response: join_group.JoinGroupResponse | None = None
    parked_at: float = 0.0
    answered_at: float = 0.0

    @property
    def metadata(self) -> bytes:
        return f"subscription of member {self.index}".encode()


def run_crowd_member(port: int, member: CrowdMember, connected: threading.Barrier) -> None:
    with RawConnection(port, timeout=CROWD_IO_TIMEOUT_S) as conn:
        conn.advertised_versions()  # as clients do first; the broker has then taken up the connection
        connected.wait(timeout=CROWD_IO_TIMEOUT_S)
        request = join_request(CROWD_GROUP, protocols=[(RANGE, member.metadata)])
        first = join(conn, request)
        assert first.error_code == MEMBER_ID_REQUIRED, f"member {member.index}: error {first.error_code}"
        request.member_id = first.member_id
        member.parked_at = time.monotonic()
        member.response = join(conn, request)
        member.answered_at = time.monotonic()


@dataclass
class SteadyTraffic:
    """Another group committing and fetching its offsets every few milliseconds, each round checked and
    timed."""

    port: int
    stop: threading.Event = field(default_factory=threading.Event)
    rounds: list[tuple[float, float]] = field(default_factory=list)
    failure: BaseException | None = None

    def run(self) -> None:
        try:
            with RawConnection(self.port) as conn:
                offset = 0
                while not self.stop.is_set():
                    offset += 1
                    started = time.monotonic()
                    committed = {p: (offset, f"round {offset}") for p in range(PARTITIONS)}
                    assert commit(conn, STEADY_GROUP, committed) == dict.fromkeys(committed, NONE)
                    assert fetch_offsets(conn, STEADY_GROUP) == committed
                    self.rounds.append((started, time.monotonic()))
                    self.stop.wait(STEADY_COMMIT_INTERVAL_S)
        except BaseException as exc:  # handed to the test's thread, which re-raises it
            self.failure = exc

    def rounds_within(self, start: float, end: float) -> int:
        return sum(1 for began, ended in self.rounds if began >= start and ended <= end)


@dataclass(frozen=True)
class CrowdBroker:
    process: StromProcess
    crowd_size: int


@pytest.fixture(scope="module")
def crowd_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrowdBroker]:
    size = crowd_size()  # before the broker starts, so that it inherits a raised limit
    overrides = {"group.initial.rebalance.delay.ms": str(INITIAL_REBALANCE_DELAY_MS)}
    process = StromProcess(tmp_path_factory.mktemp("group-crowd") / "data", overrides)
    with process:
        with RawConnection(process.port) as conn:
            assert create_topic(conn, TOPIC, PARTITIONS).error_code == NONE
            wait_for_group_coordinator(conn, CROWD_GROUP)
        yield CrowdBroker(process, size)
    assert process.returncode == 0, (
        f"the broker did not stop cleanly:\n{process.read_log()[-LOG_TAIL_CHARS:]}"
    )


def wait_for_connections_closed(broker_process: psutil.Process, at_most: int) -> None:
    """Until the broker holds at most `at_most` client connections (closing them is asynchronous)."""
    deadline = time.monotonic() + CROWD_IO_TIMEOUT_S
    while (held := len(broker_process.net_connections(kind="tcp"))) > at_most:
        assert time.monotonic() < deadline, f"the broker still holds {held} connections"
        time.sleep(0.05)


def join_crowd(broker: StromProcess, members: list[CrowdMember], steady: SteadyTraffic) -> tuple[int, int]:
    """Every member joins at once on its own connection while `steady` runs; returns the broker's RSS
    once all connections were open and its peak while the crowd joined."""
    broker_process = psutil.Process(broker.pid)
    connected = threading.Barrier(len(members) + 1)
    steady_thread = threading.Thread(target=steady.run, name="steady-traffic")
    steady_thread.start()
    try:
        with ThreadPoolExecutor(max_workers=len(members), thread_name_prefix="crowd") as pool:
            joins = [pool.submit(run_crowd_member, broker.port, m, connected) for m in members]
            connected.wait(timeout=CROWD_IO_TIMEOUT_S)
            rss_connected = rss_peak = broker_process.memory_info().rss
            while not all(f.done() for f in joins):
                rss_peak = max(rss_peak, broker_process.memory_info().rss)
                time.sleep(0.05)
            for f in joins:
                f.result()
    finally:
        steady.stop.set()
        steady_thread.join()
    if steady.failure is not None:
        raise steady.failure
    return rss_connected, rss_peak


def crowd_wave(broker: StromProcess, size: int) -> int:
    """`size` members join the crowd's group at once, are checked to form one generation with one leader
    while another group is served, then leave together; returns the broker's peak RSS meanwhile."""
    broker_process = psutil.Process(broker.pid)
    idle_connections = len(broker_process.net_connections(kind="tcp"))
    rss_at_start = broker_process.memory_info().rss
    members = [CrowdMember(i) for i in range(size)]
    steady = SteadyTraffic(broker.port)
    rss_connected, rss_peak = join_crowd(broker, members, steady)

    responses = [m.response for m in members if m.response is not None]
    assert len(responses) == size
    assert {r.error_code for r in responses} == {NONE}
    assert len({r.generation_id for r in responses}) == 1, "the crowd was split over several generations"
    leaders = [r for r in responses if r.leader == r.member_id]
    assert len(leaders) == 1, f"{len(leaders)} members were told they lead"
    (leader,) = leaders
    assert {r.leader for r in responses} == {leader.member_id}
    member_ids = [r.member_id for r in responses]
    assert len(set(member_ids)) == size, "a member id was handed out twice"
    assert {m.member_id: m.metadata for m in leader.members} == {
        m.response.member_id: m.metadata for m in members if m.response is not None
    }
    assert all(r.members == [] for r in responses if r is not leader), "a follower was sent the member list"

    # Every JoinGroup parked until the last had arrived, and meanwhile another group committed and fetched.
    last_parked = max(m.parked_at for m in members)
    first_answered = min(m.answered_at for m in members)
    assert last_parked < first_answered, "a member was answered before the crowd had all joined"
    assert steady.rounds_within(last_parked, first_answered) > 0, "no other group was served during the join"

    group_grew = rss_peak - rss_connected
    assert group_grew < size * GROUP_BYTES_PER_MEMBER + RSS_SLACK_BYTES, (
        f"the broker grew by {group_grew / 2**20:.0f} MiB while {size} connected members joined one group"
    )
    grew = rss_peak - rss_at_start
    assert grew < size * BYTES_PER_CONNECTED_MEMBER + RSS_SLACK_BYTES, (
        f"the broker grew by {grew / 2**20:.0f} MiB for {size} members, connections included"
    )

    with RawConnection(broker.port) as conn:
        assignment = dict.fromkeys(member_ids, b"")
        assert sync(conn, CROWD_GROUP, leader.generation_id, leader.member_id, assignment).error_code == NONE
        group = describe(conn, CROWD_GROUP)
        assert (group.group_state, len(group.members)) == ("Stable", size)

        left = leave(conn, CROWD_GROUP, member_ids)
        assert left.error_code == NONE
        assert sorted((m.member_id, m.error_code) for m in left.members) == sorted(
            (member_id, NONE) for member_id in member_ids
        )
        group = describe(conn, CROWD_GROUP)
        assert (group.group_state, group.members) == ("Empty", [])
        final_round = {p: (0, "after the crowd") for p in range(PARTITIONS)}
        assert commit(conn, STEADY_GROUP, final_round) == dict.fromkeys(final_round, NONE)
        assert fetch_offsets(conn, STEADY_GROUP) == final_round
    wait_for_connections_closed(broker_process, idle_connections)
    return rss_peak


def test_a_crowd_joining_at_once_forms_one_generation_while_other_groups_carry_on(
    crowd_broker: CrowdBroker,
) -> None:
    """CROWD_SIZE members (fewer, with a warning, if the open-files limit can't be raised enough) join
    one group on their own connections at once, each JoinGroup parked until the join phase completes; then
    they leave, and a second crowd does the same.

    Python's allocator need not give freed memory back to the system, so the broker's RSS after the first
    crowd says little; what shows that nothing of it was kept is that the second crowd fits in the same
    memory instead of adding as much again."""
    size, broker = crowd_broker.crowd_size, crowd_broker.process
    if size < 2:
        pytest.skip(f"the open-files limit leaves room for a crowd of {size}")
    if size < CROWD_SIZE:
        warnings.warn(f"a crowd of only {size}: the open-files limit allows no more", stacklevel=1)
    first_peak = crowd_wave(broker, size)
    second_peak = crowd_wave(broker, size)
    assert second_peak - first_peak < RSS_SLACK_BYTES, (
        f"the second crowd took {(second_peak - first_peak) / 2**20:.0f} MiB more than the first"
    )
