"""A mutation storm against a real broker process: it must stay up, keep answering, and keep its logs.

The corpus is one real, valid request for every version of every API the broker advertises (read from
ApiVersions), its Produce requests carrying record batches the broker stored earlier. The storm sends
thousands of mutated copies of them: bit flips, inserted and deleted bytes, truncations, length-looking
fields overwritten with huge or negative values, other API keys and versions, and wrong size prefixes. Each
mutant is followed on the same connection by an ApiVersions probe, so the test knows whether the broker
answered, hung up, or is holding the connection (a mutant may legitimately be a long-polling Fetch).
A mutant the broker would read as a valid order to delete or reconfigure the kept topic (a DescribeLogDirs
body relabelled as DeleteTopics, say) is left out: obeying it would be right, and indistinguishable from
damage.

Afterwards the broker must still be running and answering, the data stored before the storm must read back
with the same offsets and bytes (whatever was appended since must be valid batches), and after a clean
restart the kept partitions must read back exactly as they did before it. Last, no request may have made a
handler fail (the broker's log must hold no traceback from the storm).

The storm is deterministic for a seed and bounded in count and in time: STROM_FUZZ_SEED and STROM_FUZZ_CASES
change the defaults below; if the time budget runs out first, the storm stops early and the checks still run.
"""

from __future__ import annotations

import dataclasses
import os
import random
import struct
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from wire_client import (
    SIZE_PREFIX,
    PartitionContent,
    PeerClosed,
    RawConnection,
    api_versions_request,
    assert_broker_answers,
    assert_still_holds,
    create_topic,
    decode_response,
    encode_request,
    metadata_request,
    produce_batch,
    read_partition,
    request_class,
    sample_batches,
)

from strom.protocol import messages
from strom.protocol.headers import decode_request_header
from strom.protocol.messages import (
    alter_configs,
    api_versions,
    create_partitions,
    create_topics,
    delete_records,
    delete_topics,
    describe_cluster,
    describe_configs,
    describe_log_dirs,
    fetch,
    incremental_alter_configs,
    list_offsets,
    metadata,
    produce,
)
from strom.testing.process import StromProcess

SEED = int(os.environ.get("STROM_FUZZ_SEED", "20240611"))
CASES = int(os.environ.get("STROM_FUZZ_CASES", "3000"))
#: The storm stops here even if cases remain, so the test stays well under a minute on a small machine.
STORM_BUDGET_S = 35.0
#: A mutant that neither gets answered nor closes the connection within this is abandoned (it may be a
#: Fetch whose mutated max_wait_ms is long, which the broker rightly holds).
PROBE_TIMEOUT_S = 1.0
#: Share of mutants sent on a new connection even when the current one is still usable.
FRESH_CONNECTION_RATE = 0.1
#: Probe correlation ids live far from the corpus's small ones, so a mutant can't pass for a probe.
PROBE_ID_BASE = 0x5EED0000

#: The kept topic's name is no prefix of, nor a few edits from, any topic the corpus deletes or alters.
KEEP = "keep"
KEEP_PARTITIONS = 2
SCRATCH = "zz-scratch"
DOOMED = "zz-doomed"
CREATED = "zz-created"
TOPIC = 2  # DescribeConfigs / AlterConfigs resource types
BROKER = 4
SEVEN_DAYS_MS = "604800000"
LOG_TAIL_CHARS = 3000


@dataclass(frozen=True)
class Corpus:
    """Valid request frames (size prefix included), what ApiVersions advertised, and the kept topic's id."""

    frames: list[tuple[int, int, bytes]]  # api key, version, frame
    advertised: dict[int, tuple[int, int]]
    keep_id: uuid.UUID


@dataclass(frozen=True)
class Mutant:
    kind: str
    api_key: int
    version: int
    data: bytes
    framed: bool  # False: the size prefix lies, so the connection can't be trusted afterwards


# ---------------------------------------------------------------------- the corpus
@dataclass(frozen=True)
class Targets:
    """What the corpus's requests point at: topic ids for the versions that use them, stored batches."""

    keep_id: uuid.UUID
    batches: list[bytes]


Builder = Callable[[int, Targets], Any]


def build_produce(version: int, t: Targets) -> Any:
    r = produce.ProduceRequest
    partitions = [
        r.PartitionProduceData(index=p, records=t.batches[(version + p) % len(t.batches)])
        for p in range(KEEP_PARTITIONS)
    ]
    return r(
        acks=-1 if version % 2 else 1,
        timeout_ms=5000,
        topic_data=[r.TopicProduceData(name=KEEP, partition_data=partitions)],
    )


def build_fetch(version: int, t: Targets) -> Any:
    r = fetch.FetchRequest
    partition = r.FetchPartition(
        partition=version % KEEP_PARTITIONS, fetch_offset=0, partition_max_bytes=1 << 20
    )
    topic = (
        r.FetchTopic(topic=KEEP, partitions=[partition])
        if version < 13
        else r.FetchTopic(topic_id=t.keep_id, partitions=[partition])
    )
    return r(max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, topics=[topic])


def build_list_offsets(version: int, t: Targets) -> Any:
    r = list_offsets.ListOffsetsRequest
    partitions = [
        r.ListOffsetsPartition(partition_index=p, timestamp=-1 - p % 2) for p in range(KEEP_PARTITIONS)
    ]
    return r(replica_id=-1, topics=[r.ListOffsetsTopic(name=KEEP, partitions=partitions)], timeout_ms=5000)


def build_metadata(version: int, t: Targets) -> Any:
    r = metadata.MetadataRequest
    topics = [r.MetadataRequestTopic(name=KEEP), r.MetadataRequestTopic(name=SCRATCH)]
    return r(topics=topics, allow_auto_topic_creation=False) if version >= 4 else r(topics=topics)


def build_api_versions(version: int, t: Targets) -> Any:
    return api_versions_request() if version >= 3 else api_versions.ApiVersionsRequest()


def build_create_topics(version: int, t: Targets) -> Any:
    """Validate-only where the version allows; v0 names an existing topic, so it creates nothing either."""
    r = create_topics.CreateTopicsRequest
    topic = r.CreatableTopic(
        name=CREATED if version >= 1 else SCRATCH,
        num_partitions=1,
        replication_factor=1,
        configs=[r.CreatableTopicConfig(name="retention.ms", value=SEVEN_DAYS_MS)],
    )
    return (
        r(topics=[topic], timeout_ms=5000, validate_only=True)
        if version >= 1
        else r(topics=[topic], timeout_ms=5000)
    )


def build_delete_topics(version: int, t: Targets) -> Any:
    r = delete_topics.DeleteTopicsRequest
    if version >= 6:
        return r(topics=[r.DeleteTopicState(name=DOOMED)], timeout_ms=5000)
    return r(topic_names=[DOOMED], timeout_ms=5000)


def build_delete_records(version: int, t: Targets) -> Any:
    r = delete_records.DeleteRecordsRequest
    partition = r.DeleteRecordsPartition(partition_index=0, offset=1)
    return r(topics=[r.DeleteRecordsTopic(name=SCRATCH, partitions=[partition])], timeout_ms=5000)


def build_describe_configs(version: int, t: Targets) -> Any:
    r = describe_configs.DescribeConfigsRequest
    resources = [
        r.DescribeConfigsResource(resource_type=TOPIC, resource_name=KEEP, configuration_keys=None),
        r.DescribeConfigsResource(
            resource_type=BROKER, resource_name="1", configuration_keys=["log.retention.ms"]
        ),
    ]
    return r(resources=resources, include_synonyms=version >= 1, include_documentation=version >= 3)


def build_alter_configs(version: int, t: Targets) -> Any:
    r = alter_configs.AlterConfigsRequest
    config = r.AlterableConfig(name="retention.ms", value=SEVEN_DAYS_MS)
    return r(resources=[r.AlterConfigsResource(resource_type=TOPIC, resource_name=SCRATCH, configs=[config])])


def build_incremental_alter_configs(version: int, t: Targets) -> Any:
    r = incremental_alter_configs.IncrementalAlterConfigsRequest
    config = r.AlterableConfig(name="retention.ms", config_operation=0, value=SEVEN_DAYS_MS)
    return r(resources=[r.AlterConfigsResource(resource_type=TOPIC, resource_name=SCRATCH, configs=[config])])


def build_describe_log_dirs(version: int, t: Targets) -> Any:
    r = describe_log_dirs.DescribeLogDirsRequest
    return r(topics=[r.DescribableLogDirTopic(topic=KEEP, partitions=list(range(KEEP_PARTITIONS)))])


def build_create_partitions(version: int, t: Targets) -> Any:
    r = create_partitions.CreatePartitionsRequest
    topic = r.CreatePartitionsTopic(name=SCRATCH, count=2, assignments=None)
    return r(topics=[topic], timeout_ms=5000, validate_only=True)


def build_describe_cluster(version: int, t: Targets) -> Any:
    return describe_cluster.DescribeClusterRequest()


BUILDERS: dict[int, Builder] = {
    produce.API_KEY: build_produce,
    fetch.API_KEY: build_fetch,
    list_offsets.API_KEY: build_list_offsets,
    metadata.API_KEY: build_metadata,
    api_versions.API_KEY: build_api_versions,
    create_topics.API_KEY: build_create_topics,
    delete_topics.API_KEY: build_delete_topics,
    delete_records.API_KEY: build_delete_records,
    describe_configs.API_KEY: build_describe_configs,
    alter_configs.API_KEY: build_alter_configs,
    describe_log_dirs.API_KEY: build_describe_log_dirs,
    create_partitions.API_KEY: build_create_partitions,
    incremental_alter_configs.API_KEY: build_incremental_alter_configs,
    describe_cluster.API_KEY: build_describe_cluster,
}


def builder_for(api_key: int) -> Builder:
    """The API's builder; for an API without one, the all-defaults request, which is still well formed."""
    builder = BUILDERS.get(api_key)
    if builder is not None:
        return builder
    cls = request_class(api_key)
    return lambda version, t: cls()


def build_corpus(conn: RawConnection, targets: Targets) -> Corpus:
    advertised = conn.advertised_versions()
    frames = []
    correlation_id = 1
    for api_key, (low, high) in sorted(advertised.items()):
        spec = messages.APIS[api_key]
        build = builder_for(api_key)
        for version in range(max(low, spec.min_version), min(high, spec.max_version) + 1):
            frames.append(
                (api_key, version, encode_request(api_key, version, correlation_id, build(version, targets)))
            )
            correlation_id += 1
    return Corpus(frames, advertised, targets.keep_id)


# ---------------------------------------------------------------------- mutations
#: Bit flips (which reach deepest into a request) and overwritten length-like fields come up more often.
MUTATION_KINDS = (
    ("flip",) * 3 + ("insert", "delete", "truncate") + ("extreme",) * 2 + ("version", "api-key", "size")
)
INT32_EXTREMES = [-1, -2, 0x7FFFFFFF, -(2**31), 0x10000000, 0x00FFFFFF]
INT16_EXTREMES = [-1, -2, 0x7FFF, -(2**15)]
UVARINT_EXTREMES = [b"\xff\xff\xff\xff\x0f", b"\xfe\xff\xff\xff\x07", b"\x80\x80\x80\x80\x80\x01", b"\x00"]


def mutate(rng: random.Random, corpus: Corpus) -> Mutant:
    """One mutated copy of a random corpus frame, never one that legitimately destroys the kept data."""
    while True:
        mutant = mutate_once(rng, corpus)
        if not legitimately_destroys_kept_data(mutant, corpus.keep_id):
            return mutant


def mutate_once(rng: random.Random, corpus: Corpus) -> Mutant:
    api_key, version, original = rng.choice(corpus.frames)
    payload = bytearray(original[4:])
    kind = rng.choice(MUTATION_KINDS)
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            payload[rng.randrange(len(payload))] ^= 1 << rng.randrange(8)
    elif kind == "insert":
        at = rng.randrange(len(payload) + 1)
        payload[at:at] = rng.randbytes(rng.randint(1, 8))
    elif kind == "delete":
        at = rng.randrange(len(payload))
        del payload[at : at + rng.randint(1, 8)]
    elif kind == "truncate":
        del payload[rng.randrange(len(payload)) :]
    elif kind == "extreme":
        choice = rng.randrange(3)
        if choice == 0:
            field = struct.pack(">i", rng.choice(INT32_EXTREMES))
        elif choice == 1:
            field = struct.pack(">h", rng.choice(INT16_EXTREMES))
        else:
            field = rng.choice(UVARINT_EXTREMES)
        at = rng.randrange(max(len(payload) - len(field), 0) + 1)
        payload[at : at + len(field)] = field
    elif kind == "version":
        low, high = corpus.advertised[api_key]
        version = rng.choice(
            [-1, low - 1, high + 1, high + 2, rng.randint(-(2**15), 2**15 - 1), rng.randint(0, high)]
        )
        struct.pack_into(">h", payload, 2, version)
    elif kind == "api-key":
        api_key = rng.choice([*corpus.advertised, rng.randint(-(2**15), 2**15 - 1)])
        struct.pack_into(">h", payload, 0, api_key)
    else:
        true_size = len(payload)
        declared = rng.choice(
            [true_size - 1, true_size + 1, true_size * 2, 0, -1, 2**31 - 1, rng.randint(1, 10_000)]
        )
        return Mutant(kind, api_key, version, SIZE_PREFIX.pack(declared) + payload, framed=False)
    return Mutant(kind, api_key, version, SIZE_PREFIX.pack(len(payload)) + payload, framed=True)


def legitimately_destroys_kept_data(mutant: Mutant, keep_id: uuid.UUID) -> bool:
    """Whether the broker would read the mutant's first frame as a valid request to delete or reconfigure
    the kept topic (say a DescribeLogDirs body relabelled as DeleteTopics). Obeying one is no damage, so such
    mutants are left out: the storm is about requests the broker must survive, not ones it must carry out.
    """
    payload = mutant.data[SIZE_PREFIX.size :]
    (declared,) = SIZE_PREFIX.unpack_from(mutant.data)
    if not 0 <= declared <= len(payload):
        return False  # refused, or the rest never arrives
    try:
        header, body_at = decode_request_header(memoryview(payload[:declared]))
        spec = messages.APIS[header.api_key]
        request, _ = spec.module.decode_request(memoryview(payload[:declared]), body_at, header.api_version)
    except (KeyError, ValueError):
        return False
    if header.api_key == delete_topics.API_KEY:
        return (
            any(t.name == KEEP or t.topic_id == keep_id for t in request.topics)
            or KEEP in request.topic_names
        )
    if header.api_key == delete_records.API_KEY:
        return any(t.name == KEEP for t in request.topics)
    if header.api_key in (alter_configs.API_KEY, incremental_alter_configs.API_KEY):
        # Anything but another topic's configs may change the kept topic's retention (broker defaults too).
        return any(r.resource_type != TOPIC or r.resource_name == KEEP for r in request.resources)
    return False


# ---------------------------------------------------------------------- the storm
@dataclass
class StormReport:
    sent: int = 0
    outcomes: Counter[str] = dataclasses.field(default_factory=Counter)
    held: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        return f"{self.sent} mutants sent; outcomes {dict(self.outcomes)}; held connections: {self.held[:20]}"


def probe_frame(correlation_id: int) -> bytes:
    return encode_request(api_versions.API_KEY, 0, correlation_id, api_versions.ApiVersionsRequest())


def await_probe(conn: RawConnection, correlation_id: int) -> str:
    """'answered' once the probe's response arrives, 'closed' if the broker hangs up, 'held' on timeout."""
    conn.sock.settimeout(PROBE_TIMEOUT_S)
    try:
        while True:
            body = conn.read_frame()
            (got,) = struct.unpack_from(">i", body)
            if got == correlation_id:
                _, response = decode_response(api_versions.API_KEY, 0, body)
                assert response.error_code == 0, f"the probe got error {response.error_code}"
                return "answered"
    except PeerClosed:
        return "closed"
    except TimeoutError:
        return "held"


def run_storm(port: int, mutants: list[Mutant], rng: random.Random) -> StormReport:
    report = StormReport()
    deadline = time.monotonic() + STORM_BUDGET_S
    conn: RawConnection | None = None
    try:
        for number, mutant in enumerate(mutants):
            if time.monotonic() > deadline:
                break
            if conn is None or rng.random() < FRESH_CONNECTION_RATE:
                if conn is not None:
                    conn.close()
                conn = RawConnection(port)
            report.sent += 1
            try:
                if mutant.framed:
                    probe_id = PROBE_ID_BASE + number
                    conn.send(mutant.data + probe_frame(probe_id))
                    outcome = await_probe(conn, probe_id)
                else:  # the framing is broken from here on: send it and hang up
                    conn.send(mutant.data)
                    outcome = "abandoned"
            except (BrokenPipeError, ConnectionResetError):
                outcome = "closed"
            report.outcomes[outcome] += 1
            if outcome == "held":
                report.held.append(f"{mutant.kind} of api {mutant.api_key} v{mutant.version}")
            if outcome != "answered":
                conn.abort()
                conn = None
    finally:
        if conn is not None:
            conn.close()
    return report


# ---------------------------------------------------------------------- fixtures and tests
@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StromProcess]:
    with StromProcess(tmp_path_factory.mktemp("fuzz") / "data") as process:
        yield process


@pytest.fixture(scope="module")
def corpus(broker: StromProcess) -> Corpus:
    return prepare(broker.port)


def prepare(port: int) -> Corpus:
    """Create the topics, store the data to keep, and build the corpus around it."""
    with RawConnection(port) as conn:
        for name, partitions in ((KEEP, KEEP_PARTITIONS), (SCRATCH, 1), (DOOMED, 1)):
            assert create_topic(conn, name, partitions).error_code == 0, name
        for partition in range(KEEP_PARTITIONS):
            for batch in sample_batches(partition, records_per_batch=5, max_value_size=200):
                assert produce_batch(conn, KEEP, partition, batch).error_code == 0
        for batch in sample_batches(99, records_per_batch=2, max_value_size=50):
            assert produce_batch(conn, SCRATCH, 0, batch).error_code == 0
        stored = [batch for p in range(KEEP_PARTITIONS) for batch in read_partition(conn, KEEP, p).batches]
        response = conn.call(metadata.API_KEY, conn.version_for(metadata.API_KEY), metadata_request([KEEP]))
        (keep,) = response.topics
        return build_corpus(conn, Targets(keep.topic_id, stored))


def exceptions_in(log: str) -> list[str]:
    """The exception line closing each traceback in a broker log."""
    found = []
    in_traceback = False
    for line in log.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
        elif in_traceback and line and not line[0].isspace():
            found.append(line)
            in_traceback = False
    return found


def read_all(conn: RawConnection) -> list[PartitionContent]:
    return [read_partition(conn, KEEP, p) for p in range(KEEP_PARTITIONS)]


def test_every_advertised_api_version_answers_its_corpus_request(
    broker: StromProcess, corpus: Corpus
) -> None:
    """The corpus is sound and the broker serves every version it advertises before anything is mutated."""
    failures = []
    conn = RawConnection(broker.port)
    try:
        for api_key, version, request_frame in corpus.frames:
            (correlation_id,) = struct.unpack_from(">i", request_frame, 8)
            try:
                conn.send(request_frame)
                got, _ = decode_response(api_key, version, conn.read_frame())
            except (PeerClosed, OSError) as exc:
                failures.append(f"{messages.APIS[api_key].name} v{version}: {exc!r}")
                conn.close()
                conn = RawConnection(broker.port)
                continue
            if got != correlation_id:
                failures.append(f"{messages.APIS[api_key].name} v{version}: correlation id {got}")
    finally:
        conn.close()
    assert not failures, "\n".join(failures)
    assert {api_key for api_key, _, _ in corpus.frames} == set(corpus.advertised)


def test_mutation_storm_leaves_the_broker_up_and_its_logs_intact(
    broker: StromProcess, corpus: Corpus
) -> None:
    rng = random.Random(SEED)
    mutants = [mutate(rng, corpus) for _ in range(CASES)]
    with RawConnection(broker.port) as conn:
        before = read_all(conn)
    log_start = len(broker.read_log())

    report = run_storm(broker.port, mutants, rng)
    print(report.summary())
    storm_log = broker.read_log()[log_start:]

    assert broker.running, (
        f"the broker died during the storm ({report.summary()}):\n{broker.read_log()[-LOG_TAIL_CHARS:]}"
    )
    assert report.outcomes["answered"] > 0, report.summary()
    assert_broker_answers(broker.port)
    with RawConnection(broker.port) as conn:
        assert_still_holds(conn, before)
        after_storm = read_all(conn)

    assert broker.stop() == 0, f"unclean stop after the storm:\n{broker.read_log()[-LOG_TAIL_CHARS:]}"
    broker.start()
    assert_broker_answers(broker.port)
    with RawConnection(broker.port) as conn:
        assert read_all(conn) == after_storm

    # Last, as it is the mildest failure: a request the broker could decode but a handler choked on. The
    # dispatcher closes such connections to stay up, but Kafka answers them (with an error code).
    failures = exceptions_in(storm_log)
    assert not failures, "handlers failed during the storm:\n" + "\n".join(sorted(set(failures)))


def test_mutations_are_deterministic_for_a_seed_and_cover_every_kind(corpus: Corpus) -> None:
    """A failing storm can be replayed from its seed, and every kind of mutation is in the mix."""
    first, again = random.Random(SEED), random.Random(SEED)
    assert [mutate(first, corpus) for _ in range(50)] == [mutate(again, corpus) for _ in range(50)]
    kinds = {mutate(first, corpus).kind for _ in range(500)}
    assert kinds == {"flip", "insert", "delete", "truncate", "extreme", "version", "api-key", "size"}
