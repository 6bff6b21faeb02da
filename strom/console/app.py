"""The console's aiohttp application: the JSON API, its documentation, the pages, and who may use them.

``create_app`` wires a ``ClusterView`` into the routes of ``strom.console.api`` and adds what every request
shares: optional authentication (a bearer token or HTTP basic credentials, checked on ``/api`` only, so the
page and its login form always load), errors as JSON, and the static files of the page at ``/``.
``serve_console`` runs such an app until told to stop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hmac
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Middleware

from strom.console.api import ApiSettings, ConsoleApi
from strom.console.cluster import ClusterView, ConsoleError
from strom.console.metrics import Sampler
from strom.console.openapi import openapi_routes

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
API_PREFIX = "/api/"
# Reachable without credentials: what the page needs to offer its login form, and the API's description.
PUBLIC_API_PATHS = frozenset({"/api/config", "/api/openapi.json", "/api/docs"})
# Enough threads for a few browsers' concurrent calls, including long-polling live tails.
CLUSTER_THREADS = 16
# A produce request carries its message as JSON text, so it may be larger than the message it describes.
REQUEST_BODY_FACTOR = 4
_CONTENT_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
# The status codes aiohttp raises by itself, by the error code the API reports for them.
_HTTP_ERROR_CODES = {
    400: "INVALID_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "MESSAGE_TOO_LARGE",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Credentials:
    """What a caller must present: ``Authorization: Bearer <token>``, or ``Basic`` with ``user:password``."""

    scheme: Literal["bearer", "basic"]
    secret: str

    @classmethod
    def token(cls, token: str) -> Credentials:
        if not token:
            raise ValueError("the token cannot be empty")
        return cls("bearer", token)

    @classmethod
    def basic(cls, user_and_password: str) -> Credentials:
        user, separator, password = user_and_password.partition(":")
        if not separator or not user or not password:
            raise ValueError("basic auth must be given as user:password")
        return cls("basic", user_and_password)

    def accepts(self, authorization: str) -> bool:
        """Whether an ``Authorization`` header value carries these credentials (compared in constant time)."""
        scheme, _, presented = authorization.strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != self.scheme or not presented:
            return False
        if self.scheme == "basic":
            try:
                presented = base64.b64decode(presented, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
        return hmac.compare_digest(presented.encode(), self.secret.encode())

    def challenge(self, request: web.Request) -> str | None:
        """The ``WWW-Authenticate`` of a 401. The page's own fetches get no Basic challenge, which would make
        the browser open its login dialog over the page's login form."""
        if self.scheme == "bearer":
            return 'Bearer realm="Strom console"'
        scripted = request.headers.get("Sec-Fetch-Mode", "navigate") != "navigate"
        return None if scripted else 'Basic realm="Strom console", charset="UTF-8"'


def create_app(
    cluster: ClusterView,
    *,
    sampler: Sampler | None = None,
    settings: ApiSettings | None = None,
    credentials: Credentials | None = None,
    static_dir: Path = STATIC_DIR,
) -> web.Application:
    """The console as an aiohttp application; it closes its thread pool, not the cluster, on cleanup."""
    # The page learns from /api/config how to log in: the credentials decide, whatever the settings say.
    settings = dataclasses.replace(
        settings or ApiSettings(), auth_scheme=None if credentials is None else credentials.scheme
    )
    app = web.Application(
        middlewares=[_errors_as_json, _authentication(credentials)],
        client_max_size=settings.max_message_bytes * REQUEST_BODY_FACTOR,
    )
    executor = ThreadPoolExecutor(max_workers=CLUSTER_THREADS, thread_name_prefix="strom-console")
    app.add_routes(ConsoleApi(cluster, sampler, executor, settings).routes())
    app.add_routes(openapi_routes())
    app.add_routes(_static_routes(static_dir))
    app.on_response_prepare.append(_common_headers)

    async def shut_down_threads(_: web.Application) -> None:
        executor.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(shut_down_threads)
    return app


async def serve_console(
    app: web.Application,
    host: str,
    port: int,
    stop: asyncio.Event,
    on_listening: Callable[[str, int], None],
) -> None:
    """Serve ``app`` on host:port until ``stop`` is set; ``on_listening(host, bound port)`` once it accepts
    connections. Raises OSError when the address cannot be bound."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        on_listening(host, runner.addresses[0][1])
        await stop.wait()
    finally:
        await runner.cleanup()


def error_response(status: int, code: str, message: str) -> web.Response:
    """The API's one error shape."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure under ``/api`` as ``{"error": {"code", "message"}}``; the pages keep aiohttp's own."""
    try:
        return await handler(request)
    except ConsoleError as exc:
        return error_response(exc.http_status, exc.code, exc.message)
    except web.HTTPException as exc:
        if not request.path.startswith(API_PREFIX) or exc.status < 400:
            raise
        code = _HTTP_ERROR_CODES.get(exc.status, f"HTTP_{exc.status}")
        response = error_response(exc.status, code, exc.reason)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return error_response(500, "UNKNOWN_SERVER_ERROR", "the console failed; its log says why")


def _authentication(credentials: Credentials | None) -> Middleware:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        """A 401 for API calls without the right credentials (the pages themselves are public)."""
        if (
            credentials is None
            or not request.path.startswith(API_PREFIX)
            or request.path in PUBLIC_API_PATHS
            or credentials.accepts(request.headers.get("Authorization", ""))
        ):
            return await handler(request)
        presented = "Authorization" in request.headers
        response = error_response(
            401,
            "UNAUTHORIZED",
            "wrong credentials"
            if presented
            else f"log in first: this console needs {credentials.scheme} auth",
        )
        challenge = credentials.challenge(request)
        if challenge:
            response.headers["WWW-Authenticate"] = challenge
        return response

    return authenticate


def _static_routes(static_dir: Path) -> list[web.RouteDef]:
    """The page's files, from the static folder only; ``/`` is its index.html."""
    root = static_dir.resolve()

    async def static_file(request: web.Request) -> web.StreamResponse:
        relative = request.match_info.get("path") or "index.html"
        path = (root / relative).resolve()
        if relative.startswith("api/") or not path.is_relative_to(root) or not path.is_file():
            raise web.HTTPNotFound()
        headers = {"Cache-Control": "no-cache"}
        content_type = _CONTENT_TYPES.get(path.suffix)
        if content_type:
            headers["Content-Type"] = content_type
        return web.FileResponse(path, headers=headers)

    return [web.get("/", static_file), web.get("/{path:.+}", static_file)]


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.path.startswith(API_PREFIX):
        response.headers.setdefault("Cache-Control", "no-store")
