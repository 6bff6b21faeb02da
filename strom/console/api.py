"""The console's JSON API under ``/api``: HTTP requests in, ``ClusterView`` calls out.

Handlers only parse and check their input, run the blocking ``ClusterView`` call in the app's thread pool,
and shape the answer as JSON; what the cluster says and how is ``ClusterView``'s business. Bad input is a
400 ``INVALID_REQUEST`` before any call reaches the cluster, and every failure, ours or the cluster's,
leaves as ``{"error": {"code": ..., "message": ...}}`` (see ``strom.console.app``'s error middleware).
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from aiohttp import web

from strom.console.cluster import MAX_BROWSE_LIMIT, ClusterView, ConsoleError
from strom.console.metrics import Sampler

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ResultT = TypeVar("ResultT")

START_POSITIONS = ("earliest", "latest", "offset", "timestamp")
RESET_TARGETS = ("earliest", "latest", "offset", "timestamp", "shift")
EXPORT_FORMATS = ("json", "csv")
DEFAULT_BROWSE_LIMIT = 100
DEFAULT_DLT_LIMIT = 100
# Kafka's default message.max.bytes: the largest record batch a broker accepts unless told otherwise.
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
# A live tail answers as soon as there is something new, or empty after this long (a long poll).
DEFAULT_TAIL_WAIT_S = 5.0
TAIL_POLL_INTERVAL_S = 0.5


@dataclass(frozen=True)
class ApiSettings:
    """How the API behaves: ``read_only`` refuses every change with 403 READ_ONLY; ``auth_scheme`` is how
    callers log in ("bearer", "basic" or None), which the page asks ``/api/config`` for (``create_app``
    sets it from the credentials it is given)."""

    read_only: bool = False
    auth_scheme: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    tail_wait_s: float = DEFAULT_TAIL_WAIT_S


def invalid(message: str) -> ConsoleError:
    """The 400 every malformed parameter or body answers."""
    return ConsoleError(400, "INVALID_REQUEST", message)


def to_json(value: Any) -> Any:
    """``ClusterView``'s dataclasses, named tuples and bytes as plain JSON values (objects, not lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_json(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return to_json(value._asdict())
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.json_response(to_json(value), status=status)


class ConsoleApi:
    """The ``/api`` routes over one ``ClusterView`` (and the ``Sampler`` watching the same cluster)."""

    def __init__(
        self,
        cluster: ClusterView,
        sampler: Sampler | None,
        executor: Executor,
        settings: ApiSettings,
    ) -> None:
        self._cluster = cluster
        self._sampler = sampler
        self._executor = executor
        self._settings = settings

    def routes(self) -> list[web.RouteDef]:
        """Every API route; changes are wrapped so that a read-only console refuses them."""
        change = self._change
        return [
            web.get("/api/config", self.config),
            web.get("/api/overview", self.overview),
            web.get("/api/metrics/rates", self.rates),
            web.get("/api/topics", self.list_topics),
            web.post("/api/topics", change(self.create_topic)),
            web.get("/api/topics/{name}", self.describe_topic),
            web.delete("/api/topics/{name}", change(self.delete_topic)),
            web.patch("/api/topics/{name}/configs", change(self.alter_topic_configs)),
            web.get("/api/topics/{name}/messages", self.browse),
            web.get("/api/topics/{name}/messages/export", self.export),
            web.get("/api/topics/{name}/messages/tail", self.tail),
            web.post("/api/topics/{name}/messages", change(self.produce)),
            web.get("/api/groups", self.list_groups),
            web.get("/api/groups/{id}", self.describe_group),
            web.get("/api/groups/{id}/lag-history", self.lag_history),
            # A dry run changes nothing, so a read-only console still previews; the handler guards the rest.
            web.post("/api/groups/{id}/reset-offsets", self.reset_offsets),
            web.get("/api/dlt", self.list_dlt_topics),
            web.get("/api/dlt/{topic}/records", self.dead_letters),
            web.post("/api/dlt/{topic}/replay", change(self.replay)),
        ]

    # -- cluster -------------------------------------------------------------------------------------------

    async def config(self, request: web.Request) -> web.Response:
        """What the page adapts to: whether changes are allowed and how to log in."""
        return json_response({"read_only": self._settings.read_only, "auth": self._settings.auth_scheme})

    async def overview(self, request: web.Request) -> web.Response:
        return json_response(await self._call(self._cluster.overview))

    async def rates(self, request: web.Request) -> web.Response:
        samples = [] if self._sampler is None else self._sampler.rates()
        return json_response({"samples": samples})

    # -- topics --------------------------------------------------------------------------------------------

    async def list_topics(self, request: web.Request) -> web.Response:
        search = request.query.get("search") or None
        include_internal = _flag(request.query, "internal", default=True)
        topics = await self._call(self._cluster.list_topics, search=search, include_internal=include_internal)
        return json_response(topics)

    async def create_topic(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        name = _required_str(body, "name")
        partitions = _int_field(body, "partitions", default=1, minimum=1)
        # -1 (the default) leaves the replication factor to the broker's default.replication.factor.
        replication_factor = _int_field(body, "replication_factor", default=-1, minimum=-1)
        if replication_factor == 0:
            raise invalid("replication_factor must be -1 (the broker's default) or at least 1")
        configs = _string_map(body.get("configs") or {}, "configs", allow_null=False)
        details = await self._call(self._cluster.create_topic, name, partitions, replication_factor, configs)
        return json_response(details, status=201)

    async def describe_topic(self, request: web.Request) -> web.Response:
        return json_response(await self._call(self._cluster.describe_topic, request.match_info["name"]))

    async def delete_topic(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await self._call(self._cluster.delete_topic, name)
        return json_response({"deleted": name})

    async def alter_topic_configs(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await _json_object(request)
        configs = _string_map(body.get("configs"), "configs", allow_null=True)
        if not configs:
            raise invalid("configs must name at least one config")
        return json_response(await self._call(self._cluster.alter_topic_configs, name, configs))

    # -- messages ------------------------------------------------------------------------------------------

    async def browse(self, request: web.Request) -> web.Response:
        options = _browse_options(request.query)
        return json_response(await self._call(self._cluster.browse, request.match_info["name"], **options))

    async def export(self, request: web.Request) -> web.Response:
        """The browsed messages as a JSON or CSV file download."""
        topic = request.match_info["name"]
        export_format = request.query.get("format", "json")
        if export_format not in EXPORT_FORMATS:
            raise invalid(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {export_format!r}")
        options = _browse_options(request.query)
        result = await self._call(self._cluster.browse, topic, **options)
        messages = to_json(result.messages)
        if export_format == "json":
            text = json.dumps(messages, indent=2)
            content_type = "application/json"
        else:
            text = messages_csv(messages)
            content_type = "text/csv"
        disposition = f'attachment; filename="{topic}-messages.{export_format}"'
        return web.Response(
            text=text,
            content_type=content_type,
            charset="utf-8",
            headers={"Content-Disposition": disposition},
        )

    async def tail(self, request: web.Request) -> web.Response:
        """A long poll: new messages after the given offsets, as soon as there are any or empty on timeout."""
        topic = request.match_info["name"]
        after = _partition_offsets(request.query.get("after", "{}"))
        filters = _filters(request.query)
        deadline = time.monotonic() + self._settings.tail_wait_s
        while True:
            result = await self._call(self._cluster.tail, topic, after, **filters)
            if result.messages or time.monotonic() >= deadline:
                return json_response(result)
            after = result.next_offsets  # partitions not named start at their end: keep that place
            await asyncio.sleep(min(TAIL_POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))

    async def produce(self, request: web.Request) -> web.Response:
        topic = request.match_info["name"]
        body = await _json_object(request)
        key = _optional_str(body, "key")
        value = _optional_str(body, "value")
        headers = _headers(body.get("headers") or [])
        partition = _optional_int(body, "partition", minimum=0)
        size = sum(len(text.encode()) for text in (key, value) if text is not None) + sum(
            len(name.encode()) + len((text or "").encode()) for name, text in headers
        )
        if size > self._settings.max_message_bytes:
            raise ConsoleError(
                413,
                "MESSAGE_TOO_LARGE",
                f"the message has {size} bytes, more than the {self._settings.max_message_bytes} allowed",
            )
        written = await self._call(self._cluster.produce, topic, key, value, headers, partition=partition)
        return json_response(written, status=201)

    # -- consumer groups -----------------------------------------------------------------------------------

    async def list_groups(self, request: web.Request) -> web.Response:
        return json_response(await self._call(self._cluster.list_groups))

    async def describe_group(self, request: web.Request) -> web.Response:
        return json_response(await self._call(self._cluster.describe_group, request.match_info["id"]))

    async def lag_history(self, request: web.Request) -> web.Response:
        group_id = request.match_info["id"]
        samples = [] if self._sampler is None else self._sampler.lag_history(group_id)
        return json_response({"group_id": group_id, "samples": samples})

    async def reset_offsets(self, request: web.Request) -> web.Response:
        group_id = request.match_info["id"]
        body = await _json_object(request)
        dry_run = body.get("dry_run", True)
        if not isinstance(dry_run, bool):
            raise invalid("dry_run must be true or false")
        if not dry_run:
            self._refuse_if_read_only()
        topic = _required_str(body, "topic")
        partitions = body.get("partitions")
        if partitions is not None and not (
            isinstance(partitions, list) and all(_is_int(p) and p >= 0 for p in partitions)
        ):
            raise invalid("partitions must be a list of partition numbers, or null for all")
        to = body.get("to", "earliest")
        if to not in RESET_TARGETS:
            raise invalid(f"to must be one of {', '.join(RESET_TARGETS)}, not {to!r}")
        value: Any = body.get("value")
        if to in ("offset", "timestamp", "shift"):
            if not _is_int(value):
                raise invalid(f"resetting to {to} needs an integer value")
            if to != "shift" and value < 0:
                raise invalid(f"the {to} to reset to cannot be negative")
        preview = await self._call(
            self._cluster.reset_group_offsets,
            group_id,
            topic,
            partitions=partitions,
            to=to,
            value=value,
            dry_run=dry_run,
        )
        return json_response({"dry_run": dry_run, "offsets": preview})

    # -- dead letters --------------------------------------------------------------------------------------

    async def list_dlt_topics(self, request: web.Request) -> web.Response:
        return json_response(await self._call(self._cluster.list_dlt_topics))

    async def dead_letters(self, request: web.Request) -> web.Response:
        limit = _int_param(request.query, "limit", DEFAULT_DLT_LIMIT, minimum=1, maximum=MAX_BROWSE_LIMIT)
        return json_response(await self._call(self._cluster.dead_letters, request.match_info["topic"], limit))

    async def replay(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        to_topic = _optional_str(body, "to_topic") or None
        if body.get("all") is True:
            selection: Any = "all"
        else:
            records = body.get("records")
            if not isinstance(records, list) or not records:
                raise invalid('say which records to replay: {"all": true} or {"records": [...]}')
            selection = [_record_position(record) for record in records]
        result = await self._call(
            self._cluster.replay_dead_letters, request.match_info["topic"], selection, to_topic=to_topic
        )
        return json_response(result)

    # -- plumbing ------------------------------------------------------------------------------------------

    async def _call(self, function: Callable[..., ResultT], *args: Any, **kwargs: Any) -> ResultT:
        """Run a blocking ``ClusterView`` call in the thread pool, keeping the event loop free."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(function, *args, **kwargs))

    def _change(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            self._refuse_if_read_only()
            return await handler(request)

        guarded.__doc__ = handler.__doc__
        return guarded

    def _refuse_if_read_only(self) -> None:
        if self._settings.read_only:
            raise ConsoleError(
                403, "READ_ONLY", "this console is read-only: it changes nothing in the cluster"
            )


def messages_csv(messages: list[dict[str, Any]]) -> str:
    """Messages as CSV, one column per field in first-seen order: objects spread into ``field.part``
    columns (``key.encoding``, ``key.text``), lists (the headers) as JSON text."""
    rows = [_flat_row(message) for message in messages]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _flat_row(message: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, value in message.items():
        if isinstance(value, Mapping):
            row.update(_flat_row(value, f"{prefix}{name}."))
        else:
            row[f"{prefix}{name}"] = json.dumps(value) if isinstance(value, list) else value
    return row


# -- query parameters ----------------------------------------------------------------------------------------


def _browse_options(query: Mapping[str, str]) -> dict[str, Any]:
    """``ClusterView.browse`` keyword arguments from the messages endpoints' query string."""
    start = query.get("start") or "earliest"
    if start not in START_POSITIONS:
        raise invalid(f"start must be one of {', '.join(START_POSITIONS)}, not {start!r}")
    partition_text = query.get("partition", "")
    partition = (
        None
        if partition_text in ("", "all")
        else _int_param(query, "partition", None, minimum=0, maximum=None)
    )
    offset = _int_param(query, "offset", None, minimum=0, maximum=None)
    if start == "offset" and offset is None:
        raise invalid("start=offset needs an offset")
    timestamp_ms = _timestamp_param(query.get("timestamp", ""))
    if start == "timestamp" and timestamp_ms is None:
        raise invalid("start=timestamp needs a timestamp (epoch milliseconds or ISO 8601)")
    return {
        "partition": partition,
        "start": start,
        "offset": offset,
        "timestamp_ms": timestamp_ms,
        "limit": _int_param(query, "limit", DEFAULT_BROWSE_LIMIT, minimum=1, maximum=MAX_BROWSE_LIMIT),
        **_filters(query),
    }


def _filters(query: Mapping[str, str]) -> dict[str, str | None]:
    """The key, value and header text filters of the messages endpoints (empty: no filter)."""
    return {
        "key_filter": query.get("key") or None,
        "value_filter": query.get("value") or None,
        "header_filter": query.get("header") or None,
    }


def _int_param(
    query: Mapping[str, str], name: str, default: int | None, *, minimum: int, maximum: int | None
) -> Any:
    text = query.get(name, "")
    if text == "":
        return default
    try:
        number = int(text)
    except ValueError:
        raise invalid(f"{name} must be an integer, not {text!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise invalid(f"{name} must be {bound}, not {number}")
    return number


def _timestamp_param(text: str) -> int | None:
    """Epoch milliseconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    if text == "":
        return None
    if text.lstrip("-").isdigit():
        millis = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise invalid(f"timestamp must be epoch milliseconds or ISO 8601, not {text!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        millis = int(moment.timestamp() * 1000)
    if millis < 0:
        raise invalid(f"timestamp cannot be before 1970, got {text!r}")
    return millis


def _flag(query: Mapping[str, str], name: str, *, default: bool) -> bool:
    text = query.get(name, "")
    if text == "":
        return default
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise invalid(f"{name} must be 1 or 0, not {text!r}")


def _partition_offsets(text: str) -> dict[int, int]:
    """The ``after`` of a live tail: a JSON object of partition -> next offset to read."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise invalid("after must be a JSON object of partition to offset") from None
    if not isinstance(raw, dict):
        raise invalid("after must be a JSON object of partition to offset")
    offsets: dict[int, int] = {}
    for partition, offset in raw.items():
        if not (partition.isdigit() and _is_int(offset) and offset >= 0):
            raise invalid(f"after: {partition!r}: {offset!r} is not a partition and an offset")
        offsets[int(partition)] = offset
    return offsets


# -- request bodies ------------------------------------------------------------------------------------------


async def _json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object. Only ``application/json`` is read: a browser sends that type cross-site only
    after a CORS preflight, which the console never grants, so no other web page can post to it (CSRF)."""
    if request.content_type != "application/json":
        raise ConsoleError(
            415, "UNSUPPORTED_MEDIA_TYPE", "send the request body as JSON with Content-Type: application/json"
        )
    try:
        body = await request.json()
    except ValueError:
        raise invalid("the request body must be JSON") from None
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    return body


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _required_str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise invalid(f"{name} must be a non-empty string")
    return value


def _optional_str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise invalid(f"{name} must be a string or null")
    return value


def _int_field(body: Mapping[str, Any], name: str, *, default: int, minimum: int) -> int:
    value = body.get(name, default)
    if not _is_int(value) or value < minimum:
        raise invalid(f"{name} must be an integer of at least {minimum}")
    result: int = value
    return result


def _optional_int(body: Mapping[str, Any], name: str, *, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value) or value < minimum:
        raise invalid(f"{name} must be an integer of at least {minimum}, or null")
    result: int = value
    return result


def _string_map(value: Any, name: str, *, allow_null: bool) -> dict[str, str | None]:
    if not isinstance(value, dict):
        raise invalid(f"{name} must be a JSON object of string values")
    for key, item in value.items():
        if not (isinstance(item, str) or (allow_null and item is None)):
            allowed = "a string or null" if allow_null else "a string"
            raise invalid(f"{name}: the value of {key!r} must be {allowed}")
    return dict(value)


def _headers(value: Any) -> list[tuple[str, str | None]]:
    if not isinstance(value, list):
        raise invalid("headers must be a list of [name, value] pairs")
    headers: list[tuple[str, str | None]] = []
    for pair in value:
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and (pair[1] is None or isinstance(pair[1], str))
        ):
            raise invalid(f"headers: {pair!r} is not a [name, value] pair of strings")
        headers.append((pair[0], pair[1]))
    return headers


def _record_position(record: Any) -> tuple[int, int]:
    if not (
        isinstance(record, dict)
        and _is_int(record.get("partition"))
        and _is_int(record.get("offset"))
        and record["partition"] >= 0
        and record["offset"] >= 0
    ):
        raise invalid(f"records: {record!r} is not a {{partition, offset}} position")
    return record["partition"], record["offset"]
