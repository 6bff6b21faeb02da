"""The system tests' raw Kafka-protocol client: it sends exact bytes and reports exactly what came back.

Real clients hide a closed connection behind retries and refuse to send malformed requests; these tests need
the opposite. `RawConnection` is Strom's shared client connection (`strom.protocol.client`) in the tests'
words: it speaks through the codec when a request is well formed and sends any bytes at all when it is not,
and `wait_closed` tells "the broker hung up" apart from "the broker is quiet".

The module also holds the one definition of "stored data is intact" that every system test applies: read a
partition back batch by batch, check each batch's CRC and offsets, and compare the bytes with a snapshot.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from strom.protocol import messages
from strom.protocol.client import BrokerConnection, BrokerDisconnectedError
from strom.protocol.frames import decode_response_frame_body, encode_request_frame
from strom.protocol.messages import api_versions, create_topics, fetch, metadata, produce
from strom.protocol.record_batch import (
    BATCH_HEADER_SIZE,
    LENGTH_OFFSET,
    LOG_OVERHEAD,
    Compression,
    Record,
    build_batch,
    decode_batch,
)

HOST = "127.0.0.1"
CLIENT_ID = "strom-system-test"
#: How long a well-formed request may take to be answered before the test calls the broker stuck.
IO_TIMEOUT_S = 15.0
#: How long a refused request may take to make the broker hang up.
CLOSE_TIMEOUT_S = 10.0
#: Fetch v12 is the newest version that names topics (v13+ use topic ids), which keeps reads simple.
FETCH_VERSION = 12
READ_MAX_BYTES = 64 * 1024 * 1024

SIZE_PREFIX = struct.Struct(">i")
#: api_key, api_version, correlation_id: the fixed start of every request header.
HEADER_START = struct.Struct(">hhi")

#: The broker closed the connection (end of stream, reset or broken pipe); also a ConnectionResetError.
PeerClosed = BrokerDisconnectedError


def encode_request(
    api_key: int, version: int, correlation_id: int, msg: Any, client_id: str | None = CLIENT_ID
) -> bytes:
    """One whole request frame, size prefix included, as the codec writes it."""
    chunks = encode_request_frame(api_key, version, correlation_id, client_id, msg)
    if not all(isinstance(chunk, bytes | memoryview) for chunk in chunks):
        raise TypeError("a request frame held something other than bytes")
    return b"".join(chunks)  # type: ignore[arg-type]  # checked just above


def decode_response(api_key: int, version: int, body: bytes) -> tuple[int, Any]:
    """The correlation id and decoded response of a response frame's body (after the size prefix)."""
    return decode_response_frame_body(api_key, version, memoryview(body))


def request_class(api_key: int) -> type:
    """The generated dataclass of an API's request (e.g. `ProduceRequest`)."""
    spec = messages.APIS[api_key]
    cls: type = getattr(spec.module, f"{spec.name}Request")
    return cls


def raw_header(
    api_key: int, version: int, correlation_id: int, client_id: bytes = CLIENT_ID.encode()
) -> bytes:
    """A v1 request header built by hand, for API keys and versions the codec refuses to encode."""
    return HEADER_START.pack(api_key, version, correlation_id) + struct.pack(">h", len(client_id)) + client_id


def frame(payload: bytes) -> bytes:
    return SIZE_PREFIX.pack(len(payload)) + payload


class RawConnection:
    """One TCP connection to the broker on 127.0.0.1, driven a frame at a time.

    Failures are the shared client's: `PeerClosed` when the broker hangs up, a `TimeoutError` when it is
    silent past the socket timeout.
    """

    def __init__(self, port: int, *, timeout: float = IO_TIMEOUT_S) -> None:
        self.wire = BrokerConnection(HOST, port, timeout=timeout, client_id=CLIENT_ID)

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def sock(self) -> socket.socket:
        return self.wire.sock

    def close(self) -> None:
        self.wire.close()

    def abort(self) -> None:
        """Close with a TCP reset instead of a FIN, as a crashed client's kernel would."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    # ------------------------------------------------------------------ bytes
    def send(self, data: bytes) -> None:
        """Send any bytes; a broker that already hung up shows as `PeerClosed` (a ConnectionResetError)."""
        self.wire.send_bytes(data)

    def send_request(self, api_key: int, version: int, msg: Any) -> int:
        """Send a well-formed request; returns its correlation id."""
        return self.wire.send(api_key, version, msg)

    def read_frame(self) -> bytes:
        """The next response frame's body (after the size prefix)."""
        return self.wire.read_frame()

    def wait_closed(self, timeout: float = CLOSE_TIMEOUT_S) -> bytes:
        """Wait for the broker to hang up; return whatever it sent first. Fails if it stays open."""
        received = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"the broker kept the connection open for {timeout:g} s (sent {len(received)} bytes)"
                )
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return bytes(received)
            except TimeoutError:
                continue
            if not chunk:
                return bytes(received)
            received += chunk

    # ------------------------------------------------------------------ messages
    def receive(self, api_key: int, version: int, correlation_id: int) -> Any:
        """The next response, which must answer `correlation_id`: a request sent with `send_request`, or a
        whole frame sent with `send`."""
        got_id, response = decode_response(api_key, version, self.read_frame())
        assert got_id == correlation_id, f"response to request {got_id} came when {correlation_id} was due"
        return response

    def call(self, api_key: int, version: int, msg: Any) -> Any:
        """Send one request and return its decoded response."""
        return self.wire.call(api_key, version, msg)

    def advertised_versions(self) -> dict[int, tuple[int, int]]:
        """API key -> (min, max) version, from ApiVersions (asked once per connection)."""
        return self.wire.advertised_versions()

    def version_for(self, api_key: int, newest: int | None = None) -> int:
        """The newest version both the broker and the codec speak (capped at `newest`), as clients choose."""
        return self.wire.negotiate(api_key, newest=newest)


# ---------------------------------------------------------------------- requests the tests send a lot
def api_versions_request() -> Any:
    return api_versions.ApiVersionsRequest(
        client_software_name="strom-system-test", client_software_version="1.0"
    )


def metadata_request(topics: Iterable[str] | None = None, *, auto_create: bool = False) -> Any:
    requested = (
        None if topics is None else [metadata.MetadataRequest.MetadataRequestTopic(name=t) for t in topics]
    )
    return metadata.MetadataRequest(topics=requested, allow_auto_topic_creation=auto_create)


def create_topic_request(
    name: str,
    partitions: int = 1,
    *,
    replication_factor: int = 1,
    configs: dict[str, str | None] | None = None,
    validate_only: bool = False,
) -> Any:
    topic_cls = create_topics.CreateTopicsRequest.CreatableTopic
    config_cls = create_topics.CreateTopicsRequest.CreatableTopicConfig
    return create_topics.CreateTopicsRequest(
        topics=[
            topic_cls(
                name=name,
                num_partitions=partitions,
                replication_factor=replication_factor,
                configs=[config_cls(name=k, value=v) for k, v in (configs or {}).items()],
            )
        ],
        timeout_ms=30_000,
        validate_only=validate_only,
    )


def produce_request(topic: str, partition: int, records: bytes | None, *, acks: int = -1) -> Any:
    request = produce.ProduceRequest
    return request(
        acks=acks,
        timeout_ms=30_000,
        topic_data=[
            request.TopicProduceData(
                name=topic, partition_data=[request.PartitionProduceData(index=partition, records=records)]
            )
        ],
    )


def fetch_request(topic: str, partition: int, offset: int, *, max_bytes: int = READ_MAX_BYTES) -> Any:
    request = fetch.FetchRequest
    return request(
        max_wait_ms=0,
        min_bytes=0,
        max_bytes=max_bytes,
        topics=[
            request.FetchTopic(
                topic=topic,
                partitions=[
                    request.FetchPartition(
                        partition=partition, fetch_offset=offset, partition_max_bytes=max_bytes
                    )
                ],
            )
        ],
    )


# ---------------------------------------------------------------------- data worth keeping
def sample_batches(seed: int, *, records_per_batch: int = 10, max_value_size: int = 400) -> list[bytes]:
    """One batch per compression type, with keys, a null value and headers: what the logs must keep."""
    rng = random.Random(seed)
    batches = []
    for index, codec in enumerate(Compression):
        records = [
            Record(
                offset_delta=i,
                timestamp_delta=i,
                key=f"key-{seed}-{index}-{i}".encode(),
                value=None if i == 3 else rng.randbytes(rng.randrange(1, max_value_size)),
                headers=[("origin", b"system-test"), ("n", str(i).encode())],
            )
            for i in range(records_per_batch)
        ]
        # Timestamps are now (the default): older ones would be past retention.ms and deleted under the test.
        batches.append(build_batch(records, compression=codec))
    return batches


# ---------------------------------------------------------------------- topics, produce, read back
def create_topic(conn: RawConnection, name: str, partitions: int = 1, **options: Any) -> Any:
    """CreateTopics for one topic; returns its result (error_code 0 when created)."""
    version = conn.version_for(create_topics.API_KEY)
    response = conn.call(create_topics.API_KEY, version, create_topic_request(name, partitions, **options))
    (result,) = response.topics
    return result


def produce_batch(
    conn: RawConnection, topic: str, partition: int, records: bytes | None, *, acks: int = -1
) -> Any:
    """Produce one record set to one partition; returns that partition's response."""
    version = conn.version_for(produce.API_KEY)
    response = conn.call(produce.API_KEY, version, produce_request(topic, partition, records, acks=acks))
    (topic_response,) = response.responses
    (partition_response,) = topic_response.partition_responses
    return partition_response


@dataclass(frozen=True)
class PartitionContent:
    """A partition as read back: its batches' bytes (as stored, offsets assigned) and the end offset."""

    topic: str
    partition: int
    batches: tuple[bytes, ...]
    high_watermark: int


def read_partition(conn: RawConnection, topic: str, partition: int) -> PartitionContent:
    """Fetch everything from offset 0 to the high watermark, checking each batch as it comes.

    Every batch must be whole, carry a valid CRC and decodable records, and start where the previous one
    ended: a damaged or reordered log fails here, whichever test is looking.
    """
    version = conn.version_for(fetch.API_KEY, FETCH_VERSION)
    batches: list[bytes] = []
    offset = 0
    high_watermark = None
    while high_watermark is None or offset < high_watermark:
        response = conn.call(fetch.API_KEY, version, fetch_request(topic, partition, offset))
        assert response.error_code == 0, f"Fetch {topic}-{partition} failed with error {response.error_code}"
        ((data,),) = [t.partitions for t in response.responses]
        assert data.error_code == 0, f"Fetch {topic}-{partition}@{offset} failed with error {data.error_code}"
        high_watermark = data.high_watermark
        fetched = list(split_batches(bytes(data.records or b"")))
        if offset < high_watermark:
            assert fetched, f"{topic}-{partition}: no batch at offset {offset} below the high watermark"
        for batch in fetched:
            header, _ = decode_batch(batch)
            assert header.base_offset == offset, (
                f"{topic}-{partition}: batch at offset {header.base_offset} where {offset} was due"
            )
            offset = header.next_offset
            batches.append(batch)
    assert offset == high_watermark, (
        f"{topic}-{partition}: batches end at {offset}, high watermark {high_watermark}"
    )
    return PartitionContent(topic, partition, tuple(batches), high_watermark)


def split_batches(records: bytes) -> Iterator[bytes]:
    """Whole batches of a fetched record set; a trailing partial batch (allowed by Kafka) is dropped."""
    pos = 0
    while len(records) - pos >= LOG_OVERHEAD:
        (length,) = struct.unpack_from(">i", records, pos + LENGTH_OFFSET)
        assert length >= BATCH_HEADER_SIZE - LOG_OVERHEAD, f"a fetched batch claims to be {length} bytes long"
        end = pos + LOG_OVERHEAD + length
        if end > len(records):
            return
        yield records[pos:end]
        pos = end


def assert_still_holds(conn: RawConnection, snapshot: Sequence[PartitionContent]) -> None:
    """Each snapshot partition still starts with exactly the batches it had: same offsets, same bytes."""
    for before in snapshot:
        now = read_partition(conn, before.topic, before.partition)
        kept = now.batches[: len(before.batches)]
        differing = [i for i, (a, b) in enumerate(zip(before.batches, kept, strict=False)) if a != b]
        assert kept == before.batches, (
            f"{before.topic}-{before.partition}: stored batches changed ({len(before.batches)} before, "
            f"{len(kept)} of them still there, differing at batches {differing[:10]})"
        )


def assert_broker_answers(port: int) -> None:
    """A fresh connection gets a successful ApiVersions and Metadata response."""
    with RawConnection(port) as conn:
        assert conn.advertised_versions(), "ApiVersions advertised no API"
        response = conn.call(metadata.API_KEY, conn.version_for(metadata.API_KEY), metadata_request())
        assert [b.node_id for b in response.brokers], "Metadata listed no broker"
