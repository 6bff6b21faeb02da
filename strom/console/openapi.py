"""The console API described for people and tools: an OpenAPI 3 document and a page that renders it.

The document is written out by hand, so it reads as the API's reference; a test checks that it names
exactly the routes the app serves. ``/api/docs`` is rendered on the server from the same
document, so it needs no script and no build.
"""

from __future__ import annotations

import html
import json
from typing import Any

from aiohttp import web

from strom import __version__

JSON = "application/json"
_ERROR_STATUSES = {
    "400": "Invalid input (INVALID_REQUEST) or a request the cluster refused",
    "401": "Missing or wrong credentials (UNAUTHORIZED)",
    "403": "A read-only console (READ_ONLY), or the cluster denies it",
    "404": "No such topic (UNKNOWN_TOPIC_OR_PARTITION), group or dead letter",
    "409": "Conflict: the topic exists (TOPIC_ALREADY_EXISTS), the group has members (NON_EMPTY_GROUP)",
    "413": "The message is larger than allowed (MESSAGE_TOO_LARGE)",
    "415": "A request body that is not Content-Type: application/json (UNSUPPORTED_MEDIA_TYPE)",
}


def _param(name: str, where: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _body(description: str, example: Any) -> dict[str, Any]:
    return {"required": True, "description": description, "content": {JSON: {"example": example}}}


def _operation(
    summary: str,
    *errors: str,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    ok: str = "200",
    ok_description: str = "Success",
    ok_type: str = JSON,
) -> dict[str, Any]:
    responses: dict[str, Any] = {ok: {"description": ok_description, "content": {ok_type: {}}}}
    for status in ("401", *errors):
        responses[status] = {"$ref": f"#/components/responses/E{status}"}
    operation: dict[str, Any] = {"summary": summary, "parameters": parameters or [], "responses": responses}
    if body is not None:
        operation["requestBody"] = body
        responses["415"] = {"$ref": "#/components/responses/E415"}
    return operation


_TOPIC = _param("name", "path", "Topic name")
_GROUP = _param("id", "path", "Consumer group id")
_DLT = _param("topic", "path", "Dead-letter topic name")
_INT = {"type": "integer"}
_FILTERS = [
    _param("partition", "query", "One partition; all when absent", _INT),
    _param("start", "query", "Where to start", {"enum": ["earliest", "latest", "offset", "timestamp"]}),
    _param("offset", "query", "Offset to start at (start=offset)", _INT),
    _param("timestamp", "query", "Epoch milliseconds or ISO 8601 time to start at (start=timestamp)"),
    _param("limit", "query", "At most this many messages (1-1000, default 100)", _INT),
    _param("key", "query", "Keep messages whose key contains this text (any case)"),
    _param("value", "query", "Keep messages whose value contains this text (any case)"),
    _param("header", "query", "Keep messages with a header whose name or value contains this text"),
]

PATHS: dict[str, dict[str, Any]] = {
    "/api/config": {
        "get": _operation("The console's settings for its page: read_only, and auth (bearer, basic or null)")
    },
    "/api/overview": {"get": _operation("Brokers (id, host, port, rack, controller), cluster id and totals")},
    "/api/metrics/rates": {
        "get": _operation(
            'Message in/out rates over the last minutes: {"samples": [{t, in_per_s, out_per_s}]}'
        )
    },
    "/api/topics": {
        "get": _operation(
            "Topics with partitions, replication factor, messages, size and whether internal",
            "400",
            parameters=[
                _param("search", "query", "Keep topics whose name contains this text (any case)"),
                _param("internal", "query", "1 (default) to include internal topics, 0 to leave them out"),
            ],
        ),
        "post": _operation(
            "Create a topic; answers its description",
            "400",
            "403",
            "409",
            ok="201",
            body=_body(
                "replication_factor -1 or absent: the broker's default",
                {
                    "name": "orders",
                    "partitions": 3,
                    "replication_factor": 1,
                    "configs": {"retention.ms": "1000"},
                },
            ),
        ),
    },
    "/api/topics/{name}": {
        "get": _operation(
            "A topic's partitions (leader, replicas, isr, start and end offsets) and configs",
            "404",
            parameters=[_TOPIC],
        ),
        "delete": _operation("Delete a topic", "403", "404", parameters=[_TOPIC]),
    },
    "/api/topics/{name}/configs": {
        "patch": _operation(
            "Set configs, or return them to their default with null; answers the topic's description",
            "400",
            "403",
            "404",
            parameters=[_TOPIC],
            body=_body("Configs to change", {"configs": {"retention.ms": "1000", "cleanup.policy": None}}),
        )
    },
    "/api/topics/{name}/messages": {
        "get": _operation(
            "Browse messages without a consumer group: {messages, next_offsets}",
            "400",
            "404",
            parameters=[_TOPIC, *_FILTERS],
        ),
        "post": _operation(
            "Produce one message; answers its partition and offset",
            "400",
            "403",
            "404",
            "413",
            ok="201",
            parameters=[_TOPIC],
            body=_body(
                "key, value and header values: UTF-8 text or null; partition null lets the producer choose",
                {
                    "key": "order-1",
                    "value": '{"total": 3}',
                    "headers": [["source", "console"]],
                    "partition": None,
                },
            ),
        ),
    },
    "/api/topics/{name}/messages/export": {
        "get": _operation(
            "The browsed messages as a JSON or CSV file",
            "400",
            "404",
            ok_description="An attachment",
            ok_type="text/csv",
            parameters=[_TOPIC, _param("format", "query", "json (default) or csv"), *_FILTERS],
        )
    },
    "/api/topics/{name}/messages/tail": {
        "get": _operation(
            "Live tail: messages after the given offsets, answered as soon as there are any (at most ~5 s)",
            "400",
            "404",
            parameters=[
                _TOPIC,
                _param("after", "query", 'JSON object of partition to next offset, e.g. {"0": 42}'),
                *_FILTERS[5:],
            ],
        )
    },
    "/api/groups": {"get": _operation("Consumer groups with state, members, topics and total lag")},
    "/api/groups/{id}": {
        "get": _operation(
            "A group's members with assignments, and per partition committed offset, end and lag",
            "404",
            parameters=[_GROUP],
        )
    },
    "/api/groups/{id}/lag-history": {
        "get": _operation(
            "The group's total lag over the last minutes: {group_id, samples}", parameters=[_GROUP]
        )
    },
    "/api/groups/{id}/reset-offsets": {
        "post": _operation(
            "Preview (dry_run, the default) or apply an offset reset: {dry_run, offsets: [{topic, partition, "
            "current, new}]}; refused while the group has members",
            "400",
            "403",
            "404",
            "409",
            parameters=[_GROUP],
            body=_body(
                "to: earliest, latest, offset, timestamp (epoch ms), shift (by value); partitions null: all",
                {"topic": "orders", "partitions": None, "to": "offset", "value": 10, "dry_run": True},
            ),
        )
    },
    "/api/dlt": {"get": _operation("Dead-letter topics (names ending .DLT or -dlt)")},
    "/api/dlt/{topic}/records": {
        "get": _operation(
            "Dead letters with their failure headers decoded",
            "400",
            "404",
            parameters=[_DLT, _param("limit", "query", "At most this many (1-1000, default 100)", _INT)],
        )
    },
    "/api/dlt/{topic}/replay": {
        "post": _operation(
            "Republish dead letters to their original topic, or to_topic; answers {replayed, failed}",
            "400",
            "403",
            "404",
            parameters=[_DLT],
            body=_body(
                '{"all": true}, or records by position',
                {"records": [{"partition": 0, "offset": 5}], "to_topic": None},
            ),
        )
    },
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3 description of the console API."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Strom console API",
            "version": __version__,
            "description": "Browse and manage a Kafka cluster. Errors are "
            '{"error": {"code": "<Kafka error name or INVALID_REQUEST, READ_ONLY, ...>", "message": "..."}}. '
            "When the console was started with --token or --basic-auth, send Authorization: Bearer <token> "
            "or Basic credentials.",
        },
        "paths": PATHS,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
            "responses": {
                f"E{status}": {"description": description, "content": {JSON: {}}}
                for status, description in _ERROR_STATUSES.items()
            },
        },
    }


def docs_page(document: dict[str, Any]) -> str:
    """A plain HTML reference of the document: one section per route, its parameters and example body."""
    escape = html.escape
    sections = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parameters = "".join(
                f"<li><code>{escape(p['name'])}</code> ({escape(p['in'])}): {escape(p['description'])}</li>"
                for p in operation["parameters"]
            )
            body = operation.get("requestBody")
            example = (
                f"<pre>{escape(json.dumps(body['content'][JSON]['example'], indent=2))}</pre>"
                f"<p>{escape(body['description'])}</p>"
                if body
                else ""
            )
            statuses = ", ".join(escape(status) for status in operation["responses"])
            sections.append(
                f"<section><h2><span class=method>{method.upper()}</span> <code>{escape(path)}</code></h2>"
                f"<p>{escape(operation['summary'])}</p>"
                f"{f'<ul>{parameters}</ul>' if parameters else ''}{example}"
                f"<p class=statuses>Statuses: {statuses}</p></section>"
            )
    info = document["info"]
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(info['title'])}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
        "section{border-top:1px solid #ddd;padding:.5rem 0}h2{font-size:1.05rem}"
        ".method{display:inline-block;min-width:4.5rem;color:#0b5}pre{background:#f4f4f4;padding:.5rem}"
        ".statuses{color:#666;font-size:.9rem}</style></head><body>"
        f"<h1>{escape(info['title'])} {escape(info['version'])}</h1><p>{escape(info['description'])}</p>"
        '<p>Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a></p>'
        f"{''.join(sections)}</body></html>"
    )


def openapi_routes() -> list[web.RouteDef]:
    """``/api/openapi.json`` and ``/api/docs``."""
    document = openapi_document()
    page = docs_page(document)

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(document)

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    return [web.get("/api/openapi.json", openapi_json), web.get("/api/docs", docs)]
