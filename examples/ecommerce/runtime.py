"""What every service of the example needs: its database, its topics, and its relay's publisher."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import Engine, create_engine, event

from strom.toolkit.publisher import Publisher

# The seed's cluster creates topics with 3 partitions; the example's topics follow it.
DEFAULT_PARTITIONS = 3
_ADMIN_TIMEOUT_S = 30.0
RELAY_MESSAGE_TIMEOUT_MS = 30_000
# SQLite lets one writer in at a time; a writer waits this long for the others instead of failing.
_SQLITE_BUSY_TIMEOUT_MS = 30_000


def sqlite_engine(path: str | Path) -> Engine:
    """An engine on a SQLite file in WAL mode, so readers never block the writer (and the relay's polls
    never block the service's inserts)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{Path(path)}", connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000}
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def database_engine(url_or_path: str) -> Engine:
    """``--db`` accepts a SQLAlchemy URL (PostgreSQL, say) or a plain path, which means a SQLite file."""
    if "://" in url_or_path:
        return create_engine(url_or_path)
    return sqlite_engine(url_or_path)


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = DEFAULT_PARTITIONS) -> None:
    """Create the topics that do not exist yet; one that already exists is left as it is."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = [NewTopic(name, num_partitions=partitions) for name in topics]
    for name, future in admin.create_topics(wanted, operation_timeout=_ADMIN_TIMEOUT_S).items():
        try:
            future.result(timeout=_ADMIN_TIMEOUT_S)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"cannot create topic {name}: {exc}") from exc


def relay_publisher(bootstrap: str, client_id: str) -> Publisher:
    """The publisher an outbox relay uses.

    ``linger.ms=0``: the relay already hands the producer a whole batch of rows at once and then waits for
    the acks, so lingering only delays every round (and the rows committed meanwhile wait for the next).
    ``message.timeout.ms`` of 30 s: a record the broker cannot take fails within the relay's wait for acks,
    so the relay retries the row with backoff instead of waiting on it.
    """
    config = {"client.id": client_id, "linger.ms": 0, "message.timeout.ms": RELAY_MESSAGE_TIMEOUT_MS}
    return Publisher(config, bootstrap_servers=bootstrap)
