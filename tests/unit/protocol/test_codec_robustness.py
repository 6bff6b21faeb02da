"""Generated codecs on hostile or unusual input, and the encoding rules that are easy to get wrong."""

from __future__ import annotations

import random
import struct
import uuid

import pytest
from codec_samples import sample
from codec_support import SIDES, our_versions

from strom.protocol.messages import APIS, describe_topic_partitions, fetch, produce
from strom.protocol.messages import api_versions as api_versions_api
from strom.protocol.primitives import DecodeError, EncodeError, UnsupportedVersionError, Writer

Produce = produce.ProduceRequest
ApiVersionsResponse = api_versions_api.ApiVersionsResponse


def encoded(encode, message: object, version: int) -> bytes:  # type: ignore[no-untyped-def]
    w = Writer()
    encode(message, version, w)
    return w.getvalue()


def one_partition_produce() -> produce.ProduceRequest:
    return Produce(None, -1, 1000, [Produce.TopicProduceData("t", [Produce.PartitionProduceData(0, b"REC")])])


# -- truncated and malformed input --------------------------------------------------------------------

TRUNCATION_CASES = [
    (0, "request", 3),  # Produce, classic encoding
    (0, "request", 9),  # Produce, flexible
    (1, "response", 4),  # Fetch
    (1, "response", 16),  # Fetch with tagged fields
    (3, "response", 1),  # Metadata
    (3, "response", 12),
    (18, "response", 3),  # ApiVersions with tagged fields
    (19, "request", 5),  # CreateTopics
    (75, "response", 0),  # DescribeTopicPartitions: a nullable struct
]


@pytest.mark.parametrize(("api_key", "side", "version"), TRUNCATION_CASES)
def test_every_truncation_raises_decode_error(api_key: int, side: str, version: int) -> None:
    module = APIS[api_key].module
    data = encoded(getattr(module, f"encode_{side}"), sample(api_key, side, version), version)
    decode = getattr(module, f"decode_{side}")
    assert decode(memoryview(data), 0, version)[1] == len(data)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode(memoryview(data[:cut]), 0, version)


def test_garbage_and_corrupted_messages_raise_only_decode_error() -> None:
    rng = random.Random(7)
    decoded = failed = 0
    for api_key, version in our_versions():
        module = APIS[api_key].module
        for side in SIDES:
            decode = getattr(module, f"decode_{side}")
            valid = encoded(getattr(module, f"encode_{side}"), sample(api_key, side, version), version)
            inputs = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))) for _ in range(3)]
            for _ in range(4):
                corrupted = bytearray(valid)
                for _ in range(rng.randint(1, 3)):
                    if corrupted:
                        corrupted[rng.randrange(len(corrupted))] = rng.getrandbits(8)
                inputs.append(bytes(corrupted))
            for data in inputs:
                try:
                    decode(memoryview(data), 0, version)
                    decoded += 1
                except DecodeError:
                    failed += 1
    assert failed > 0 and decoded > 0  # both outcomes occur; nothing else escaped


def test_invalid_lengths_and_utf8_in_generated_decoders() -> None:
    good = encoded(produce.encode_request, one_partition_produce(), 3)
    assert good[:2] == b"\xff\xff"  # null transactional id
    with pytest.raises(DecodeError, match="transactional_id"):
        produce.decode_request(memoryview(b"\xff\xfe" + good[2:]), 0, 3)  # -2 is not null
    name_at = good.index(b"\x00\x01t")
    bad_utf8 = good[: name_at + 2] + b"\xff" + good[name_at + 3 :]
    with pytest.raises(DecodeError):
        produce.decode_request(memoryview(bad_utf8), 0, 3)
    huge_array = good[:10] + struct.pack(">i", 2**31 - 1) + good[14:]
    with pytest.raises(DecodeError, match="topic_data"):
        produce.decode_request(memoryview(huge_array), 0, 3)


def test_unsupported_versions() -> None:
    buf = memoryview(b"\x00" * 64)
    for bad in (produce.MIN_VERSION - 1, produce.MAX_VERSION + 1):
        with pytest.raises(UnsupportedVersionError):
            produce.decode_request(buf, 0, bad)
        with pytest.raises(UnsupportedVersionError):
            produce.encode_response(produce.ProduceResponse(), bad, Writer())
    assert issubclass(UnsupportedVersionError, DecodeError)


def test_decoders_accept_bytes_as_well_as_memoryviews() -> None:
    data = encoded(produce.encode_request, one_partition_produce(), 9)
    assert produce.decode_request(data, 0, 9)[0] == one_partition_produce()  # type: ignore[arg-type]


# -- unknown tagged fields (KIP-482) ------------------------------------------------------------------


UNKNOWN_TAGS = b"\x02" + b"\x5a\x03xyz" + b"\x5b\x00"  # tags 90 and 91, unknown to every schema


def test_unknown_tagged_fields_are_skipped_at_top_level_and_nested() -> None:
    message = one_partition_produce()
    data = encoded(produce.encode_request, message, 9)
    assert data.endswith(b"REC\x00\x00\x00")  # partition, topic and request tagged sections
    partition_tags = data.index(b"REC") + 3
    for at in (partition_tags, partition_tags + 1, partition_tags + 2):
        with_unknown = data[:at] + UNKNOWN_TAGS + data[at + 1 :]
        assert produce.decode_request(memoryview(with_unknown), 0, 9) == (message, len(with_unknown))


def test_unknown_tags_between_known_ones() -> None:
    response = ApiVersionsResponse(error_code=0, api_keys=[], throttle_time_ms=0)
    base = encoded(api_versions_api.encode_response, response, 3)
    assert base.endswith(b"\x00")
    feature = ApiVersionsResponse.SupportedFeatureKey("kraft.version", 0, 1)
    feature_value = b"\x02" + b"\x0ekraft.version" + b"\x00\x00\x00\x01\x00"
    tags = (
        b"\x03"
        + b"\x00" + bytes([len(feature_value)]) + feature_value  # tag 0: SupportedFeatures
        + b"\x07\x02ab"  # unknown tag 7
        + b"\x01\x08" + struct.pack(">q", 42)  # tag 1: FinalizedFeaturesEpoch
    )  # fmt: skip
    decoded, end = api_versions_api.decode_response(memoryview(base[:-1] + tags), 0, 3)
    assert end == len(base) - 1 + len(tags)
    assert decoded.supported_features == [feature]
    assert decoded.finalized_features_epoch == 42


def test_known_tag_with_wrong_size_is_rejected() -> None:
    base = encoded(api_versions_api.encode_response, ApiVersionsResponse(), 3)
    bad = base[:-1] + b"\x01\x01\x04" + struct.pack(">q", 42)  # int64 claims 4 bytes
    with pytest.raises(DecodeError):
        api_versions_api.decode_response(memoryview(bad), 0, 3)


# -- tagged and nullable encodings --------------------------------------------------------------------


def test_tagged_fields_are_written_only_when_not_default() -> None:
    default = encoded(api_versions_api.encode_response, ApiVersionsResponse(finalized_features_epoch=-1), 3)
    assert default == b"\x00\x00" + b"\x01" + b"\x00\x00\x00\x00" + b"\x00"
    set_epoch = encoded(api_versions_api.encode_response, ApiVersionsResponse(finalized_features_epoch=7), 3)
    assert set_epoch == b"\x00\x00\x01\x00\x00\x00\x00" + b"\x01\x01\x08" + struct.pack(">q", 7)
    # Tags go out in ascending order whatever the field order.
    both = ApiVersionsResponse(finalized_features_epoch=7, zk_migration_ready=True)
    tail = encoded(api_versions_api.encode_response, both, 3)[7:]
    assert tail == b"\x02" + b"\x01\x08" + struct.pack(">q", 7) + b"\x03\x01\x01"


def test_nullable_struct_marker() -> None:
    request_cls = describe_topic_partitions.DescribeTopicPartitionsRequest
    empty = request_cls(topics=[], response_partition_limit=5, cursor=None)
    assert encoded(describe_topic_partitions.encode_request, empty, 0) == b"\x01\x00\x00\x00\x05\xff\x00"
    cursor = request_cls.Cursor(topic_name="t", partition_index=3)
    with_cursor = encoded(describe_topic_partitions.encode_request, request_cls([], 5, cursor), 0)
    assert with_cursor == b"\x01\x00\x00\x00\x05\x01" + b"\x02t\x00\x00\x00\x03\x00" + b"\x00"
    decoded, _ = describe_topic_partitions.decode_request(memoryview(with_cursor), 0, 0)
    assert decoded.cursor == cursor


def test_encode_errors() -> None:
    with pytest.raises(EncodeError, match="transactional_id"):
        encoded(produce.encode_request, Produce(transactional_id="tx"), 2)  # no such field before v3
    with pytest.raises(EncodeError):
        encoded(produce.encode_request, Produce(topic_data=[Produce.TopicProduceData(name=None)]), 9)  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        encoded(produce.encode_request, Produce(acks=40000), 9)  # int16 overflow
    # An ignorable field the version lacks is dropped silently, as Kafka does.
    response = produce.ProduceResponse(throttle_time_ms=100)
    assert encoded(produce.encode_response, response, 0) == b"\x00\x00\x00\x00"


# -- zero copy ----------------------------------------------------------------------------------------


def test_decoded_records_share_the_input_buffer() -> None:
    data = bytearray(encoded(produce.encode_request, one_partition_produce(), 9))
    request, _ = produce.decode_request(memoryview(data), 0, 9)
    records = request.topic_data[0].partition_data[0].records
    assert isinstance(records, memoryview)
    assert records.obj is data
    data[data.index(b"REC")] = ord("X")
    assert bytes(records) == b"XEC"


class FileRange:
    def __init__(self, size: int) -> None:
        self.size = size


def test_opaque_records_pass_through_chunks() -> None:
    records = FileRange(5000)
    partition = fetch.FetchResponse.PartitionData(partition_index=0, high_watermark=10, records=records)
    response = fetch.FetchResponse(
        responses=[fetch.FetchResponse.FetchableTopicResponse(topic_id=uuid.uuid4(), partitions=[partition])]
    )
    w = Writer()
    fetch.encode_response(response, 16, w)
    chunks = w.chunks()
    assert [chunk is records for chunk in chunks] == [False, True, False]
    prefix = bytes(chunks[0])  # type: ignore[arg-type]
    assert prefix.endswith(bytes([0x89, 0x27]))  # compact length 5001 as a varint
    assert w.nbytes == len(prefix) + 5000 + len(chunks[2])  # type: ignore[arg-type]
