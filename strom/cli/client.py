"""What every client command shares: how to reach the cluster, how to build clients, how to report failures.

The client commands talk to a cluster only through confluent-kafka, so they work against Apache Kafka as well
as Strom. librdkafka logs connection failures on stderr by itself; those lines are routed into a Python logger
that stays silent unless ``--verbose`` is given, so a user mistake ends in one ``error:`` line.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

from strom.cli.errors import CliError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
BOOTSTRAP_ENV = "STROM_BOOTSTRAP"
DEFAULT_TIMEOUT_S = 10.0
CLIENT_ID = "strom-cli"

# A future that librdkafka was told to time out after --timeout gets this much longer before we give up on it.
_FUTURE_GRACE_S = 5.0
_UNREACHABLE_CODES = frozenset({KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN})
_CLIENT_LOGGER_NAME = "strom.cli.kafka_client"

ClientT = TypeVar("ClientT")
ResultT = TypeVar("ResultT")


def key_value(text: str) -> tuple[str, str]:
    """argparse type for ``key=value`` options; the value may itself contain ``=``."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def positive_int(text: str) -> int:
    """argparse type for counts that must be at least 1 (partitions, replication factor, --count)."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return number


def non_negative_int(text: str) -> int:
    """argparse type for partition numbers and offsets."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return number


def add_client_arguments(parser: argparse.ArgumentParser, *, timeout_help: str | None = None) -> None:
    """Add the options that say how to reach the cluster; every client command takes them."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "-b",
        "--bootstrap-server",
        default=os.environ.get(BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP),
        metavar="HOST:PORT[,...]",
        help=f"broker(s) to connect to (default: ${BOOTSTRAP_ENV} or {DEFAULT_BOOTSTRAP})",
    )
    group.add_argument(
        "-X",
        dest="client_properties",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="raw librdkafka client property, e.g. -X security.protocol=SSL (repeatable)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=timeout_help or f"how long to wait for the cluster (default: {DEFAULT_TIMEOUT_S:g})",
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", help="print the client library's log lines on stderr"
    )


def client_config(args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka configuration for this invocation: our defaults, then the user's ``-X`` properties."""
    config: dict[str, Any] = {
        "bootstrap.servers": args.bootstrap_server,
        "client.id": CLIENT_ID,
        "logger": _client_logger(args.verbose),
    }
    config.update(defaults or {})
    config.update(dict(args.client_properties))
    return config


def create_client(factory: Callable[[dict[str, Any]], ClientT], config: dict[str, Any]) -> ClientT:
    """Build a Producer, Consumer or AdminClient, turning a bad ``-X`` property into a CliError."""
    try:
        return factory(config)
    except KafkaException as exc:
        raise CliError(f"invalid client configuration: {kafka_error_text(exc)}") from None
    except (TypeError, ValueError) as exc:
        raise CliError(f"invalid client configuration: {exc}") from None


def print_error(message: str) -> None:
    """One ``error:`` line on stderr, for failures that do not stop the whole command."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def print_warning(message: str) -> None:
    """One ``warning:`` line on stderr, for trouble the command works around."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def kafka_error_text(error: KafkaError | BaseException) -> str:
    """``NAME: description`` for a KafkaError (or a KafkaException carrying one), as users see it."""
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        error = error.args[0]
    if isinstance(error, KafkaError):
        return f"{error.name()}: {error.str()}"
    return str(error)


def kafka_error_of(exc: BaseException) -> KafkaError | None:
    """The KafkaError inside a KafkaException, if there is one."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def fetch_metadata(
    client: Any, args: argparse.Namespace, topic: str | None = None, timeout: float | None = None
) -> Any:
    """Cluster metadata, or a CliError saying the cluster could not be reached in time.

    Every command starts with this call, so a wrong address fails fast with a clear message instead of
    librdkafka retrying in the background. ``timeout`` defaults to ``--timeout``.
    """
    timeout = args.timeout if timeout is None else timeout
    try:
        return client.list_topics(topic=topic, timeout=timeout)
    except KafkaException as exc:
        error = kafka_error_of(exc)
        if error is not None and error.code() in _UNREACHABLE_CODES:
            raise CliError(
                f"could not reach the cluster at {args.bootstrap_server} within {timeout:g} s ({error.str()})"
            ) from None
        raise CliError(f"cannot read cluster metadata: {kafka_error_text(exc)}") from None


def wait_future(future: concurrent.futures.Future[ResultT], args: argparse.Namespace) -> ResultT:
    """Result of an admin future that librdkafka was told to time out after ``--timeout``.

    Raises KafkaException for a per-resource failure (the caller words it), CliError if even librdkafka's
    own deadline passed without an answer.
    """
    try:
        return future.result(timeout=args.timeout + _FUTURE_GRACE_S)
    except concurrent.futures.TimeoutError:
        raise CliError(f"no answer from the cluster within {args.timeout:g} s") from None


def _client_logger(verbose: bool) -> logging.Logger:
    """A logger for librdkafka's log lines: silent by default, on stderr with ``--verbose``."""
    logger = logging.getLogger(_CLIENT_LOGGER_NAME)
    logger.propagate = False
    handler: logging.Handler = logging.StreamHandler(sys.stderr) if verbose else logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    return logger
