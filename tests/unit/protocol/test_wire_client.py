"""The shared raw-protocol client: against a real ``strom serve`` for the exchanges that work, and against a
scripted listener on 127.0.0.1 for the ways a broker can fail it."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from strom.protocol.client import (
    BrokerConnection,
    BrokerConnectionError,
    BrokerDisconnectedError,
    BrokerTimeoutError,
    UnexpectedResponseError,
    UnsupportedApiError,
)
from strom.protocol.frames import decode_response_frame_body, encode_request_frame, encode_response_frame
from strom.protocol.headers import RequestHeader, decode_request_header
from strom.protocol.messages import APIS, api_versions, create_topics, fetch, metadata, produce
from strom.protocol.record_batch import Record, build_batch, decode_batch
from strom.testing.process import StromProcess

HOST = "127.0.0.1"
IO_TIMEOUT_S = 10.0
SIZE = struct.Struct(">i")


# ----------------------------------------------------------------------------------- against a real broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StromProcess]:
    with StromProcess(tmp_path_factory.mktemp("wire-client") / "data") as process:
        yield process


@pytest.fixture
def connection(broker: StromProcess) -> Iterator[BrokerConnection]:
    with BrokerConnection(HOST, broker.port, timeout=IO_TIMEOUT_S, client_id="wire-client-test") as conn:
        yield conn


def metadata_request() -> metadata.MetadataRequest:
    """Metadata of the cluster and every topic."""
    return metadata.MetadataRequest(topics=None, allow_auto_topic_creation=False)


def produce_request(topic: str, records: bytes, acks: int) -> produce.ProduceRequest:
    request = produce.ProduceRequest
    data = request.PartitionProduceData(index=0, records=records)
    return request(
        acks=acks, timeout_ms=10_000, topic_data=[request.TopicProduceData(name=topic, partition_data=[data])]
    )


def fetch_request(topic: str) -> fetch.FetchRequest:
    request = fetch.FetchRequest
    wanted = request.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=4 * 1024 * 1024)
    return request(
        max_wait_ms=0,
        min_bytes=0,
        max_bytes=4 * 1024 * 1024,
        topics=[request.FetchTopic(topic=topic, partitions=[wanted])],
    )


def create_topic(conn: BrokerConnection, name: str) -> None:
    topic = create_topics.CreateTopicsRequest.CreatableTopic(
        name=name, num_partitions=1, replication_factor=1
    )
    request = create_topics.CreateTopicsRequest(topics=[topic], timeout_ms=10_000)
    response = conn.call(create_topics.API_KEY, conn.negotiate(create_topics.API_KEY), request)
    assert [t.error_code for t in response.topics] == [0]


def base_offset(response: produce.ProduceResponse) -> int:
    ((partition,),) = [topic.partition_responses for topic in response.responses]
    assert partition.error_code == 0
    offset: int = partition.base_offset
    return offset


def test_call_returns_the_decoded_response(broker: StromProcess, connection: BrokerConnection) -> None:
    response = connection.call(metadata.API_KEY, connection.negotiate(metadata.API_KEY), metadata_request())
    assert [b.port for b in response.brokers] == [broker.port]
    assert connection.in_flight == 0


def test_negotiate_picks_the_newest_version_both_sides_speak(connection: BrokerConnection) -> None:
    advertised = connection.advertised_versions()
    low, high = advertised[metadata.API_KEY]
    assert connection.negotiate(metadata.API_KEY) == min(high, APIS[metadata.API_KEY].max_version)
    assert connection.negotiate(metadata.API_KEY, newest=low) == low
    with pytest.raises(UnsupportedApiError, match="Metadata"):
        connection.negotiate(metadata.API_KEY, oldest=high + 1)


def test_api_the_broker_does_not_serve_cannot_be_negotiated(connection: BrokerConnection) -> None:
    unserved = next(key for key in sorted(APIS) if key not in connection.advertised_versions())
    with pytest.raises(UnsupportedApiError, match=APIS[unserved].name):
        connection.negotiate(unserved)


def test_pipelined_requests_are_answered_in_order(connection: BrokerConnection) -> None:
    version = connection.negotiate(metadata.API_KEY)
    ids = [
        connection.send(api_versions.API_KEY, 0, api_versions.ApiVersionsRequest()),
        connection.send(metadata.API_KEY, version, metadata_request()),
        connection.send(api_versions.API_KEY, 3, api_versions.ApiVersionsRequest("test", "1")),
    ]
    assert connection.in_flight == 3
    assert len(set(ids)) == 3
    answers = [connection.receive() for _ in ids]
    assert [type(answer).__name__ for answer in answers] == [
        "ApiVersionsResponse",
        "MetadataResponse",
        "ApiVersionsResponse",
    ]
    assert connection.in_flight == 0


def test_produce_with_acks_0_awaits_no_response(connection: BrokerConnection) -> None:
    create_topic(connection, "fire-and-forget")
    version = connection.negotiate(produce.API_KEY)
    batch = build_batch([Record(offset_delta=0, value=b"unanswered")])

    assert (
        connection.call(produce.API_KEY, version, produce_request("fire-and-forget", batch, acks=0)) is None
    )
    assert connection.in_flight == 0
    # The next response on the connection is the next request's, and the unanswered record was stored.
    answered = connection.call(produce.API_KEY, version, produce_request("fire-and-forget", batch, acks=-1))
    assert base_offset(answered) == 1


def test_a_batch_many_times_the_send_buffer_is_sent_whole(connection: BrokerConnection) -> None:
    """The socket takes the frame in several partial writes; each resumes where the last one stopped."""
    connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    create_topic(connection, "big")
    values = [bytes([n]) * 300_000 for n in range(3)]
    batch = build_batch([Record(offset_delta=n, value=value) for n, value in enumerate(values)])
    version = connection.negotiate(produce.API_KEY)
    assert base_offset(connection.call(produce.API_KEY, version, produce_request("big", batch, acks=-1))) == 0
    fetched = connection.call(fetch.API_KEY, 12, fetch_request("big"))
    ((partition,),) = [topic.partitions for topic in fetched.responses]
    _, records = decode_batch(partition.records)
    assert [bytes(record.value or b"") for record in records] == values


def test_discard_frame_reads_a_response_into_scratch_and_keeps_the_connection_in_step(
    connection: BrokerConnection,
) -> None:
    version = connection.negotiate(metadata.API_KEY)
    before = connection.received_bytes
    connection.call(metadata.API_KEY, version, metadata_request())
    decoded_size = connection.received_bytes - before

    connection.send(metadata.API_KEY, version, metadata_request())
    scratch = memoryview(bytearray(8))  # smaller than the response: read piece by piece
    assert connection.discard_frame(scratch) == decoded_size
    assert connection.in_flight == 0
    assert connection.call(api_versions.API_KEY, 0, api_versions.ApiVersionsRequest()).error_code == 0


def test_raw_bytes_and_read_frame(connection: BrokerConnection) -> None:
    chunks = encode_request_frame(api_versions.API_KEY, 0, 4242, "raw", api_versions.ApiVersionsRequest())
    connection.send_bytes(b"".join(bytes(chunk) for chunk in chunks))
    correlation_id, response = decode_response_frame_body(
        api_versions.API_KEY, 0, memoryview(connection.read_frame())
    )
    assert (correlation_id, response.error_code) == (4242, 0)


def test_read_frame_answers_the_oldest_request_sent(connection: BrokerConnection) -> None:
    correlation_id = connection.send(api_versions.API_KEY, 0, api_versions.ApiVersionsRequest())
    assert connection.in_flight == 1
    assert SIZE.unpack_from(connection.read_frame())[0] == correlation_id
    assert connection.in_flight == 0


def test_receive_with_nothing_sent_is_a_usage_error(connection: BrokerConnection) -> None:
    with pytest.raises(RuntimeError, match="awaits a response"):
        connection.receive()


# --------------------------------------------------------------------------------- against a scripted peer

Script = Callable[["ScriptedPeer", socket.socket], None]


class ScriptedPeer:
    """A listener on 127.0.0.1 whose first connection ``script(self, connection)`` drives in a thread; it
    records the requests it reads with `read_request`. ``release`` ends scripts that wait for the test."""

    def __init__(self, script: Script) -> None:
        self.requests: list[RequestHeader] = []
        self.release = threading.Event()
        self.failure: BaseException | None = None
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self._thread.start()

    def connect(self, timeout: float = IO_TIMEOUT_S) -> BrokerConnection:
        return BrokerConnection(HOST, self.port, timeout=timeout)

    def close(self) -> None:
        self.release.set()
        self._thread.join(timeout=IO_TIMEOUT_S)
        self._listener.close()
        if self.failure is not None:
            raise self.failure

    def read_request(self, peer: socket.socket) -> tuple[RequestHeader, Any]:
        body = memoryview(_read_exactly(peer, SIZE.unpack(_read_exactly(peer, SIZE.size))[0]))
        header, position = decode_request_header(body)
        request, _ = APIS[header.api_key].module.decode_request(body, position, header.api_version)
        self.requests.append(header)
        return header, request

    def _run(self, script: Script) -> None:
        try:
            peer, _ = self._listener.accept()
            with peer:
                script(self, peer)
        except BaseException as exc:  # surfaced by close(), so a broken script fails its test
            self.failure = exc


def _read_exactly(peer: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = peer.recv(size - len(data))
        assert chunk, "the client closed the connection"
        data += chunk
    return data


def answer(
    peer: socket.socket, header: RequestHeader, response: Any, correlation_id: int | None = None
) -> None:
    chunks = encode_response_frame(
        header.api_key,
        header.api_version,
        header.correlation_id if correlation_id is None else correlation_id,
        response,
    )
    peer.sendall(b"".join(bytes(chunk) for chunk in chunks))


def api_versions_response(ranges: dict[int, tuple[int, int]], error_code: int = 0) -> Any:
    version = api_versions.ApiVersionsResponse.ApiVersion
    return api_versions.ApiVersionsResponse(
        error_code=error_code, api_keys=[version(key, low, high) for key, (low, high) in ranges.items()]
    )


@pytest.fixture
def scripted() -> Iterator[Callable[[Script], ScriptedPeer]]:
    peers: list[ScriptedPeer] = []

    def start(script: Script) -> ScriptedPeer:
        peers.append(ScriptedPeer(script))
        return peers[-1]

    yield start
    for peer in peers:
        peer.close()


def test_connect_to_a_port_nobody_listens_on(scripted: Any) -> None:
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind((HOST, 0))
        port = bound_not_listening.getsockname()[1]
        with pytest.raises(BrokerConnectionError, match=f"cannot connect to {HOST}:{port}"):
            BrokerConnection(HOST, port, timeout=IO_TIMEOUT_S)


def test_versions_are_asked_once_with_api_versions_v0(scripted: Any) -> None:
    ranges = {metadata.API_KEY: (0, 9), produce.API_KEY: (3, 8)}

    def script(holder: ScriptedPeer, peer: socket.socket) -> None:
        header, _ = holder.read_request(peer)
        answer(peer, header, api_versions_response(ranges))
        holder.release.wait()

    holder = scripted(script)
    with holder.connect() as conn:
        assert conn.negotiate(metadata.API_KEY) == 9
        assert conn.negotiate(produce.API_KEY, newest=5) == 5
        assert conn.advertised_versions() == ranges
        with pytest.raises(UnsupportedApiError, match=r"v3-v8, none of v0-v2"):
            conn.negotiate(produce.API_KEY, newest=2)
    assert [(h.api_key, h.api_version) for h in holder.requests] == [(api_versions.API_KEY, 0)]


def test_an_unstable_latest_version_is_not_chosen(scripted: Any) -> None:
    unstable = next(spec for spec in APIS.values() if spec.latest_version_unstable and spec.max_version > 0)

    def script(holder: ScriptedPeer, peer: socket.socket) -> None:
        header, _ = holder.read_request(peer)
        answer(peer, header, api_versions_response({unstable.key: (0, unstable.max_version)}))
        holder.release.wait()

    holder = scripted(script)
    with holder.connect() as conn:
        assert conn.negotiate(unstable.key) == unstable.max_version - 1


def test_failed_api_versions_is_an_unexpected_response(scripted: Any) -> None:
    def script(holder: ScriptedPeer, peer: socket.socket) -> None:
        header, _ = holder.read_request(peer)
        answer(peer, header, api_versions_response({}, error_code=35))
        holder.release.wait()

    holder = scripted(script)
    with holder.connect() as conn, pytest.raises(UnexpectedResponseError, match="error code 35"):
        conn.negotiate(metadata.API_KEY)


def test_an_answer_to_another_request_is_unexpected(scripted: Any) -> None:
    def script(holder: ScriptedPeer, peer: socket.socket) -> None:
        header, _ = holder.read_request(peer)
        answer(peer, header, api_versions_response({}), correlation_id=header.correlation_id + 7)
        holder.release.wait()

    holder = scripted(script)
    with holder.connect() as conn:
        correlation_id = conn.send(api_versions.API_KEY, 0, api_versions.ApiVersionsRequest())
        with pytest.raises(UnexpectedResponseError, match=f"request {correlation_id + 7} when request"):
            conn.receive()


def test_discard_frame_checks_the_correlation_id(scripted: Any) -> None:
    def script(holder: ScriptedPeer, peer: socket.socket) -> None:
        header, _ = holder.read_request(peer)
        answer(peer, header, api_versions_response({}), correlation_id=header.correlation_id - 1)
        holder.release.wait()

    holder = scripted(script)
    with holder.connect() as conn:
        conn.send(api_versions.API_KEY, 0, api_versions.ApiVersionsRequest())
        with pytest.raises(UnexpectedResponseError, match="was due"):
            conn.discard_frame(memoryview(bytearray(64)))


@pytest.mark.parametrize("size", [0, 3, -1])
def test_a_frame_too_short_for_a_header_is_unexpected(scripted: Any, size: int) -> None:
    def script(holder: ScriptedPeer, peer: socket.socket) -> None:
        holder.read_request(peer)
        peer.sendall(SIZE.pack(size) + bytes(max(size, 0)))
        holder.release.wait()

    holder = scripted(script)
    with holder.connect() as conn:
        conn.send(api_versions.API_KEY, 0, api_versions.ApiVersionsRequest())
        with pytest.raises(UnexpectedResponseError, match=f"frame of {size} bytes"):
            conn.receive()


def test_a_response_that_does_not_decode_is_unexpected(scripted: Any) -> None:
    def script(holder: ScriptedPeer, peer: socket.socket) -> None:
        header, _ = holder.read_request(peer)
        body = struct.pack(">ih", header.correlation_id, 0) + b"\xff"  # api_keys array length cut short
        peer.sendall(SIZE.pack(len(body)) + body)
        holder.release.wait()

    holder = scripted(script)
    with holder.connect() as conn:
        conn.send(api_versions.API_KEY, 0, api_versions.ApiVersionsRequest())
        with pytest.raises(UnexpectedResponseError, match="does not decode"):
            conn.receive()


def test_a_broker_hanging_up_mid_frame_is_a_disconnection(scripted: Any) -> None:
    def script(holder: ScriptedPeer, peer: socket.socket) -> None:
        holder.read_request(peer)
        peer.sendall(SIZE.pack(100) + b"\x00" * 10)

    holder = scripted(script)
    with holder.connect() as conn:
        conn.send(api_versions.API_KEY, 0, api_versions.ApiVersionsRequest())
        with pytest.raises(
            BrokerDisconnectedError, match=r"closed the connection \(10 of 100 bytes read\)"
        ) as info:
            conn.receive()
    # Code that handles socket errors handles it too.
    assert isinstance(info.value, ConnectionResetError)


def test_a_reset_connection_is_a_disconnection_for_reads_and_sends(scripted: Any) -> None:
    def script(holder: ScriptedPeer, peer: socket.socket) -> None:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    holder = scripted(script)
    with holder.connect() as conn:
        with pytest.raises(BrokerDisconnectedError):
            conn.read_frame()
        with pytest.raises(BrokerDisconnectedError):
            conn.send_bytes(b"\x00" * 16)


def test_a_silent_broker_times_out(scripted: Any) -> None:
    def script(holder: ScriptedPeer, peer: socket.socket) -> None:
        holder.read_request(peer)
        holder.release.wait()

    holder = scripted(script)
    with holder.connect(timeout=0.05) as conn:
        conn.send(api_versions.API_KEY, 0, api_versions.ApiVersionsRequest())
        with pytest.raises(BrokerTimeoutError, match="timed out") as info:
            conn.receive()
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, BrokerConnectionError)


def test_client_id_is_sent_in_every_request_header(scripted: Any) -> None:
    def script(holder: ScriptedPeer, peer: socket.socket) -> None:
        header, _ = holder.read_request(peer)
        answer(peer, header, api_versions_response({}))

    holder = scripted(script)
    with BrokerConnection(HOST, holder.port, timeout=IO_TIMEOUT_S, client_id="who-asks") as conn:
        conn.call(api_versions.API_KEY, 0, api_versions.ApiVersionsRequest())
    holder.close()
    assert [header.client_id for header in holder.requests] == ["who-asks"]
