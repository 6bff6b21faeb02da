import struct
import uuid

import crc32c
import pytest

from strom.metadata.log import MetadataLog, MetadataLogError, metadata_log_path
from strom.metadata.records import ConfigRecord, PartitionRecord, ProducerIdsRecord, TopicRecord, encode_batch

TOPIC_ID = uuid.UUID(int=7)


def topic_batch(name="t", partitions=2):
    return [TopicRecord(name, TOPIC_ID)] + [
        PartitionRecord(TOPIC_ID, p, [1], [1], 1) for p in range(partitions)
    ]


@pytest.fixture
def path(tmp_path):
    return metadata_log_path(tmp_path)


def test_log_lives_in_the_cluster_metadata_partition_directory(tmp_path):
    assert metadata_log_path(tmp_path) == tmp_path / "__cluster_metadata-0" / "metadata.log"


def test_append_returns_last_offset_and_replay_yields_offsets_in_order(path):
    with MetadataLog(path) as log:
        assert log.append(topic_batch()) == 2
        assert log.append([ProducerIdsRecord(1, 1000)]) == 3
        assert log.next_offset == 4
        entries = list(log.replay())
    assert [offset for offset, _ in entries] == [0, 1, 2, 3]
    assert [record for _, record in entries] == topic_batch() + [ProducerIdsRecord(1, 1000)]


def test_reopened_log_replays_everything_and_continues_offsets(path):
    with MetadataLog(path) as log:
        log.append(topic_batch())
    with MetadataLog(path) as log:
        assert log.next_offset == 3
        assert log.append([ProducerIdsRecord(1, 1000)]) == 3
        assert len(list(log.replay())) == 4


def test_empty_batch_is_refused(path):
    with MetadataLog(path) as log, pytest.raises(ValueError):
        log.append([])


def test_closed_log_refuses_use(path):
    log = MetadataLog(path)
    log.close()
    with pytest.raises(MetadataLogError):
        log.append([ProducerIdsRecord(1, 1)])


@pytest.mark.parametrize("cut", [1, 4, 8, 20], ids=lambda n: f"{n}-bytes-missing")
def test_torn_last_frame_is_truncated_on_open(path, cut):
    with MetadataLog(path) as log:
        log.append(topic_batch())
        good_size = path.stat().st_size
        log.append([ProducerIdsRecord(1, 1000)])
    full_size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(full_size - cut)
    with MetadataLog(path) as log:
        assert path.stat().st_size == good_size
        assert [offset for offset, _ in log.replay()] == [0, 1, 2]
        assert log.append([ProducerIdsRecord(1, 2000)]) == 3
    with MetadataLog(path) as log:
        assert list(log.replay())[-1] == (3, ProducerIdsRecord(1, 2000))


def test_frame_with_bad_checksum_and_everything_after_it_is_dropped(path):
    with MetadataLog(path) as log:
        log.append(topic_batch())
        good_size = path.stat().st_size
        log.append([ProducerIdsRecord(1, 1000)])
        log.append([ProducerIdsRecord(1, 2000)])
    data = bytearray(path.read_bytes())
    data[good_size + 12] ^= 0xFF  # inside the second frame's payload
    path.write_bytes(bytes(data))
    with MetadataLog(path) as log:
        assert log.next_offset == 3
        assert path.stat().st_size == good_size


def test_garbage_tail_is_truncated(path):
    with MetadataLog(path) as log:
        log.append(topic_batch())
        good_size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\x00\x00\x00\x00garbage")
    with MetadataLog(path) as log:
        assert log.next_offset == 3
    assert path.stat().st_size == good_size


def test_checksummed_but_undecodable_frame_stops_startup_instead_of_losing_metadata(path):
    payload = b'{"base_offset":0,"records":[{"type":"FromTheFuture","version":0}]}'
    path.parent.mkdir(parents=True)
    path.write_bytes(struct.pack(">iI", len(payload), crc32c.crc32c(payload)) + payload)
    with pytest.raises(MetadataLogError, match="unreadable batch"):
        MetadataLog(path)
    assert path.stat().st_size == 8 + len(payload)


def test_frame_with_unexpected_base_offset_ends_the_log(path):
    with MetadataLog(path) as log:
        log.append([ConfigRecord(2, "t", "retention.ms", "1")])
        good_size = path.stat().st_size
    payload = encode_batch([ProducerIdsRecord(1, 5)], base_offset=7)
    with open(path, "ab") as f:
        f.write(struct.pack(">iI", len(payload), crc32c.crc32c(payload)) + payload)
    with MetadataLog(path) as log:
        assert log.next_offset == 1
    assert path.stat().st_size == good_size
