"""Bad input against a real broker process: every refusal is the one Kafka gives, and nothing breaks.

Each test sends one kind of bad input and checks the exact answer: a Kafka error code, or that the broker
closed the connection (what Kafka does when it cannot even parse a request). After every test the
`broker_survived` fixture checks that the process is still running, that a new connection gets ApiVersions
and Metadata answered, and that the data stored at the start reads back with the same offsets and bytes.

Error codes are written as Kafka's numbers, not taken from Strom's enum, so a wrong constant can't hide.
"""

from __future__ import annotations

import random
import struct
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest
from wire_client import (
    HEADER_START,
    SIZE_PREFIX,
    PartitionContent,
    RawConnection,
    api_versions_request,
    assert_broker_answers,
    assert_still_holds,
    create_topic,
    decode_response,
    encode_request,
    fetch_request,
    frame,
    metadata_request,
    produce_batch,
    produce_request,
    raw_header,
    read_partition,
    request_class,
    sample_batches,
)

from strom.protocol import messages
from strom.protocol.messages import api_versions, create_topics, fetch, list_offsets, metadata, produce
from strom.protocol.record_batch import BATCH_HEADER_SIZE, Record, build_batch
from strom.testing.process import StromProcess

NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
INVALID_TOPIC_EXCEPTION = 17
INVALID_REQUIRED_ACKS = 21
UNSUPPORTED_VERSION = 35
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40
INVALID_REQUEST = 42
POLICY_VIOLATION = 44
UNKNOWN_TOPIC_ID = 100

#: Kafka's socket.request.max.bytes default (100 MiB), which the broker under test keeps.
SOCKET_REQUEST_MAX_BYTES = 104_857_600
#: Kafka's message.max.bytes default: 1 MiB plus the 12 bytes of log overhead.
MESSAGE_MAX_BYTES = 1_048_588
#: Kafka's cap on partitions created by one CreateTopics request (QuorumController's records-per-operation).
MAX_PARTITIONS_PER_CREATE = 10_000

PRECIOUS = "precious"
PRECIOUS_PARTITIONS = 2
LOG_TAIL_CHARS = 3000


# ---------------------------------------------------------------------- the broker and the data it must keep
@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StromProcess]:
    process = StromProcess(tmp_path_factory.mktemp("bad-input") / "data")
    with process:
        yield process
    assert process.returncode == 0, (
        f"the broker did not stop cleanly:\n{process.read_log()[-LOG_TAIL_CHARS:]}"
    )


def precious_batches(partition: int) -> list[bytes]:
    """Every compression type, then a batch big enough that reading it back spans several socket reads."""
    rng = random.Random(partition)
    big = build_batch([Record(offset_delta=i, value=rng.randbytes(60_000)) for i in range(4)])
    return [*sample_batches(partition), big]


@pytest.fixture(scope="module")
def stored(broker: StromProcess) -> list[PartitionContent]:
    """The data every test must leave intact, as read back right after it was written."""
    with RawConnection(broker.port) as conn:
        assert create_topic(conn, PRECIOUS, PRECIOUS_PARTITIONS).error_code == NONE
        for partition in range(PRECIOUS_PARTITIONS):
            for batch in precious_batches(partition):
                assert produce_batch(conn, PRECIOUS, partition, batch).error_code == NONE
        return [read_partition(conn, PRECIOUS, p) for p in range(PRECIOUS_PARTITIONS)]


@pytest.fixture(autouse=True)
def broker_survived(broker: StromProcess, stored: list[PartitionContent]) -> Iterator[None]:
    if not broker.running:  # an earlier test crashed it: start again so only that test fails
        broker.restart()
    yield
    assert broker.running, (
        f"the broker exited with status {broker.returncode}:\n{broker.read_log()[-LOG_TAIL_CHARS:]}"
    )
    assert_broker_answers(broker.port)
    with RawConnection(broker.port) as conn:
        assert_still_holds(conn, stored)


@pytest.fixture
def conn(broker: StromProcess) -> Iterator[RawConnection]:
    with RawConnection(broker.port) as connection:
        yield connection


def high_watermark(conn: RawConnection, topic: str, partition: int) -> int:
    return read_partition(conn, topic, partition).high_watermark


def small_batch(value: bytes = b"v") -> bytes:
    return build_batch([Record(offset_delta=0, key=b"k", value=value)])


def with_version(request_frame: bytes, version: int) -> bytes:
    """The same frame with another api_version in its header (the codec refuses to encode such frames)."""
    api_key, _, correlation_id = HEADER_START.unpack_from(request_frame, 4)
    return request_frame[:4] + HEADER_START.pack(api_key, version, correlation_id) + request_frame[12:]


# ---------------------------------------------------------------------- framing
@pytest.mark.parametrize("size", [-1, -(2**31)])
def test_negative_size_prefix_closes_the_connection(conn: RawConnection, size: int) -> None:
    conn.send(SIZE_PREFIX.pack(size) + b"\x00" * 16)
    assert conn.wait_closed() == b""


@pytest.mark.parametrize("size", [SOCKET_REQUEST_MAX_BYTES + 1, 2**31 - 1])
def test_size_prefix_above_socket_request_max_bytes_closes_without_waiting_for_the_body(
    conn: RawConnection, size: int
) -> None:
    conn.send(SIZE_PREFIX.pack(size) + b"\x00" * 16)
    assert conn.wait_closed() == b""


@pytest.mark.parametrize("kept", [0, 1, 3, 7, 12, -1], ids=lambda k: f"kept-{k}")
def test_truncated_request_with_a_consistent_size_prefix_closes_the_connection(
    conn: RawConnection, kept: int
) -> None:
    """A frame whose payload is a valid request cut short: the header or body can't be read."""
    whole = encode_request(
        metadata.API_KEY, conn.version_for(metadata.API_KEY), 7, metadata_request([PRECIOUS])
    )
    conn.send(frame(whole[4:][:kept]))
    assert conn.wait_closed() == b""


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_leaving_in_the_middle_of_a_produce_appends_nothing(broker: StromProcess, how: str) -> None:
    with RawConnection(broker.port) as reader:
        before = high_watermark(reader, PRECIOUS, 0)
        request = encode_request(
            produce.API_KEY,
            reader.version_for(produce.API_KEY),
            1,
            produce_request(PRECIOUS, 0, small_batch(b"half-sent")),
        )
        with RawConnection(broker.port) as leaver:
            leaver.send(request[: len(request) // 2])
            if how == "reset":
                leaver.abort()
        # The broker must have dropped the half frame: a request on another connection is answered, and
        # nothing was appended.
        assert reader.call(api_versions.API_KEY, 3, api_versions_request()).error_code == NONE
        assert high_watermark(reader, PRECIOUS, 0) == before


# ---------------------------------------------------------------------- API keys and versions
@pytest.mark.parametrize("api_key", [32767, -1, 1000])
def test_unknown_api_key_closes_the_connection(conn: RawConnection, api_key: int) -> None:
    conn.send(frame(raw_header(api_key, 0, 1) + b"\x00" * 8))
    assert conn.wait_closed() == b""


def test_kafka_api_the_broker_does_not_advertise_closes_the_connection(conn: RawConnection) -> None:
    advertised = conn.advertised_versions()
    api_key = next(key for key in sorted(messages.APIS) if key not in advertised)
    spec = messages.APIS[api_key]
    conn.send(encode_request(api_key, spec.min_version, 1, request_class(api_key)()))
    assert conn.wait_closed() == b""


@pytest.mark.parametrize(
    "api_key", [produce.API_KEY, fetch.API_KEY, list_offsets.API_KEY, metadata.API_KEY, create_topics.API_KEY]
)
@pytest.mark.parametrize("side", ["below", "above"])
def test_unsupported_version_closes_the_connection(conn: RawConnection, api_key: int, side: str) -> None:
    low, high = conn.advertised_versions()[api_key]
    request = request_class(api_key)()
    if side == "below":
        if low == 0:
            pytest.skip(f"API {api_key} is served from v0")
        conn.send(encode_request(api_key, low - 1, 1, request))
    else:
        # Encoded at the newest version, then relabelled one past it: the codec won't encode unknown versions.
        conn.send(with_version(encode_request(api_key, high, 1, request), high + 1))
    assert conn.wait_closed() == b""


@pytest.mark.parametrize("version", ["next", 32767])
def test_api_versions_of_a_too_new_version_gets_a_v0_unsupported_version_answer(
    conn: RawConnection, version: int | str
) -> None:
    """KIP-511: the broker answers in v0 with UNSUPPORTED_VERSION and its ranges, and keeps the connection."""
    advertised = conn.advertised_versions()
    newest = advertised[api_versions.API_KEY][1]
    asked = newest + 1 if version == "next" else int(version)
    conn.send(with_version(encode_request(api_versions.API_KEY, newest, 4242, api_versions_request()), asked))

    correlation_id, response = decode_response(api_versions.API_KEY, 0, conn.read_frame())

    assert correlation_id == 4242
    assert response.error_code == UNSUPPORTED_VERSION
    assert {k.api_key: (k.min_version, k.max_version) for k in response.api_keys} == advertised
    assert conn.call(api_versions.API_KEY, newest, api_versions_request()).error_code == NONE


def flexible_header(api_key: int, version: int) -> bytes:
    return raw_header(api_key, version, 1) + b"\x00"  # request header v2: no tagged fields


UNDECODABLE_BODIES = {
    "metadata-empty-body": (metadata.API_KEY, 12, True, b""),
    "metadata-topic-array-of-2-billion": (metadata.API_KEY, 12, True, b"\xff\xff\xff\xff\x07"),
    "produce-transactional-id-past-the-end": (produce.API_KEY, 9, True, b"\x10abc"),
    "create-topics-null-topic-name": (create_topics.API_KEY, 7, True, b"\x02\x00"),
    "produce-null-topic-array": (produce.API_KEY, 8, False, struct.pack(">hhii", -1, 1, 1000, -1)),
    "fetch-topic-array-of-2-billion": (
        fetch.API_KEY,
        4,
        False,
        struct.pack(">iiiibi", -1, 0, 0, 1000, 0, 0x7FFFFFFF) + b"\x00" * 8,
    ),
}


@pytest.mark.parametrize("case", UNDECODABLE_BODIES, ids=str)
def test_body_that_does_not_decode_closes_the_connection(conn: RawConnection, case: str) -> None:
    api_key, version, flexible, body = UNDECODABLE_BODIES[case]
    low, high = conn.advertised_versions()[api_key]
    assert low <= version <= high, f"the case needs {case} v{version}, the broker serves v{low}-{high}"
    header = flexible_header(api_key, version) if flexible else raw_header(api_key, version, 1)
    conn.send(frame(header + body))
    assert conn.wait_closed() == b""


# ---------------------------------------------------------------------- Produce
def test_record_batch_with_a_bad_crc_is_refused_as_corrupt(conn: RawConnection) -> None:
    before = high_watermark(conn, PRECIOUS, 0)
    for position in (BATCH_HEADER_SIZE + 2, 17, 21):  # a record byte, the CRC itself, the attributes
        batch = bytearray(small_batch(b"will be corrupted"))
        batch[position] ^= 0x01
        assert produce_batch(conn, PRECIOUS, 0, bytes(batch)).error_code == CORRUPT_MESSAGE, position
    assert high_watermark(conn, PRECIOUS, 0) == before


def test_batch_larger_than_the_topic_max_message_bytes_is_refused(conn: RawConnection) -> None:
    result = create_topic(conn, "small-messages", configs={"max.message.bytes": "2048"})
    assert result.error_code == NONE
    fits = small_batch(b"x" * 1000)
    too_big = build_batch([Record(offset_delta=0, value=random.Random(1).randbytes(4000))])

    assert produce_batch(conn, "small-messages", 0, too_big).error_code == MESSAGE_TOO_LARGE
    assert high_watermark(conn, "small-messages", 0) == 0
    assert produce_batch(conn, "small-messages", 0, fits).error_code == NONE


def test_batch_larger_than_message_max_bytes_is_refused(conn: RawConnection) -> None:
    too_big = build_batch([Record(offset_delta=0, value=random.Random(2).randbytes(MESSAGE_MAX_BYTES))])
    before = high_watermark(conn, PRECIOUS, 1)
    assert produce_batch(conn, PRECIOUS, 1, too_big).error_code == MESSAGE_TOO_LARGE
    assert high_watermark(conn, PRECIOUS, 1) == before


@pytest.mark.parametrize(
    "topic,partition", [("no-such-topic", 0), (PRECIOUS, PRECIOUS_PARTITIONS), (PRECIOUS, -1)]
)
def test_produce_to_an_unknown_topic_or_partition_is_refused(
    conn: RawConnection, topic: str, partition: int
) -> None:
    assert produce_batch(conn, topic, partition, small_batch()).error_code == UNKNOWN_TOPIC_OR_PARTITION
    # Produce never creates topics, whatever auto.create.topics.enable says (only Metadata does).
    response = conn.call(metadata.API_KEY, conn.version_for(metadata.API_KEY), metadata_request([topic]))
    (described,) = response.topics
    assert described.error_code == (UNKNOWN_TOPIC_OR_PARTITION if topic != PRECIOUS else NONE)


@pytest.mark.parametrize("acks", [2, -2, 32767, -32768])
def test_produce_with_acks_outside_0_1_minus_1_is_refused(conn: RawConnection, acks: int) -> None:
    before = high_watermark(conn, PRECIOUS, 0)
    assert produce_batch(conn, PRECIOUS, 0, small_batch(), acks=acks).error_code == INVALID_REQUIRED_ACKS
    assert high_watermark(conn, PRECIOUS, 0) == before


@pytest.mark.parametrize("bad", ["unknown-topic", "bad-crc"])
def test_failed_produce_with_acks_0_closes_the_connection(
    broker: StromProcess, conn: RawConnection, bad: str
) -> None:
    if bad == "unknown-topic":
        topic, batch = "no-such-topic", small_batch()
    else:
        corrupt = bytearray(small_batch())
        corrupt[-1] ^= 0xFF
        topic, batch = PRECIOUS, bytes(corrupt)
    before = high_watermark(conn, PRECIOUS, 0)
    conn.send_request(
        produce.API_KEY, conn.version_for(produce.API_KEY), produce_request(topic, 0, batch, acks=0)
    )
    assert conn.wait_closed() == b""
    with RawConnection(broker.port) as again:
        assert high_watermark(again, PRECIOUS, 0) == before


def test_successful_produce_with_acks_0_is_not_answered(conn: RawConnection) -> None:
    """The control case: acks=0 gets no response, and the next request's response comes next."""
    result = create_topic(conn, "fire-and-forget")
    assert result.error_code == NONE
    conn.send_request(
        produce.API_KEY,
        conn.version_for(produce.API_KEY),
        produce_request("fire-and-forget", 0, small_batch(), acks=0),
    )
    correlation_id = conn.send_request(api_versions.API_KEY, 3, api_versions_request())
    assert conn.receive(api_versions.API_KEY, 3, correlation_id).error_code == NONE
    assert high_watermark(conn, "fire-and-forget", 0) == 1


# ---------------------------------------------------------------------- Metadata
def precious_topic_id(conn: RawConnection) -> uuid.UUID:
    response = conn.call(metadata.API_KEY, 12, metadata_request([PRECIOUS]))
    (described,) = response.topics
    topic_id: uuid.UUID = described.topic_id
    return topic_id


@pytest.mark.parametrize("version", [10, 11])
@pytest.mark.parametrize("by", ["name-and-id", "known-id-only", "unknown-id-only"])
def test_metadata_before_v12_naming_topics_by_id_is_an_invalid_request(
    conn: RawConnection, version: int, by: str
) -> None:
    """Kafka reads topic ids in Metadata from v12 on; v10-v11 requests carrying one get INVALID_REQUEST on
    every topic (with "" for a null name, which these versions can't send back)."""
    topic_cls = metadata.MetadataRequest.MetadataRequestTopic
    topic = {
        "name-and-id": topic_cls(name=PRECIOUS, topic_id=precious_topic_id(conn)),
        "known-id-only": topic_cls(name=None, topic_id=precious_topic_id(conn)),
        "unknown-id-only": topic_cls(name=None, topic_id=uuid.UUID(int=12345)),
    }[by]
    request = metadata.MetadataRequest(topics=[topic], allow_auto_topic_creation=False)

    response = conn.call(metadata.API_KEY, version, request)

    assert [(t.name, t.error_code) for t in response.topics] == [(topic.name or "", INVALID_REQUEST)]


def test_metadata_v12_for_an_unknown_topic_id_is_unknown_topic_id(conn: RawConnection) -> None:
    topic = metadata.MetadataRequest.MetadataRequestTopic(name=None, topic_id=uuid.UUID(int=12345))
    request = metadata.MetadataRequest(topics=[topic], allow_auto_topic_creation=False)

    response = conn.call(metadata.API_KEY, 12, request)

    assert [(t.name, t.error_code) for t in response.topics] == [(None, UNKNOWN_TOPIC_ID)]


# ---------------------------------------------------------------------- CreateTopics
@pytest.mark.parametrize(
    "name", ["", ".", "..", "x" * 250, "has space", "slash/name", "star*", "ümlaut", "tab\tname"], ids=repr
)
def test_invalid_topic_name_is_refused(conn: RawConnection, name: str) -> None:
    assert create_topic(conn, name).error_code == INVALID_TOPIC_EXCEPTION


def test_topic_name_colliding_on_dot_and_underscore_is_refused(conn: RawConnection) -> None:
    """Metric names would collide: Kafka refuses 'a.b' when 'a_b' exists."""
    assert create_topic(conn, "collide_me").error_code == NONE
    assert create_topic(conn, "collide.me").error_code == INVALID_TOPIC_EXCEPTION


def test_longest_legal_topic_name_is_accepted(conn: RawConnection) -> None:
    assert create_topic(conn, "n" * 249).error_code == NONE


@pytest.mark.parametrize("partitions", [0, -2, -(2**31)])
def test_non_positive_partition_count_is_refused(conn: RawConnection, partitions: int) -> None:
    assert create_topic(conn, f"partitions{partitions}", partitions).error_code == INVALID_PARTITIONS


def test_partition_count_minus_1_means_the_broker_default(conn: RawConnection) -> None:
    """KIP-464: -1 asks for num.partitions (1 by default); it is not an error."""
    assert create_topic(conn, "default-partitions", -1).error_code == NONE
    response = conn.call(
        metadata.API_KEY, conn.version_for(metadata.API_KEY), metadata_request(["default-partitions"])
    )
    (described,) = response.topics
    assert len(described.partitions) == 1


def test_too_many_partitions_in_one_request_is_a_policy_violation(conn: RawConnection) -> None:
    result = create_topic(conn, "too-many-partitions", MAX_PARTITIONS_PER_CREATE + 1, validate_only=True)
    assert result.error_code == POLICY_VIOLATION


@pytest.mark.parametrize("replication_factor", [0, -2, 2])
def test_impossible_replication_factor_is_refused(conn: RawConnection, replication_factor: int) -> None:
    result = create_topic(conn, f"rf{replication_factor}", replication_factor=replication_factor)
    assert result.error_code == INVALID_REPLICATION_FACTOR


@pytest.mark.parametrize(
    "configs",
    [
        {"no.such.config": "1"},
        {"retention.ms": "soon"},
        {"cleanup.policy": "bogus"},
        {"compression.type": "brotli"},
        {"min.insync.replicas": "0"},
        {"max.message.bytes": "-5"},
    ],
    ids=lambda c: "=".join(*c.items()),
)
def test_invalid_topic_config_is_refused(conn: RawConnection, configs: dict[str, str]) -> None:
    name = "bad-config-" + next(iter(configs)).replace(".", "-")
    assert create_topic(conn, name, configs=configs).error_code == INVALID_CONFIG
    response = conn.call(metadata.API_KEY, conn.version_for(metadata.API_KEY), metadata_request([name]))
    (described,) = response.topics
    assert described.error_code == UNKNOWN_TOPIC_OR_PARTITION, "a refused topic must not exist"


# ---------------------------------------------------------------------- awkward clients
def test_slow_client_sending_a_request_byte_by_byte_is_answered(broker: StromProcess) -> None:
    with RawConnection(broker.port) as slow, RawConnection(broker.port) as other:
        assert create_topic(other, "slow").error_code == NONE
        request = encode_request(
            produce.API_KEY,
            other.version_for(produce.API_KEY),
            99,
            produce_request("slow", 0, small_batch(b"one byte at a time")),
        )
        for i, byte in enumerate(request):
            slow.send(bytes([byte]))
            if i % 32 == 0:  # the other client is served while a frame is half received
                assert other.call(api_versions.API_KEY, 3, api_versions_request()).error_code == NONE
            time.sleep(0.001)
        response = slow.receive(produce.API_KEY, other.version_for(produce.API_KEY), 99)
        (topic,) = response.responses
        (partition,) = topic.partition_responses
        assert (partition.error_code, partition.base_offset) == (NONE, 0)
        assert high_watermark(other, "slow", 0) == 1


def test_client_that_never_reads_does_not_hold_up_other_clients(broker: StromProcess) -> None:
    """Pipelined Fetches whose responses (about 400 MB in all) are never read, while others are served."""
    chunk_values = [random.Random(i).randbytes(500_000) for i in range(4)]
    with RawConnection(broker.port) as setup:
        assert create_topic(setup, "bulk").error_code == NONE
        for value in chunk_values:
            assert (
                produce_batch(setup, "bulk", 0, build_batch([Record(offset_delta=0, value=value)])).error_code
                == 0
            )
        bulk = read_partition(setup, "bulk", 0)
        fetch_version = setup.version_for(fetch.API_KEY, 12)
    broker_memory = psutil.Process(broker.pid)
    rss_before = broker_memory.memory_info().rss

    hog = RawConnection(broker.port)
    try:
        request = fetch_request("bulk", 0, 0)
        pipelined = b"".join(encode_request(fetch.API_KEY, fetch_version, i, request) for i in range(200))
        hog.send(pipelined)
        for _ in range(5):
            assert_broker_answers(broker.port)
            with RawConnection(broker.port) as other:
                assert read_partition(other, "bulk", 0) == bulk
        rss_growth = broker_memory.memory_info().rss - rss_before
        assert rss_growth < 256 * 1024 * 1024, f"the broker grew by {rss_growth} bytes for an idle reader"
    finally:
        hog.abort()


def test_200_concurrent_connections_each_get_api_versions_and_metadata(broker: StromProcess) -> None:
    connections = [RawConnection(broker.port) for _ in range(200)]
    try:
        pending = [(c, c.send_request(api_versions.API_KEY, 3, api_versions_request())) for c in connections]
        for c, correlation_id in pending:
            assert c.receive(api_versions.API_KEY, 3, correlation_id).error_code == NONE
        metadata_version = connections[0].version_for(metadata.API_KEY)
        pending = [
            (c, c.send_request(metadata.API_KEY, metadata_version, metadata_request())) for c in connections
        ]
        for c, correlation_id in pending:
            response = c.receive(metadata.API_KEY, metadata_version, correlation_id)
            assert PRECIOUS in {t.name for t in response.topics}
    finally:
        for c in connections:
            c.close()
