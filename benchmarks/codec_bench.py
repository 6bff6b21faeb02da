"""Codec microbenchmark: the generated codec on two hot paths, against kio.

- decoding a Produce request (v9) with 10 partitions of 1 KiB record sets;
- encoding a Metadata response (v12) with 100 topics of 3 partitions.

kio decodes in a native extension and encodes in Python; both sides get the same messages.  Prints ops/s
and the ratio ours/kio.  Run from the repository root: `python benchmarks/codec_bench.py [--seconds N]`.
"""

from __future__ import annotations

import argparse
import datetime
import io
import time
import uuid
from collections.abc import Callable

from kio.schema.errors import ErrorCode as KioErrorCode
from kio.schema.metadata.v12 import response as kio_metadata
from kio.schema.produce.v9 import request as kio_produce
from kio.serial import entity_reader, entity_writer

from strom.protocol.messages import metadata, produce
from strom.protocol.primitives import Writer

PARTITIONS = 10
TOPICS = 100
RECORD_SET = b"r" * 1024


def produce_request_bytes() -> bytes:
    request = produce.ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout_ms=30_000,
        topic_data=[
            produce.ProduceRequest.TopicProduceData(
                "orders",
                [produce.ProduceRequest.PartitionProduceData(i, RECORD_SET) for i in range(PARTITIONS)],
            )
        ],
    )
    w = Writer()
    produce.encode_request(request, 9, w)
    return w.getvalue()


def metadata_response() -> metadata.MetadataResponse:
    response_cls = metadata.MetadataResponse
    broker = response_cls.MetadataResponseBroker(node_id=1, host="localhost", port=9092, rack=None)
    topics = [
        response_cls.MetadataResponseTopic(
            error_code=0,
            name=f"topic-{i}",
            topic_id=uuid.UUID(int=i + 1),
            is_internal=False,
            partitions=[
                response_cls.MetadataResponsePartition(
                    error_code=0,
                    partition_index=p,
                    leader_id=1,
                    leader_epoch=0,
                    replica_nodes=[1],
                    isr_nodes=[1],
                    offline_replicas=[],
                )
                for p in range(3)
            ],
        )
        for i in range(TOPICS)
    ]
    return response_cls(
        throttle_time_ms=0, brokers=[broker], cluster_id="strom", controller_id=1, topics=topics
    )


def kio_metadata_response(ours: metadata.MetadataResponse) -> kio_metadata.MetadataResponse:
    k = kio_metadata
    return k.MetadataResponse(
        throttle_time=datetime.timedelta(0),
        brokers=tuple(
            k.MetadataResponseBroker(node_id=b.node_id, host=b.host, port=b.port, rack=b.rack)
            for b in ours.brokers
        ),
        cluster_id=ours.cluster_id,
        controller_id=ours.controller_id,
        topics=tuple(
            k.MetadataResponseTopic(
                error_code=KioErrorCode(t.error_code),
                name=t.name,
                topic_id=t.topic_id,
                is_internal=t.is_internal,
                partitions=tuple(
                    k.MetadataResponsePartition(
                        error_code=KioErrorCode(p.error_code),
                        partition_index=p.partition_index,
                        leader_id=p.leader_id,
                        leader_epoch=p.leader_epoch,
                        replica_nodes=tuple(p.replica_nodes),
                        isr_nodes=tuple(p.isr_nodes),
                        offline_replicas=tuple(p.offline_replicas),
                    )
                    for p in t.partitions
                ),
                topic_authorized_operations=t.topic_authorized_operations,
            )
            for t in ours.topics
        ),
    )


def ops_per_second(fn: Callable[[], object], seconds: float) -> float:
    fn()  # warm up (imports, caches)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            fn()
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()

    data = produce_request_bytes()
    view = memoryview(data)
    read_kio_produce = entity_reader(kio_produce.ProduceRequest)
    ours_response = metadata_response()
    kio_response = kio_metadata_response(ours_response)
    write_kio_metadata = entity_writer(kio_metadata.MetadataResponse)

    def encode_ours() -> bytes | bytearray:
        w = Writer()
        metadata.encode_response(ours_response, 12, w)
        return w.buf

    def encode_kio() -> bytes:
        buffer = io.BytesIO()
        write_kio_metadata(buffer, kio_response)
        return buffer.getvalue()

    assert bytes(encode_ours()) == encode_kio(), "the two codecs disagree on the Metadata response"
    assert read_kio_produce(data, 0)[1] == produce.decode_request(view, 0, 9)[1] == len(data)

    rows = [
        (
            f"decode Produce v9 request, {PARTITIONS} partitions",
            ops_per_second(lambda: produce.decode_request(view, 0, 9), args.seconds),
            ops_per_second(lambda: read_kio_produce(data, 0), args.seconds),
        ),
        (
            f"encode Metadata v12 response, {TOPICS} topics",
            ops_per_second(encode_ours, args.seconds),
            ops_per_second(encode_kio, args.seconds),
        ),
    ]
    print(f"{'benchmark':<46} {'strom ops/s':>12} {'kio ops/s':>12} {'ratio':>7}")
    for name, ours, theirs in rows:
        print(f"{name:<46} {ours:>12,.0f} {theirs:>12,.0f} {ours / theirs:>7.2f}")


if __name__ == "__main__":
    main()
