import json
import uuid

import pytest

from strom.metadata.records import (
    BROKER_RESOURCE,
    TOPIC_RESOURCE,
    ConfigRecord,
    FeatureLevelRecord,
    PartitionChangeRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RecordFormatError,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
    decode_batch,
    decode_record,
    encode_batch,
    encode_record,
)

TOPIC_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")

ALL_RECORDS = [
    TopicRecord("orders", TOPIC_ID),
    PartitionRecord(TOPIC_ID, 3, [1, 2], [2], 2, leader_epoch=4, partition_epoch=5),
    PartitionChangeRecord(TOPIC_ID, 3, leader=1, isr=[1, 2]),
    PartitionChangeRecord(TOPIC_ID, 0),
    RemoveTopicRecord(TOPIC_ID),
    ConfigRecord(TOPIC_RESOURCE, "orders", "retention.ms", "1000"),
    ConfigRecord(BROKER_RESOURCE, "", "log.retention.ms", None),
    RegisterBrokerRecord(1, "localhost", 9092, rack="r1"),
    ProducerIdsRecord(1, 2000),
    FeatureLevelRecord("metadata.version", 21),
]


@pytest.mark.parametrize("record", ALL_RECORDS, ids=lambda r: type(r).__name__)
def test_every_record_round_trips_through_json(record):
    encoded = json.loads(json.dumps(encode_record(record)))
    assert encoded["type"] == type(record).__name__
    assert encoded["version"] == 0
    assert decode_record(encoded) == record


def test_uuids_are_stored_as_strings():
    assert encode_record(RemoveTopicRecord(TOPIC_ID))["topic_id"] == str(TOPIC_ID)


def test_batch_round_trip_keeps_order_and_base_offset():
    payload = encode_batch(ALL_RECORDS, base_offset=42)
    assert decode_batch(payload) == (42, ALL_RECORDS)


def test_batch_encoding_is_compact_and_deterministic():
    payload = encode_batch([TopicRecord("t", TOPIC_ID)], base_offset=0)
    assert b" " not in payload
    assert payload == encode_batch([TopicRecord("t", TOPIC_ID)], base_offset=0)


def test_unknown_record_type_is_rejected():
    with pytest.raises(RecordFormatError, match="unknown metadata record type"):
        decode_record({"type": "NoSuchRecord", "version": 0})


def test_record_from_a_newer_version_is_rejected():
    fields = encode_record(TopicRecord("t", TOPIC_ID)) | {"version": 1}
    with pytest.raises(RecordFormatError, match="not supported"):
        decode_record(fields)


def test_record_with_missing_field_is_rejected():
    fields = encode_record(TopicRecord("t", TOPIC_ID))
    del fields["name"]
    with pytest.raises(RecordFormatError, match="malformed TopicRecord"):
        decode_record(fields)


def test_empty_or_malformed_batches_are_rejected():
    with pytest.raises(RecordFormatError):
        decode_batch(b'{"base_offset":0,"records":[]}')
    with pytest.raises(RecordFormatError):
        decode_batch(b"not json")


def test_non_records_cannot_be_encoded():
    with pytest.raises(TypeError):
        encode_record("not a record")  # type: ignore[arg-type]
