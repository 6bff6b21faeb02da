"""What a partition holds, read with raw Fetch requests from the broker's own port (no client library, no
proxy in between): the tests that check what was stored use it as their ground truth."""

from __future__ import annotations

from scenario import CLIENT_TIMEOUT_S

from strom.protocol.client import BrokerConnection
from strom.protocol.errors import ErrorCode
from strom.protocol.messages import fetch
from strom.protocol.record_batch import BatchHeader, Record, decode_batch, validate_record_set

FETCH_MAX_BYTES = 64 * 1024 * 1024
NEWEST_FETCH_WITH_TOPIC_NAMES = 12


def stored_batches(port: int, topic: str, partition: int = 0) -> list[tuple[BatchHeader, list[Record]]]:
    """Every batch of the partition up to its high watermark, with its records, in offset order."""
    request = fetch.FetchRequest
    batches: list[tuple[BatchHeader, list[Record]]] = []
    with BrokerConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_S) as conn:
        version = conn.negotiate(fetch.API_KEY, newest=NEWEST_FETCH_WITH_TOPIC_NAMES)
        next_offset, high_watermark = 0, None
        while high_watermark is None or next_offset < high_watermark:
            wanted = request.FetchPartition(
                partition=partition, fetch_offset=next_offset, partition_max_bytes=FETCH_MAX_BYTES
            )
            response = conn.call(
                fetch.API_KEY,
                version,
                request(
                    max_wait_ms=0,
                    min_bytes=0,
                    max_bytes=FETCH_MAX_BYTES,
                    topics=[request.FetchTopic(topic=topic, partitions=[wanted])],
                ),
            )
            data = response.responses[0].partitions[0]
            assert data.error_code == ErrorCode.NONE
            high_watermark = data.high_watermark
            records = memoryview(bytearray(data.records or b""))
            position = 0
            for header in validate_record_set(records):
                batches.append((header, decode_batch(records[position : position + header.total_size])[1]))
                position += header.total_size
                next_offset = header.next_offset
            assert position > 0 or next_offset >= high_watermark, f"nothing fetched at {next_offset}"
    return batches
