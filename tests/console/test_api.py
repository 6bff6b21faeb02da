"""The console's HTTP API against a real broker: every endpoint, its bad input, read-only mode and
authentication, served in-process on 127.0.0.1; then through a real ``strom console`` process and through
the console ``strom serve`` starts beside its broker."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from confluent_kafka import Consumer, Producer, TopicPartition

from strom.console.api import ApiSettings
from strom.console.app import Credentials, create_app, serve_console
from strom.console.cluster import BrowseResult, ClusterView, ConsoleMessage, payload
from strom.console.metrics import Sampler
from strom.console.openapi import openapi_document
from strom.testing.process import StromProcess

HOST = "127.0.0.1"
CLIENT_TIMEOUT_S = 10.0
# Small enough that the 413 tests send little; the live tail answers an empty poll quickly.
MAX_MESSAGE_BYTES = 4096
TAIL_WAIT_S = 0.3
# Bounds on waiting for a process to come up or go away; never what a test asserts.
START_TIMEOUT_S = 30.0
TOKEN = "s3cret-token"

NewTopicFactory = Callable[..., str]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> str:
        code: str = self.json["error"]["code"]
        return code


@dataclass
class Api:
    """A tiny HTTP client for one console: ``api.get("/api/topics")`` and so on."""

    base_url: str
    headers: dict[str, str] = field(default_factory=dict)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        raw_body: bytes | None = None,
    ) -> Reply:
        url = self.base_url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = raw_body if raw_body is not None else None if body is None else json.dumps(body).encode()
        json_type = {"Content-Type": "application/json"} if data is not None else {}
        all_headers = {**json_type, **self.headers, **(headers or {})}
        request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT_S + 10) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, dict(exc.headers), exc.read())

    def get(self, path: str, **query: Any) -> Reply:
        return self.call("GET", path, query=query)

    def post(self, path: str, body: Any) -> Reply:
        return self.call("POST", path, body)


class AppThread:
    """An aiohttp app served on 127.0.0.1 (a free port) by an event loop in a thread of the test process."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._listening = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> AppThread:
        self._thread.start()
        if not self._listening.wait(START_TIMEOUT_S):
            raise RuntimeError("the console app did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT_S)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _run(self) -> None:
        async def serve() -> None:
            self._stop = asyncio.Event()

            def listening(host: str, port: int) -> None:
                self.port = port
                self._listening.set()

            await serve_console(self._app, HOST, 0, self._stop, listening)

        self._loop.run_until_complete(serve())
        self._loop.close()


@pytest.fixture(scope="module")
def cluster(bootstrap: str) -> Iterator[ClusterView]:
    view = ClusterView(bootstrap, timeout_s=CLIENT_TIMEOUT_S)
    yield view
    view.close()


@pytest.fixture(scope="module")
def sampler(cluster: ClusterView) -> Sampler:
    """Not started: tests take samples themselves, so no test waits on a clock."""
    return Sampler(cluster)


@pytest.fixture(scope="module")
def serve(cluster: ClusterView, sampler: Sampler) -> Iterator[Callable[..., Api]]:
    """``serve(read_only=False, credentials=None)``: a console app over the module's broker."""
    started: list[AppThread] = []

    def start(*, read_only: bool = False, credentials: Credentials | None = None) -> Api:
        settings = ApiSettings(
            read_only=read_only,
            max_message_bytes=MAX_MESSAGE_BYTES,
            tail_wait_s=TAIL_WAIT_S,
        )
        app = create_app(cluster, sampler=sampler, settings=settings, credentials=credentials)
        server = AppThread(app).__enter__()
        started.append(server)
        return Api(server.url)

    yield start
    for server in started:
        server.__exit__()


@pytest.fixture(scope="module")
def api(serve: Callable[..., Api]) -> Api:
    return serve()


def produce(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, int]], **options: Any
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value, partition in records:
        producer.produce(topic, value, key=key, partition=partition, **options)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0


def commit_offsets(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Leave ``group`` with committed offsets and no members, as a consumer that stopped would."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, partition, offset) for partition, offset in offsets.items()],
            asynchronous=False,
        )
    finally:
        consumer.close()


# -- cluster -------------------------------------------------------------------------------------------------


def test_overview_names_the_broker(api: Api, broker: StromProcess) -> None:
    reply = api.get("/api/overview")
    assert reply.status == 200
    overview = reply.json
    assert [(b["host"], b["port"], b["controller"]) for b in overview["brokers"]] == [
        (HOST, broker.port, True)
    ]
    assert overview["cluster_id"]


def test_config_tells_the_page_how_to_behave(serve: Callable[..., Api]) -> None:
    assert serve().get("/api/config").json == {"read_only": False, "auth": None}
    assert serve(read_only=True, credentials=Credentials.token(TOKEN)).get("/api/config").json == {
        "read_only": True,
        "auth": "bearer",
    }


def test_rates_come_from_the_sampler(
    api: Api, sampler: Sampler, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic()
    sampler.sample()
    produce(bootstrap, topic, [(None, b"x", 0)] * 5)
    sampler.sample()
    samples = api.get("/api/metrics/rates").json["samples"]
    assert samples and set(samples[-1]) == {"t", "in_per_s", "out_per_s"}
    assert samples[-1]["in_per_s"] > 0


# -- topics --------------------------------------------------------------------------------------------------


def test_create_list_describe_and_delete_a_topic(api: Api) -> None:
    name = f"console-topic-{uuid.uuid4().hex[:8]}"
    created = api.post("/api/topics", {"name": name, "partitions": 3, "configs": {"retention.ms": "60000"}})
    assert created.status == 201, created.body
    assert [p["partition"] for p in created.json["partitions"]] == [0, 1, 2]

    listed = api.get("/api/topics", search=name.upper(), internal=0).json
    assert [(t["name"], t["partitions"], t["replication_factor"], t["internal"]) for t in listed] == [
        (name, 3, 1, False)
    ]
    described = api.get(f"/api/topics/{name}").json
    assert described["name"] == name
    assert {c["name"]: c["value"] for c in described["configs"]}["retention.ms"] == "60000"

    assert api.post("/api/topics", {"name": name, "partitions": 1}).error_code == "TOPIC_ALREADY_EXISTS"
    deleted = api.call("DELETE", f"/api/topics/{name}")
    assert (deleted.status, deleted.json) == (200, {"deleted": name})
    missing = api.get(f"/api/topics/{name}")
    assert (missing.status, missing.error_code) == (404, "UNKNOWN_TOPIC_OR_PARTITION")


def test_internal_topics_can_be_left_out(api: Api, bootstrap: str, new_topic: NewTopicFactory) -> None:
    commit_offsets(bootstrap, f"g-{uuid.uuid4().hex[:8]}", new_topic(), {0: 0})
    with_internal = {t["name"] for t in api.get("/api/topics").json}
    without = {t["name"] for t in api.get("/api/topics", internal=0).json}
    assert "__consumer_offsets" in with_internal - without


@pytest.mark.parametrize(
    "body",
    [
        {"partitions": 1},
        {"name": "", "partitions": 1},
        {"name": "t", "partitions": 0},
        {"name": "t", "partitions": "3"},
        {"name": "t", "replication_factor": 0},
        {"name": "t", "configs": {"retention.ms": 1000}},
        ["not", "an", "object"],
    ],
)
def test_bad_topic_creation_is_a_400(api: Api, body: Any) -> None:
    reply = api.post("/api/topics", body)
    assert (reply.status, reply.error_code) == (400, "INVALID_REQUEST")


def test_a_body_that_is_not_json_is_a_400(api: Api) -> None:
    reply = api.call("POST", "/api/topics", raw_body=b"{nope")
    assert (reply.status, reply.error_code) == (400, "INVALID_REQUEST")


def test_only_json_bodies_are_read(api: Api) -> None:
    """A cross-site form or text/plain post (no CORS preflight) must not create anything."""
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        reply = api.call(
            "POST",
            "/api/topics",
            raw_body=json.dumps({"name": f"csrf-{uuid.uuid4().hex[:8]}"}).encode(),
            headers={"Content-Type": content_type},
        )
        assert (reply.status, reply.error_code) == (415, "UNSUPPORTED_MEDIA_TYPE"), content_type
    assert not [t for t in api.get("/api/topics", search="csrf-").json]


def test_alter_topic_configs_sets_and_resets(api: Api, new_topic: NewTopicFactory) -> None:
    topic = new_topic()
    set_ = api.call("PATCH", f"/api/topics/{topic}/configs", {"configs": {"retention.ms": "1000"}})
    assert set_.status == 200, set_.body
    config = {c["name"]: c for c in set_.json["configs"]}["retention.ms"]
    assert (config["value"], config["default"]) == ("1000", False)

    reset = api.call("PATCH", f"/api/topics/{topic}/configs", {"configs": {"retention.ms": None}})
    assert {c["name"]: c for c in reset.json["configs"]}["retention.ms"]["value"] != "1000"

    bad_bodies: list[Any] = [{"configs": {}}, {"configs": {"retention.ms": 5}}, {"configs": "retention.ms=5"}]
    for body in bad_bodies:
        assert api.call("PATCH", f"/api/topics/{topic}/configs", body).status == 400
    unknown = api.call("PATCH", "/api/topics/no-such-topic/configs", {"configs": {"retention.ms": "1"}})
    assert (unknown.status, unknown.error_code) == (404, "UNKNOWN_TOPIC_OR_PARTITION")


def test_unknown_topic_is_a_404_everywhere(api: Api) -> None:
    for method, path, body in (
        ("GET", "/api/topics/no-such-topic", None),
        ("DELETE", "/api/topics/no-such-topic", None),
        ("GET", "/api/topics/no-such-topic/messages", None),
        ("POST", "/api/topics/no-such-topic/messages", {"value": "v"}),
    ):
        reply = api.call(method, path, body)
        assert (reply.status, reply.error_code) == (404, "UNKNOWN_TOPIC_OR_PARTITION"), (method, path)


# -- messages ------------------------------------------------------------------------------------------------


@pytest.fixture
def orders(api: Api, new_topic: NewTopicFactory) -> str:
    """A two-partition topic with five messages produced through the API."""
    topic = new_topic(partitions=2)
    for number in range(5):
        reply = api.post(
            f"/api/topics/{topic}/messages",
            {
                "key": f"order-{number}",
                "value": json.dumps({"n": number}),
                "headers": [["source", "console" if number % 2 else "batch"]],
                "partition": number % 2,
            },
        )
        assert reply.status == 201, reply.body
        assert reply.json == {"partition": number % 2, "offset": number // 2}
    return topic


def test_browse_reads_and_filters(api: Api, orders: str) -> None:
    everything = api.get(f"/api/topics/{orders}/messages").json
    assert sorted(m["key"]["text"] for m in everything["messages"]) == [f"order-{n}" for n in range(5)]
    assert everything["next_offsets"] == {"0": 3, "1": 2}
    first = next(m for m in everything["messages"] if m["key"]["text"] == "order-0")
    assert first["value"]["encoding"] == "json"
    assert [(h["name"], h["value"]["text"]) for h in first["headers"]] == [("source", "batch")]

    def keys(**query: Any) -> list[str]:
        reply = api.get(f"/api/topics/{orders}/messages", **query)
        assert reply.status == 200, reply.body
        return sorted(m["key"]["text"] for m in reply.json["messages"])

    assert keys(partition=1) == ["order-1", "order-3"]
    assert keys(start="offset", offset=2, partition=0) == ["order-4"]
    assert keys(start="latest", limit=1, partition=0) == ["order-4"]
    assert keys(key="ORDER-3") == ["order-3"]
    assert keys(value='"n": 2') == ["order-2"]
    assert keys(header="console") == ["order-1", "order-3"]
    assert keys(start="timestamp", timestamp=0) == [f"order-{n}" for n in range(5)]
    assert keys(start="timestamp", timestamp="2999-01-01T00:00:00") == []
    assert keys(start="earliest", partition="all", limit=2) != []


@pytest.mark.parametrize(
    "query",
    [
        {"start": "middle"},
        {"start": "offset"},
        {"start": "offset", "offset": "-1"},
        {"start": "offset", "offset": "ten"},
        {"start": "timestamp"},
        {"start": "timestamp", "timestamp": "yesterday"},
        {"partition": "first"},
        {"partition": "-1"},
        {"limit": "0"},
        {"limit": "100000"},
    ],
)
def test_bad_browse_parameters_are_a_400(api: Api, orders: str, query: dict[str, str]) -> None:
    reply = api.get(f"/api/topics/{orders}/messages", **query)
    assert (reply.status, reply.error_code) == (400, "INVALID_REQUEST")


def test_export_as_json_and_csv(api: Api, orders: str) -> None:
    as_json = api.get(f"/api/topics/{orders}/messages/export", format="json", partition=0)
    assert as_json.status == 200
    assert as_json.headers["Content-Disposition"] == f'attachment; filename="{orders}-messages.json"'
    assert [m["key"]["text"] for m in as_json.json] == ["order-0", "order-2", "order-4"]

    as_csv = api.get(f"/api/topics/{orders}/messages/export", format="csv", key="order-2")
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.body.decode())))
    assert [(row["key.text"], row["value.text"], json.loads(row["headers"])[0]["name"]) for row in rows] == [
        ("order-2", '{"n": 2}', "source")
    ]
    assert api.get(f"/api/topics/{orders}/messages/export", format="xml").status == 400


def test_tail_answers_new_messages_or_nothing(api: Api, orders: str) -> None:
    since = api.get(f"/api/topics/{orders}/messages/tail", after=json.dumps({"0": 2, "1": 2}))
    assert since.status == 200
    assert [m["key"]["text"] for m in since.json["messages"]] == ["order-4"]
    assert since.json["next_offsets"] == {"0": 3, "1": 2}

    nothing_new = api.get(f"/api/topics/{orders}/messages/tail", after=json.dumps(since.json["next_offsets"]))
    assert (nothing_new.status, nothing_new.json["messages"]) == (200, [])

    for after in ("[1, 2]", "{not json", '{"zero": 1}', '{"0": -5}'):
        reply = api.get(f"/api/topics/{orders}/messages/tail", after=after)
        assert (reply.status, reply.error_code) == (400, "INVALID_REQUEST"), after


class TailingCluster:
    """Nothing new on the first poll, a message on the next: a stand-in to follow the long poll's offsets."""

    def __init__(self) -> None:
        self.polled_from: list[dict[int, int]] = []

    def tail(self, topic: str, from_offsets: dict[int, int], **filters: str | None) -> BrowseResult:
        self.polled_from.append(dict(from_offsets))
        if len(self.polled_from) == 1:
            return BrowseResult([], {0: 5})
        message = ConsoleMessage(0, 5, 0, "CreateTime", payload(b"k"), payload(b"v"), [])
        return BrowseResult([message], {0: 6})


def test_a_long_poll_goes_on_from_where_its_last_poll_ended() -> None:
    stand_in = TailingCluster()
    settings = ApiSettings(tail_wait_s=START_TIMEOUT_S)
    with AppThread(create_app(cast(ClusterView, stand_in), settings=settings)) as server:
        reply = Api(server.url).get("/api/topics/t/messages/tail", after="{}")
    assert [m["offset"] for m in reply.json["messages"]] == [5]
    assert stand_in.polled_from == [{}, {0: 5}]


def test_produce_validates_its_body(api: Api, orders: str) -> None:
    for body in (
        {"value": 5},
        {"value": "v", "headers": [["only-name"]]},
        {"value": "v", "headers": {"a": "b"}},
        {"value": "v", "partition": -1},
        {"value": "v", "partition": "0"},
    ):
        reply = api.post(f"/api/topics/{orders}/messages", body)
        assert (reply.status, reply.error_code) == (400, "INVALID_REQUEST"), body
    null_value = api.post(f"/api/topics/{orders}/messages", {"key": None, "value": None, "partition": 0})
    assert null_value.status == 201


def test_oversized_produce_is_a_413(api: Api, orders: str) -> None:
    too_big = api.post(f"/api/topics/{orders}/messages", {"value": "x" * (MAX_MESSAGE_BYTES + 1)})
    assert (too_big.status, too_big.error_code) == (413, "MESSAGE_TOO_LARGE")
    body_too_big = api.post(f"/api/topics/{orders}/messages", {"value": "x" * (MAX_MESSAGE_BYTES * 5)})
    assert (body_too_big.status, body_too_big.error_code) == (413, "MESSAGE_TOO_LARGE")
    just_fits = api.post(f"/api/topics/{orders}/messages", {"value": "x" * (MAX_MESSAGE_BYTES // 2)})
    assert just_fits.status == 201


# -- consumer groups -----------------------------------------------------------------------------------------


def test_groups_lag_and_offset_reset(
    api: Api, sampler: Sampler, orders: str, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    group = f"console-group-{uuid.uuid4().hex[:8]}"
    commit_offsets(bootstrap, group, orders, {0: 1, 1: 0})

    summary = next(g for g in api.get("/api/groups").json if g["group_id"] == group)
    assert (summary["members"], summary["topics"], summary["total_lag"]) == (0, [orders], 4)
    details = api.get(f"/api/groups/{group}").json
    assert [(p["partition"], p["committed"], p["end_offset"], p["lag"]) for p in details["partitions"]] == [
        (0, 1, 3, 2),
        (1, 0, 2, 2),
    ]
    sampler.sample()
    history = api.get(f"/api/groups/{group}/lag-history").json
    assert history["group_id"] == group and history["samples"][-1]["lag"] == 4

    preview = api.post(f"/api/groups/{group}/reset-offsets", {"topic": orders, "to": "latest"})
    assert preview.status == 200, preview.body
    assert preview.json["dry_run"] is True
    assert [(r["partition"], r["current"], r["new"]) for r in preview.json["offsets"]] == [
        (0, 1, 3),
        (1, 0, 2),
    ]
    assert api.get(f"/api/groups/{group}").json["total_lag"] == 4  # a preview changes nothing

    applied = api.post(
        f"/api/groups/{group}/reset-offsets",
        {"topic": orders, "partitions": [0], "to": "offset", "value": 2, "dry_run": False},
    )
    assert applied.status == 200, applied.body
    assert [(p["partition"], p["committed"]) for p in api.get(f"/api/groups/{group}").json["partitions"]] == [
        (0, 2),
        (1, 0),
    ]


def test_bad_offset_resets_and_unknown_groups(api: Api, orders: str, bootstrap: str) -> None:
    group = f"console-group-{uuid.uuid4().hex[:8]}"
    commit_offsets(bootstrap, group, orders, {0: 1})
    for body in (
        {"to": "earliest"},
        {"topic": orders, "to": "yesterday"},
        {"topic": orders, "to": "offset"},
        {"topic": orders, "to": "offset", "value": -3},
        {"topic": orders, "to": "shift", "value": "1"},
        {"topic": orders, "partitions": "0"},
        {"topic": orders, "dry_run": "no"},
    ):
        reply = api.post(f"/api/groups/{group}/reset-offsets", body)
        assert (reply.status, reply.error_code) == (400, "INVALID_REQUEST"), body
    no_partition = api.post(f"/api/groups/{group}/reset-offsets", {"topic": orders, "partitions": [7]})
    assert (no_partition.status, no_partition.error_code) == (404, "UNKNOWN_TOPIC_OR_PARTITION")
    missing = api.get("/api/groups/no-such-group")
    assert (missing.status, missing.error_code) == (404, "GROUP_ID_NOT_FOUND")


def test_reset_is_refused_while_the_group_has_members(api: Api, orders: str, bootstrap: str) -> None:
    group = f"console-group-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([orders])
        deadline = time.monotonic() + START_TIMEOUT_S
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        reply = api.post(f"/api/groups/{group}/reset-offsets", {"topic": orders, "dry_run": False})
        assert (reply.status, reply.error_code) == (409, "NON_EMPTY_GROUP")
    finally:
        consumer.close()


# -- dead letters --------------------------------------------------------------------------------------------


def test_dead_letters_are_listed_shown_and_replayed(
    api: Api, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    origin = new_topic()
    dlt = new_topic(name=f"{origin}.DLT")
    headers = [
        ("kafka_dlt-original-topic", origin.encode()),
        ("kafka_dlt-original-partition", struct.pack(">i", 0)),
        ("kafka_dlt-original-offset", struct.pack(">q", 7)),
        ("kafka_dlt-exception-fqcn", b"KeyError"),
        ("kafka_dlt-exception-message", b"'sku'"),
    ]
    produce(bootstrap, dlt, [(b"o-1", b'{"sku": null}', 0), (b"o-2", b'{"sku": 1}', 0)], headers=headers)

    assert dlt in [t["name"] for t in api.get("/api/dlt").json]
    records = api.get(f"/api/dlt/{dlt}/records", limit=10).json
    assert [(r["offset"], r["original_topic"], r["exception_type"]) for r in records] == [
        (0, origin, "KeyError"),
        (1, origin, "KeyError"),
    ]
    replayed = api.post(f"/api/dlt/{dlt}/replay", {"records": [{"partition": 0, "offset": 1}]})
    assert replayed.status == 200, replayed.body
    assert [(r["offset"], r["destination"]) for r in replayed.json["replayed"]] == [(1, origin)]
    arrived = api.get(f"/api/topics/{origin}/messages").json["messages"]
    assert [m["key"]["text"] for m in arrived] == ["o-2"]

    replay_all = api.post(f"/api/dlt/{dlt}/replay", {"all": True})
    assert len(replay_all.json["replayed"]) == 2
    bad_bodies: list[Any] = [
        {},
        {"records": []},
        {"records": [{"partition": 0}]},
        {"all": True, "to_topic": 5},
    ]
    for body in bad_bodies:
        assert api.post(f"/api/dlt/{dlt}/replay", body).status == 400, body
    assert api.get(f"/api/dlt/{dlt}/records", limit="lots").status == 400
    assert api.get("/api/dlt/no-such.DLT/records").status == 404


# -- read-only, authentication, documentation, pages ---------------------------------------------------------


def test_read_only_console_refuses_changes(serve: Callable[..., Api], orders: str, bootstrap: str) -> None:
    read_only = serve(read_only=True)
    group = f"console-group-{uuid.uuid4().hex[:8]}"
    commit_offsets(bootstrap, group, orders, {0: 0})
    for method, path, body in (
        ("POST", "/api/topics", {"name": "nope", "partitions": 1}),
        ("DELETE", f"/api/topics/{orders}", None),
        ("PATCH", f"/api/topics/{orders}/configs", {"configs": {"retention.ms": "1"}}),
        ("POST", f"/api/topics/{orders}/messages", {"value": "v"}),
        ("POST", f"/api/groups/{group}/reset-offsets", {"topic": orders, "dry_run": False}),
        ("POST", f"/api/dlt/{orders}/replay", {"all": True}),
    ):
        reply = read_only.call(method, path, body)
        assert (reply.status, reply.error_code) == (403, "READ_ONLY"), (method, path)
    assert read_only.get(f"/api/topics/{orders}").status == 200
    preview = read_only.post(f"/api/groups/{group}/reset-offsets", {"topic": orders, "to": "latest"})
    assert preview.status == 200, preview.body


def test_token_auth(serve: Callable[..., Api]) -> None:
    console = serve(credentials=Credentials.token(TOKEN))
    missing = console.get("/api/topics")
    assert (missing.status, missing.error_code) == (401, "UNAUTHORIZED")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = console.call("GET", "/api/topics", headers={"Authorization": "Bearer guess"})
    assert wrong.status == 401
    assert console.call("GET", "/api/topics", headers={"Authorization": f"Basic {TOKEN}"}).status == 401
    assert console.call("GET", "/api/topics", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
    # What the page needs before logging in stays public.
    for path in ("/", "/api/config", "/api/openapi.json", "/api/docs"):
        assert console.get(path).status == 200, path


def test_basic_auth(serve: Callable[..., Api]) -> None:
    console = serve(credentials=Credentials.basic("admin:pa:ss"))

    def basic(user_and_password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(user_and_password.encode()).decode()}

    assert console.call("GET", "/api/groups", headers=basic("admin:pa:ss")).status == 200
    wrong = console.call("GET", "/api/groups", headers=basic("admin:pass"))
    assert wrong.status == 401 and wrong.headers["WWW-Authenticate"].startswith("Basic")
    # The page's own requests get no Basic challenge, which would open the browser's login dialog.
    scripted = console.call("GET", "/api/groups", headers={"Sec-Fetch-Mode": "cors"})
    assert scripted.status == 401 and "WWW-Authenticate" not in scripted.headers
    garbage = console.call("GET", "/api/groups", headers={"Authorization": "Basic %%%"})
    assert garbage.status == 401


def test_credentials_must_be_well_formed() -> None:
    for text in ("admin", ":pass", "admin:"):
        with pytest.raises(ValueError):
            Credentials.basic(text)
    with pytest.raises(ValueError):
        Credentials.token("")


def test_openapi_document_describes_exactly_the_served_routes(api: Api, cluster: ClusterView) -> None:
    document = api.get("/api/openapi.json").json
    assert document["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    app = create_app(cluster)
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
        and route.resource.canonical not in ("/api/openapi.json", "/api/docs")
    }
    assert documented == served
    assert documented == {(m.upper(), p) for p, ops in openapi_document()["paths"].items() for m in ops}
    docs = api.get("/api/docs")
    assert docs.headers["Content-Type"].startswith("text/html")
    assert all(path.encode() in docs.body for path in document["paths"])


def test_pages_are_served_and_nothing_else(api: Api) -> None:
    index = api.get("/")
    assert index.status == 200 and index.headers["Content-Type"].startswith("text/html")
    script = api.get("/api.js")
    assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")
    for path in ("/../app.py", "/%2e%2e/app.py", "/no-such-file.js"):
        assert api.get(path).status == 404, path
    unknown = api.get("/api/no-such-endpoint")
    assert (unknown.status, unknown.error_code) == (404, "NOT_FOUND")
    wrong_method = api.call("PUT", "/api/topics", {})
    assert (wrong_method.status, wrong_method.error_code) == (405, "METHOD_NOT_ALLOWED")


# -- the processes -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/config", timeout=2):
            return True
    except OSError:
        return False


def test_strom_console_command(bootstrap: str, broker: StromProcess) -> None:
    command = [sys.executable, "-m", "strom.cli.main", "console", "--bootstrap-server", bootstrap]
    process = subprocess.Popen(
        [*command, "--port", "0", "--token", TOKEN, "--read-only"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith(f"Strom console listening on http://{HOST}:"), first_line
        console = Api(first_line.split()[4], headers={"Authorization": f"Bearer {TOKEN}"})
        assert console.get("/api/overview").json["brokers"][0]["port"] == broker.port
        assert console.post("/api/topics", {"name": "nope"}).error_code == "READ_ONLY"
        assert Api(console.base_url).get("/api/overview").status == 401
    finally:
        process.terminate()
        assert process.wait(START_TIMEOUT_S) == 0

    taken = socket.socket()
    taken.bind((HOST, 0))
    taken.listen()
    with taken:
        port = taken.getsockname()[1]
        failed = subprocess.run([*command, "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert f"cannot listen on {HOST}:{port}" in failed.stderr

    bad_auth = subprocess.run(
        [*command, "--basic-auth", "no-colon"], capture_output=True, text=True, timeout=60
    )
    assert bad_auth.returncode == 2 and "user:password" in bad_auth.stderr


def test_strom_serve_starts_and_stops_its_console(tmp_path: Path) -> None:
    broker = StromProcess(tmp_path / "data", console_port=free_port()).start()
    try:
        wait_for(lambda: answers(broker.console_url), "the console of strom serve")
        overview = Api(broker.console_url).get("/api/overview").json
        assert overview["brokers"][0]["port"] == broker.port
    finally:
        assert broker.stop() == 0
    assert not answers(broker.console_url)


def test_strom_serve_goes_on_when_its_console_cannot_listen(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        broker = StromProcess(tmp_path / "data", console_port=taken.getsockname()[1]).start()
        try:
            wait_for(lambda: "goes on without it" in broker.read_log(), "the console's warning")
            producer = Producer({"bootstrap.servers": broker.bootstrap})
            producer.produce("after-console-failed", b"still serving")
            assert producer.flush(CLIENT_TIMEOUT_S) == 0
        finally:
            assert broker.stop() == 0
