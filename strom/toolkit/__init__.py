"""The toolkit for services around a Kafka-compatible cluster (Strom or Apache Kafka): a publisher, a consumer
framework with retries and dead-letter topics, the transactional outbox and inbox, and exactly-once pipelines.

It is a client of the cluster only: everything goes through confluent-kafka and the Kafka protocol.
"""

from strom.toolkit.consumer import Consumer, ConsumerApp, Message, consumer
from strom.toolkit.dlt import DeadLetter, DeadLetterFilter, DeadLetters, ReplayResult, Selection
from strom.toolkit.events import Event
from strom.toolkit.inbox import Inbox, cloudevent_id
from strom.toolkit.outbox import ExponentialBackoff, Outbox, OutboxRelay, OutboxRow, outbox_table
from strom.toolkit.pipeline import Output, TransactionalPipeline, run_pipeline
from strom.toolkit.publisher import AsyncPublisher, Delivery, Publisher, PublishError
from strom.toolkit.retry import DLT_HEADERS, NonRetryableError, RetryPolicy
from strom.toolkit.serialization import bytes_serializer, json_deserializer, json_serializer

__all__ = [
    "DLT_HEADERS",
    "AsyncPublisher",
    "Consumer",
    "ConsumerApp",
    "DeadLetter",
    "DeadLetterFilter",
    "DeadLetters",
    "Delivery",
    "Event",
    "ExponentialBackoff",
    "Inbox",
    "Message",
    "NonRetryableError",
    "Outbox",
    "OutboxRelay",
    "OutboxRow",
    "Output",
    "PublishError",
    "Publisher",
    "ReplayResult",
    "RetryPolicy",
    "Selection",
    "TransactionalPipeline",
    "bytes_serializer",
    "cloudevent_id",
    "consumer",
    "json_deserializer",
    "json_serializer",
    "outbox_table",
    "run_pipeline",
]
