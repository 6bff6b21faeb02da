"""FaultProxy between plain sockets and a stand-in broker that answers each Kafka frame, echoing it back.

The stand-in records each request it receives, so a test can tell a request that reached the broker (and
whose answer the proxy dropped) from one the proxy cut off before forwarding.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator

import psutil
import pytest

from strom.testing.fault_proxy import (
    CUT_BEFORE_REQUEST,
    DROP_RESPONSE,
    Fault,
    FaultKind,
    FaultProxy,
    FaultRule,
    RequestInfo,
    delay_response,
)

PRODUCE, FETCH, METADATA = 0, 1, 3
SOCKET_TIMEOUT_S = 10.0
# The stand-in leaves requests carrying this payload unanswered, as Kafka does a Produce with acks=0.
UNANSWERED = b"acks=0"


class _StandInBroker(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _AnswerEveryFrame)
        self.received: list[tuple[int, int, bytes]] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _AnswerEveryFrame(socketserver.BaseRequestHandler):
    server: _StandInBroker

    def handle(self) -> None:
        while (frame := _read_frame(self.request)) is not None:
            api_key, _version, correlation_id = struct.unpack_from(">hhi", frame)
            payload = frame[8:]
            with self.server.lock:
                self.server.received.append((api_key, correlation_id, payload))
            if payload != UNANSWERED:
                _send_frame(self.request, struct.pack(">i", correlation_id) + b"answer:" + payload)


def _read_frame(sock: socket.socket) -> bytes | None:
    size_prefix = _read_exactly(sock, 4)
    return None if size_prefix is None else _read_exactly(sock, struct.unpack(">i", size_prefix)[0])


def _read_exactly(sock: socket.socket, count: int) -> bytes | None:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _send_frame(sock: socket.socket, body: bytes) -> None:
    sock.sendall(struct.pack(">i", len(body)) + body)


def send_request(sock: socket.socket, api_key: int, correlation_id: int, payload: bytes = b"") -> None:
    _send_frame(sock, struct.pack(">hhi", api_key, 9, correlation_id) + payload)


def read_response(sock: socket.socket) -> tuple[int, bytes] | None:
    """(correlation id, payload) of the next response, or None if the proxy closed the connection."""
    try:
        frame = _read_frame(sock)
    except ConnectionResetError:
        return None
    return None if frame is None else (struct.unpack_from(">i", frame)[0], frame[4:])


@pytest.fixture
def broker() -> Iterator[_StandInBroker]:
    server = _StandInBroker()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def connect(proxy: FaultProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=SOCKET_TIMEOUT_S)


def test_requests_and_responses_pass_unchanged_and_in_order(broker: _StandInBroker) -> None:
    with FaultProxy(broker.port) as proxy, connect(proxy) as client:
        for correlation_id in range(1, 6):  # pipelined: all sent before any answer is read
            send_request(
                client, METADATA if correlation_id % 2 else FETCH, correlation_id, b"n%d" % correlation_id
            )
        answers = [read_response(client) for _ in range(5)]
        stats = proxy.stats()
    assert answers == [(n, b"answer:n%d" % n) for n in range(1, 6)]
    assert broker.received == [(METADATA if n % 2 else FETCH, n, b"n%d" % n) for n in range(1, 6)]
    assert (stats.connections, stats.requests, stats.faults_injected) == (1, {METADATA: 3, FETCH: 2}, 0)


def test_a_dropped_response_reaches_the_broker_and_the_client_is_cut_off(broker: _StandInBroker) -> None:
    rule = FaultRule(DROP_RESPONSE, api_keys=[PRODUCE], skip=1, limit=1)
    with FaultProxy(broker.port, rules=[rule]) as proxy:
        with connect(proxy) as client:
            send_request(client, PRODUCE, 1, b"first")
            send_request(client, METADATA, 2)
            send_request(client, PRODUCE, 3, b"second")
            assert read_response(client) == (1, b"answer:first")
            assert read_response(client) == (2, b"answer:")
            assert read_response(client) is None
        with connect(proxy) as client:  # the rule's limit is spent: a retry goes through
            send_request(client, PRODUCE, 1, b"second")
            assert read_response(client) == (1, b"answer:second")
        assert proxy.stats().faults == {FaultKind.DROP_RESPONSE: 1}
    assert [payload for api_key, _, payload in broker.received if api_key == PRODUCE] == [
        b"first",
        b"second",
        b"second",
    ]


def test_a_request_cut_before_forwarding_never_reaches_the_broker(broker: _StandInBroker) -> None:
    rule = FaultRule(CUT_BEFORE_REQUEST, api_keys=[PRODUCE], limit=1)
    with FaultProxy(broker.port, rules=[rule]) as proxy:
        with connect(proxy) as client:
            send_request(client, METADATA, 1)
            assert read_response(client) == (1, b"answer:")
            send_request(client, PRODUCE, 2, b"lost")
            assert read_response(client) is None
        stats = proxy.stats()
    assert [api_key for api_key, _, _ in broker.received] == [METADATA]
    assert stats.faults == {FaultKind.CUT_BEFORE_REQUEST: 1}
    assert stats.requests == {METADATA: 1}


def test_responses_are_matched_by_correlation_id_so_unanswered_requests_do_not_shift_faults(
    broker: _StandInBroker,
) -> None:
    aimed_at_3: list[RequestInfo] = []

    def drop_the_answer_to_3(request: RequestInfo) -> Fault | None:
        aimed_at_3.append(request)
        return DROP_RESPONSE if request.correlation_id == 3 else None

    with FaultProxy(broker.port, rules=[drop_the_answer_to_3]) as proxy, connect(proxy) as client:
        send_request(client, PRODUCE, 1, UNANSWERED)
        send_request(client, PRODUCE, 2, b"answered")
        send_request(client, PRODUCE, 3, b"dropped")
        assert read_response(client) == (2, b"answer:answered")
        assert read_response(client) is None
        assert proxy.faults_injected == 1
    assert [(r.api_key, r.correlation_id, r.connection) for r in aimed_at_3] == [
        (0, 1, 1),
        (0, 2, 1),
        (0, 3, 1),
    ]


def test_a_delayed_response_holds_back_the_ones_behind_it(broker: _StandInBroker) -> None:
    rule = FaultRule(delay_response(0.2), api_keys=[FETCH])
    with FaultProxy(broker.port, rules=[rule]) as proxy, connect(proxy) as client:
        send_request(client, FETCH, 1)
        send_request(client, METADATA, 2)
        answers = [read_response(client), read_response(client)]
        assert proxy.stats().faults == {FaultKind.DELAY_RESPONSE: 1}
    assert answers == [(1, b"answer:"), (2, b"answer:")]


def proxy_sockets(proxy: FaultProxy, broker: _StandInBroker) -> list[object]:
    """The proxy's sockets in this process: its listener, the client connections, its own to the broker."""
    return [
        connection
        for connection in psutil.Process().net_connections("tcp")
        if (connection.laddr and connection.laddr.port == proxy.port)
        or (connection.raddr and connection.raddr.port == broker.port)
    ]


def proxy_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "fault-proxy"]


def test_stopping_cuts_connections_even_with_a_response_held_back(broker: _StandInBroker) -> None:
    proxy = FaultProxy(broker.port, rules=[FaultRule(delay_response(3600.0))]).start()
    assert proxy_threads() != []
    with connect(proxy) as client:
        send_request(client, METADATA, 1)
        client.settimeout(0.2)
        with pytest.raises(TimeoutError):
            client.recv(1)
        assert len(proxy_sockets(proxy, broker)) == 3
        client.settimeout(SOCKET_TIMEOUT_S)
        proxy.stop()
        assert read_response(client) is None
    assert proxy_threads() == []
    assert proxy_sockets(proxy, broker) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=SOCKET_TIMEOUT_S).close()


def test_a_proxy_started_without_a_target_refuses_service_until_told_where_to_forward(
    broker: _StandInBroker,
) -> None:
    with FaultProxy() as proxy:
        with connect(proxy) as client:
            send_request(client, METADATA, 1)
            assert read_response(client) is None
        proxy.forward_to(broker.port)
        with connect(proxy) as client:
            send_request(client, METADATA, 1)
            assert read_response(client) == (1, b"answer:")


def test_rules_can_be_replaced_while_running(broker: _StandInBroker) -> None:
    with FaultProxy(broker.port) as proxy:
        with connect(proxy) as client:
            send_request(client, PRODUCE, 1)
            assert read_response(client) == (1, b"answer:")
            proxy.set_rules([FaultRule(DROP_RESPONSE)])
            send_request(client, PRODUCE, 2)
            assert read_response(client) is None
        assert proxy.faults_injected == 1


def test_a_broker_that_is_down_gets_the_client_disconnected() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed_port = placeholder.getsockname()[1]
    with FaultProxy(closed_port) as proxy, connect(proxy) as client:
        send_request(client, METADATA, 1)
        assert read_response(client) is None


def _decisions(rule: FaultRule, api_keys: list[int]) -> list[bool]:
    return [rule(RequestInfo(key, 9, n, 1, 20)) is not None for n, key in enumerate(api_keys)]


def test_a_seeded_rule_makes_the_same_choices_every_time() -> None:
    traffic = [PRODUCE, METADATA, PRODUCE, FETCH] * 50
    first = _decisions(FaultRule(DROP_RESPONSE, api_keys=[PRODUCE], probability=0.3, seed=7), traffic)
    again = _decisions(FaultRule(DROP_RESPONSE, api_keys=[PRODUCE], probability=0.3, seed=7), traffic)
    other_seed = _decisions(FaultRule(DROP_RESPONSE, api_keys=[PRODUCE], probability=0.3, seed=8), traffic)
    assert first == again != other_seed
    assert not any(chosen for chosen, key in zip(first, traffic, strict=True) if key != PRODUCE)
    assert 0 < sum(first) < 100


def test_a_rule_skips_then_stops_at_its_limit() -> None:
    rule = FaultRule(CUT_BEFORE_REQUEST, api_keys=[PRODUCE], skip=2, limit=3)
    decisions = _decisions(rule, [PRODUCE] * 10)
    assert decisions == [False, False, True, True, True, False, False, False, False, False]
    assert (rule.matched, rule.chosen) == (10, 3)


def test_a_probability_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError):
        FaultRule(DROP_RESPONSE, probability=1.5)
