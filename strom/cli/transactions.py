"""``strom transactions``: list and describe transactional ids, as Kafka's ``kafka-transactions.sh`` does.

confluent-kafka's AdminClient has no ListTransactions, DescribeTransactions or DescribeProducers, so these
commands (and ``strom producers``, which shares `RawAdminClient`) send them with Strom's raw protocol client,
on plaintext listeners only. They route requests the way Kafka's admin client does: ListTransactions goes to
every broker, because each lists only the ids it coordinates, and DescribeTransactions to the id's
coordinator, found with FindCoordinator. Only the protocol is used, so they work against Apache Kafka too.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self, TypeVar

from strom.cli.client import add_client_arguments, non_negative_int, print_error, print_warning
from strom.cli.errors import CliError
from strom.cli.output import MISSING, format_table, print_json
from strom.protocol.client import BrokerConnection, BrokerConnectionError, UnsupportedApiError
from strom.protocol.errors import ErrorCode
from strom.protocol.messages import describe_transactions, find_coordinator, list_transactions, metadata

TRANSACTION_KEY_TYPE = 1
_KEY_KINDS = {0: "group", TRANSACTION_KEY_TYPE: "transactional id"}
# Kafka's transaction state names (its admin API's TransactionState), so --state may be given in any case.
KAFKA_TRANSACTION_STATES = (
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "PrepareEpochFence",
    "Dead",
)
_STATES_BY_LOWER_NAME = {name.lower(): name for name in KAFKA_TRANSACTION_STATES}
# States with no transaction open. Their start time is the last transaction's, so no duration is shown for
# them (Kafka's tool shows one, a known flaw: KAFKA-15546).
_NO_OPEN_TRANSACTION_STATES = frozenset({"Empty", "CompleteCommit", "CompleteAbort", "Dead"})
# ListTransactions v1 (KIP-994) added the duration filter; v0 brokers cannot apply it.
_DURATION_FILTER_VERSION = 1
# Metadata v4 is the first that can be told not to create the topics it is asked about.
_METADATA_MIN_VERSION = 4
# FindCoordinator v1 is the first with a key type; v4 (KIP-699) asks for a list of keys instead of one.
_FIND_COORDINATOR_MIN_VERSION = 1
_FIND_COORDINATOR_BATCHED_VERSION = 4
_DEFAULT_PORT = 9092

Address = tuple[str, int]
Partition = tuple[str, int]
T = TypeVar("T")


# ------------------------------------------------------------------------------------------- the wire


@dataclass(frozen=True)
class Broker:
    """A broker as Metadata or FindCoordinator names it."""

    node_id: int
    host: str
    port: int

    @property
    def address(self) -> Address:
        return self.host, self.port

    def __str__(self) -> str:
        return f"{self.node_id} ({self.host}:{self.port})"


class RawAdminClient:
    """Admin requests over Strom's raw protocol client, to the brokers that must answer them, within one
    deadline (``--timeout``).

    It does for the APIs confluent-kafka lacks what Kafka's admin client does: asks the bootstrap brokers
    for Metadata and coordinators, negotiates versions, and leaves callers a back-off that ends at the
    deadline for errors that go away by themselves. One connection per broker lives as long as the client.
    """

    CLIENT_ID = "strom-cli"
    RETRY_BACKOFF_S = 0.2
    # Errors from a coordinator that is moving, starting or loading: ask again, perhaps elsewhere.
    COORDINATOR_RETRIABLE = frozenset(
        {
            ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
            ErrorCode.COORDINATOR_NOT_AVAILABLE,
            ErrorCode.NOT_COORDINATOR,
        }
    )

    def __init__(self, bootstrap: Sequence[Address], timeout: float, *, bootstrap_text: str = "") -> None:
        self._bootstrap = list(bootstrap)
        self._bootstrap_text = bootstrap_text or ",".join(f"{host}:{port}" for host, port in bootstrap)
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self._connections: dict[Address, BrokerConnection] = {}

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Self:
        """The client for ``--bootstrap-server`` and ``--timeout``; refuses listeners it cannot speak to."""
        protocol = dict(args.client_properties).get("security.protocol", "plaintext")
        if protocol.lower() != "plaintext":
            raise CliError(
                f"this command speaks only to plaintext listeners, not security.protocol={protocol}"
            )
        return cls(parse_bootstrap(args.bootstrap_server), args.timeout, bootstrap_text=args.bootstrap_server)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    # ----------------------------------------------------------------------------------------- requests

    def negotiate(self, address: Address, api_key: int, *, oldest: int | None = None) -> int:
        """The version of ``api_key`` to use with the broker at ``address`` (UnsupportedApiError if none)."""
        return self._request(address, lambda connection: connection.negotiate(api_key, oldest=oldest))

    def call(self, address: Address, api_key: int, version: int, request: Any) -> Any:
        """Send one request to the broker at ``address`` and return its decoded response."""
        return self._request(address, lambda connection: connection.call(api_key, version, request))

    def metadata(self, topics: Sequence[str] = ()) -> Any:
        """A bootstrap broker's MetadataResponse for ``topics`` (none: only brokers); creates no topic."""
        address, version = self._bootstrap_broker(metadata.API_KEY, oldest=_METADATA_MIN_VERSION)
        request = metadata.MetadataRequest(
            topics=[metadata.MetadataRequest.MetadataRequestTopic(name=name) for name in topics],
            allow_auto_topic_creation=False,
        )
        return self.call(address, metadata.API_KEY, version, request)

    def brokers(self, response: Any | None = None) -> dict[int, Broker]:
        """The cluster's brokers by node id, from a MetadataResponse (a fresh one if not given)."""
        response = self.metadata() if response is None else response
        return {
            broker.node_id: Broker(broker.node_id, broker.host, broker.port) for broker in response.brokers
        }

    def find_coordinator(self, key: str, key_type: int) -> Broker:
        """The coordinator of a group (key type 0) or transactional id (1), asked until the deadline while
        the cluster answers that it is not available yet."""
        what = f"{_KEY_KINDS.get(key_type, 'key')} '{key}'"
        while True:
            answer = self._ask_for_coordinator(key, key_type)
            error = ErrorCode.from_code(answer.error_code)
            if error == ErrorCode.NONE:
                return Broker(answer.node_id, answer.host, answer.port)
            reason = f"cannot find the coordinator of {what}: {error_text(error)}"
            if error not in self.COORDINATOR_RETRIABLE:
                raise CliError(reason)
            self.back_off(reason)

    # ------------------------------------------------------------------------------------------- retries

    def wait_to_retry(self) -> bool:
        """Sleep one back-off and return True, or return False at once if the deadline would pass first."""
        if time.monotonic() + self.RETRY_BACKOFF_S >= self._deadline:
            return False
        time.sleep(self.RETRY_BACKOFF_S)
        return True

    def back_off(self, reason: str) -> None:
        """Sleep one back-off before retrying; a CliError with ``reason`` if the deadline would pass first."""
        if not self.wait_to_retry():
            raise CliError(reason)

    # ------------------------------------------------------------------------------------------ plumbing

    def _ask_for_coordinator(self, key: str, key_type: int) -> Any:
        """FindCoordinator's answer (error_code, node_id, host, port) for one key, from a bootstrap broker."""
        address, version = self._bootstrap_broker(
            find_coordinator.API_KEY, oldest=_FIND_COORDINATOR_MIN_VERSION
        )
        if version >= _FIND_COORDINATOR_BATCHED_VERSION:
            request = find_coordinator.FindCoordinatorRequest(key_type=key_type, coordinator_keys=[key])
        else:
            request = find_coordinator.FindCoordinatorRequest(key=key, key_type=key_type)
        response = self.call(address, find_coordinator.API_KEY, version, request)
        if version < _FIND_COORDINATOR_BATCHED_VERSION:
            return response
        if len(response.coordinators) != 1:
            raise CliError(
                f"{address[0]}:{address[1]} answered FindCoordinator for one key with "
                f"{len(response.coordinators)} coordinators"
            )
        return response.coordinators[0]

    def _bootstrap_broker(self, api_key: int, *, oldest: int | None = None) -> tuple[Address, int]:
        """The first bootstrap broker that can be reached, and the version of ``api_key`` to send it."""
        unreachable: BrokerConnectionError | None = None
        for address in self._bootstrap:
            try:
                return address, self.negotiate(address, api_key, oldest=oldest)
            except BrokerConnectionError as exc:
                unreachable = exc
        raise CliError(
            f"could not reach the cluster at {self._bootstrap_text} within {self._timeout:g} s "
            f"({unreachable})"
        )

    def _request(self, address: Address, exchange: Callable[[BrokerConnection], T]) -> T:
        """Run ``exchange(connection)`` on the broker's connection with the time left; a connection that
        failed is dropped, so the next request to that broker opens a new one."""
        connection = self._connections.get(address)
        if connection is None:
            connection = BrokerConnection(*address, timeout=self._remaining(), client_id=self.CLIENT_ID)
            self._connections[address] = connection
        else:
            connection.sock.settimeout(self._remaining())
        try:
            return exchange(connection)
        except BrokerConnectionError:
            del self._connections[address]
            connection.close()
            raise

    def _remaining(self) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise CliError(f"no answer from the cluster within {self._timeout:g} s")
        return remaining


def parse_bootstrap(text: str) -> list[Address]:
    """``--bootstrap-server`` as addresses: comma-separated ``HOST[:PORT]`` (``[v6]:PORT`` for IPv6; an
    optional ``SCHEME://`` prefix, as librdkafka allows, is ignored; the port defaults to Kafka's 9092)."""
    addresses = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        hostport = item.split("://", 1)[-1]
        host, port = hostport, str(_DEFAULT_PORT)
        if hostport.startswith("["):
            host, _, rest = hostport[1:].partition("]")
            port = rest.removeprefix(":") if rest else port
        elif hostport.count(":") == 1:
            host, port = hostport.split(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise CliError(f"invalid bootstrap server {item!r}: expected HOST:PORT")
        addresses.append((host, int(port)))
    if not addresses:
        raise CliError("no bootstrap server given")
    return addresses


@contextlib.contextmanager
def wire_failures_as_cli_errors() -> Iterator[None]:
    """The raw client's failures (unreachable, hung up, silent, no common API version) as the one-line
    errors the CLI prints."""
    try:
        yield
    except (BrokerConnectionError, UnsupportedApiError) as exc:
        raise CliError(str(exc)) from None


def error_text(error: ErrorCode, detail: str | None = None) -> str:
    """``NAME: description``, Kafka's name for the error and the broker's message or a default one."""
    description = detail or error.message
    return f"{error.name}: {description}" if description else error.name


# ------------------------------------------------------------------------------------------ what is shown


@dataclass(frozen=True)
class TransactionListing:
    """One transactional id as ListTransactions reports it, with the broker that coordinates it."""

    transactional_id: str
    producer_id: int
    state: str
    coordinator: int


@dataclass(frozen=True)
class TransactionDescription:
    """One transactional id as DescribeTransactions reports it; ``duration_ms``, how long the open
    transaction has been running, is measured on this machine's clock from its start time, as Kafka's tool
    does (None when no transaction is open)."""

    transactional_id: str
    coordinator: Broker
    state: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    start_time_ms: int | None
    duration_ms: int | None
    partitions: list[Partition]


# ------------------------------------------------------------------------------------------- arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``transactions`` actions on the ``transactions`` sub-parser."""
    actions = parser.add_subparsers(dest="transactions_action", required=True, metavar="ACTION")

    list_ = actions.add_parser(
        "list",
        help="list transactional ids",
        description="List the transactional ids every broker coordinates, with producer id and state.",
    )
    list_.add_argument(
        "--state",
        action="append",
        type=_transaction_states,
        default=[],
        metavar="STATE[,STATE...]",
        help="only ids in these states (repeatable): " + ", ".join(KAFKA_TRANSACTION_STATES),
    )
    list_.add_argument(
        "--producer-id",
        action="append",
        type=non_negative_int,
        default=[],
        metavar="N",
        help="only ids with this producer id (repeatable)",
    )
    list_.add_argument(
        "--min-duration-ms",
        type=non_negative_int,
        metavar="N",
        help="only transactions running for longer than N ms (brokers with ListTransactions v1, Kafka 3.8+)",
    )
    list_.add_argument("--json", action="store_true", help="machine-readable output")
    list_.set_defaults(transactions_handler=_list)

    describe = actions.add_parser(
        "describe",
        help="show state, producer, timeout and partitions of transactional ids",
        description="Show each transactional id's state, producer id and epoch, timeout, when its open "
        "transaction started and how long ago, and the partitions in it.",
    )
    describe.add_argument("transactional_ids", nargs="+", metavar="TRANSACTIONAL-ID")
    describe.add_argument("--json", action="store_true", help="machine-readable output")
    describe.set_defaults(transactions_handler=_describe)

    for action_parser in (list_, describe):
        add_client_arguments(action_parser)


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``transactions`` action; returns the exit status."""
    with wire_failures_as_cli_errors(), RawAdminClient.from_args(args) as client:
        status: int = args.transactions_handler(args, client)
        return status


def _transaction_states(text: str) -> list[str]:
    """argparse type for ``--state``: comma-separated state names; Kafka's are accepted in any case, others
    go to the brokers as written (they report the ones they do not know)."""
    names = filter(None, (part.strip() for part in text.split(",")))
    return [_STATES_BY_LOWER_NAME.get(name.lower(), name) for name in names]


# ------------------------------------------------------------------------------------------------- list


def _list(args: argparse.Namespace, client: RawAdminClient) -> int:
    request = list_transactions.ListTransactionsRequest(
        state_filters=list(dict.fromkeys(name for names in args.state for name in names)),
        producer_id_filters=sorted(set(args.producer_id)),
    )
    oldest = None
    if args.min_duration_ms is not None:
        request.duration_filter = args.min_duration_ms
        oldest = _DURATION_FILTER_VERSION
    listings: list[TransactionListing] = []
    unknown_states: set[str] = set()
    status = 0
    for broker in sorted(client.brokers().values(), key=lambda broker: broker.node_id):
        try:
            response = _list_on(client, broker, request, oldest)
        except (CliError, BrokerConnectionError, UnsupportedApiError) as exc:
            print_error(f"cannot list the transactions of broker {broker}: {exc}")
            status = 1
            continue
        unknown_states.update(response.unknown_state_filters)
        listings.extend(
            TransactionListing(txn.transactional_id, txn.producer_id, txn.transaction_state, broker.node_id)
            for txn in response.transaction_states
        )
    if unknown_states:
        print_warning(f"the cluster knows no transaction state {', '.join(sorted(unknown_states))}")
    listings.sort(key=lambda listing: (listing.transactional_id, listing.coordinator))
    if args.json:
        print_json([transaction_listing_json(listing) for listing in listings])
    elif listings:
        rows = [(listing.transactional_id, listing.producer_id, listing.state) for listing in listings]
        print(format_table(("TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"), rows))
    return status


def _list_on(
    client: RawAdminClient,
    broker: Broker,
    request: list_transactions.ListTransactionsRequest,
    oldest: int | None,
) -> list_transactions.ListTransactionsResponse:
    """One broker's answer; asked again while its coordinator is still loading, as Kafka's admin client
    does (any other error fails that broker)."""
    version = client.negotiate(broker.address, list_transactions.API_KEY, oldest=oldest)
    while True:
        response: list_transactions.ListTransactionsResponse = client.call(
            broker.address, list_transactions.API_KEY, version, request
        )
        error = ErrorCode.from_code(response.error_code)
        if error == ErrorCode.NONE:
            return response
        if error != ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
            raise CliError(error_text(error))
        client.back_off(error_text(error))


def transaction_listing_json(listing: TransactionListing) -> dict[str, Any]:
    """JSON document for one listed transactional id; ``coordinator`` is the broker's node id."""
    return {
        "transactional_id": listing.transactional_id,
        "producer_id": listing.producer_id,
        "state": listing.state,
        "coordinator": listing.coordinator,
    }


# --------------------------------------------------------------------------------------------- describe


def _describe(args: argparse.Namespace, client: RawAdminClient) -> int:
    descriptions = []
    status = 0
    for transactional_id in dict.fromkeys(args.transactional_ids):
        try:
            descriptions.append(describe_transaction(client, transactional_id))
        except CliError as exc:
            print_error(str(exc))
            status = 1
    if args.json:
        print_json([transaction_description_json(description) for description in descriptions])
    elif descriptions:
        print("\n\n".join(render_transaction_description(description) for description in descriptions))
    return status


def describe_transaction(client: RawAdminClient, transactional_id: str) -> TransactionDescription:
    """DescribeTransactions for one id from its coordinator, found anew whenever it has moved or is not
    ready; a CliError names Kafka's error otherwise (TRANSACTIONAL_ID_NOT_FOUND for an unknown id)."""
    request = describe_transactions.DescribeTransactionsRequest(transactional_ids=[transactional_id])
    while True:
        coordinator = client.find_coordinator(transactional_id, TRANSACTION_KEY_TYPE)
        version = client.negotiate(coordinator.address, describe_transactions.API_KEY)
        response = client.call(coordinator.address, describe_transactions.API_KEY, version, request)
        if len(response.transaction_states) != 1:
            raise CliError(
                f"the coordinator of transactional id '{transactional_id}' answered with "
                f"{len(response.transaction_states)} states for one id"
            )
        (answer,) = response.transaction_states
        error = ErrorCode.from_code(answer.error_code)
        if error == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND:
            raise CliError(f"transactional id '{transactional_id}' does not exist ({error.name})")
        if error in client.COORDINATOR_RETRIABLE:
            client.back_off(f"cannot describe transactional id '{transactional_id}': {error_text(error)}")
            continue
        if error != ErrorCode.NONE:
            raise CliError(f"cannot describe transactional id '{transactional_id}': {error_text(error)}")
        start = answer.transaction_start_time_ms if answer.transaction_start_time_ms >= 0 else None
        open_since = None if answer.transaction_state in _NO_OPEN_TRANSACTION_STATES else start
        return TransactionDescription(
            transactional_id=transactional_id,
            coordinator=coordinator,
            state=answer.transaction_state,
            producer_id=answer.producer_id,
            producer_epoch=answer.producer_epoch,
            timeout_ms=answer.transaction_timeout_ms,
            start_time_ms=start,
            duration_ms=None if open_since is None else _now_ms() - open_since,
            partitions=sorted(
                (topic.topic, partition) for topic in answer.topics for partition in topic.partitions
            ),
        )


def render_transaction_description(description: TransactionDescription) -> str:
    """Aligned text for one described transactional id."""
    start = description.start_time_ms
    started = MISSING if start is None else f"{iso_time(start)} ({start})"
    duration = MISSING if description.duration_ms is None else f"{description.duration_ms} ms"
    partitions = _partitions_by_topic(description.partitions)
    return "\n".join(
        [
            f"Transactional id: {description.transactional_id}",
            f"  State: {description.state}  Producer id: {description.producer_id}  "
            f"Epoch: {description.producer_epoch}  Coordinator: {description.coordinator}",
            f"  Timeout: {description.timeout_ms} ms  Started: {started}  Duration: {duration}",
            "  Partitions: "
            + (
                ";".join(f"{topic}:{','.join(map(str, numbers))}" for topic, numbers in partitions.items())
                or MISSING
            ),
        ]
    )


def transaction_description_json(description: TransactionDescription) -> dict[str, Any]:
    """JSON document for one described transactional id; times not known are null, partitions are listed
    by topic."""
    start = description.start_time_ms
    return {
        "transactional_id": description.transactional_id,
        "state": description.state,
        "producer_id": description.producer_id,
        "producer_epoch": description.producer_epoch,
        "coordinator": description.coordinator.node_id,
        "timeout_ms": description.timeout_ms,
        "start_time_ms": start,
        "start_time": None if start is None else iso_time(start),
        "duration_ms": description.duration_ms,
        "partitions": _partitions_by_topic(description.partitions),
    }


def iso_time(epoch_ms: int) -> str:
    """ISO 8601 in UTC to the millisecond, e.g. ``2024-05-01T12:00:00.123Z`` (exact: no float rounding)."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, UTC) + timedelta(milliseconds=epoch_ms % 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _partitions_by_topic(partitions: Iterable[Partition]) -> dict[str, list[int]]:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(partitions):
        by_topic.setdefault(topic, []).append(partition)
    return by_topic


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
