"""Consumer-group behaviour every client must show, judged the same way whichever client plays the members.

Group members run as child processes, so that one can be killed with SIGKILL the way a crashed service
dies (no LeaveGroup, no last commit). A member is a small program for one client — each Python client's
test module runs itself as one (``python test_groups_<client>.py CONFIG``), kafkajs runs
``js/group_member.js`` — that takes a ``MemberConfig`` as JSON in its first argument, consumes, and reports
what happens to it as JSON lines on stdout:

- ``assigned`` / ``revoked`` / ``lost``: ``partitions`` (the ones that changed), ``assignment`` (everything
  it owns afterwards) and ``generation`` (when the client tells it, else null);
- ``rebalancing``: the group is rebalancing and the client does not say what it gives up (kafkajs);
- ``record``: ``partition``, ``offset``, ``value``; ``committed``: ``partition``, ``offset``;
- ``commit_failed``: ``partition``, ``offset``, ``error``; ``error``: ``message`` (a client complaint that
  did not stop it); ``closed``: it left the group and is exiting.

It closes (leaving the group as its client does on close) when a ``close`` line arrives on stdin or stdin
ends. The scenarios at the bottom take a ``spawn`` function that starts one member of the client under
test; records are produced and offsets read with confluent-kafka, the reference client.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from confluent_kafka import OFFSET_INVALID, ConsumerGroupTopicPartitions, Producer
from confluent_kafka.admin import AdminClient
from scenario import CLIENT_TIMEOUT_S, create_topic_with_confluent

from strom.testing.process import StromProcess

GROUP_PARTITIONS = 6
SMALL_PARTITIONS = 3
# Kafka's group.min.session.timeout.ms is 6 s: the shortest session a member may ask for.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000
AUTO_COMMIT_INTERVAL_MS = 200
# Every wait below ends here at the latest; these bound a broken run, they are not performance targets.
WAIT_S = 60.0
CLOSE_WAIT_S = 30.0
STROM_COMMAND_TIMEOUT_S = 120
_POLL_S = 0.05
_STDERR_TAIL_LINES = 40
# Tests start groups by the dozen; Kafka's default 3 s delay before a new group's first rebalance would
# only make them slower, and no scenario here depends on it.
GROUP_BROKER_OVERRIDES = {"group.initial.rebalance.delay.ms": "0"}


def start_group_broker(base: Path) -> StromProcess:
    """A broker for the group tests (see GROUP_BROKER_OVERRIDES)."""
    return StromProcess(base / "data", overrides=GROUP_BROKER_OVERRIDES).start()


# ------------------------------------------------------------------------------------------ one member


@dataclass(frozen=True)
class MemberConfig:
    """How a member consumes: Kafka's consumer settings, plus what it commits when auto-commit is off.

    ``commit_each`` commits, synchronously, the offset after each record it handles, never past
    ``commit_limit`` when that is set. ``assignor`` is roundrobin (every client has it), range or
    cooperative-sticky.
    """

    bootstrap: str
    topic: str
    group_id: str
    client_id: str = "compat-member"
    session_timeout_ms: int = SESSION_TIMEOUT_MS
    heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS
    auto_offset_reset: str = "earliest"
    enable_auto_commit: bool = False
    auto_commit_interval_ms: int = AUTO_COMMIT_INTERVAL_MS
    commit_each: bool = False
    commit_limit: int | None = None
    group_instance_id: str | None = None
    assignor: str = "roundrobin"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> MemberConfig:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Consumed:
    """A record as a member reported it."""

    partition: int
    offset: int
    value: str


class Member:
    """One member process, seen through the events it prints."""

    def __init__(self, name: str, command: Sequence[str], *, cwd: Path | None = None) -> None:
        self.name = name
        self._process = subprocess.Popen(
            list(command),
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "KAFKAJS_NO_PARTITIONER_WARNING": "1"},
        )
        self._lock = threading.Lock()
        self._ended_on_purpose = False
        self._events: list[dict[str, Any]] = []
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
        assert self._process.stdout is not None and self._process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read_events, args=(self._process.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self._process.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    # -- what it reported ------------------------------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    @property
    def assignment(self) -> frozenset[int]:
        """The partitions it owns now, by its last assignment event."""
        for event in reversed(self.events):
            if event["event"] == "rebalancing":
                return frozenset()
            if "assignment" in event:
                return frozenset(event["assignment"])
        return frozenset()

    @property
    def generation(self) -> int | None:
        """The generation of its last assignment event, when its client reports one."""
        for event in reversed(self.events):
            if "assignment" in event:
                generation: int | None = event.get("generation")
                return generation
        return None

    def rebalance_events(self) -> list[dict[str, Any]]:
        return [
            event for event in self.events if event["event"] in {"assigned", "revoked", "lost", "rebalancing"}
        ]

    def records(self) -> list[Consumed]:
        return [
            Consumed(event["partition"], event["offset"], event["value"])
            for event in self.events
            if event["event"] == "record"
        ]

    def offsets_read(self, partition: int) -> list[int]:
        return [record.offset for record in self.records() if record.partition == partition]

    def committed(self) -> dict[int, int]:
        """The last offset it committed per partition (with ``commit_each``)."""
        latest: dict[int, int] = {}
        for event in self.events:
            if event["event"] == "committed":
                latest[event["partition"]] = event["offset"]
        return latest

    def revoked(self) -> set[int]:
        """Every partition it was ever told to give up (revoked or lost)."""
        return {
            partition
            for event in self.events
            if event["event"] in {"revoked", "lost"}
            for partition in event["partitions"]
        }

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    @property
    def crashed(self) -> bool:
        """It exited without being told to close or being killed."""
        return not self._ended_on_purpose and self._process.poll() is not None

    def describe(self) -> str:
        """What it said, for assertion messages."""
        interesting = [event for event in self.events if event["event"] != "record"][-12:]
        return (
            f"{self.name} (exit {self._process.poll()}): assignment {sorted(self.assignment)}, "
            f"{len(self.records())} records, events {interesting}, stderr tail: {list(self._stderr)[-8:]}"
        )

    # -- ending it -------------------------------------------------------------------------------------

    def close(self) -> None:
        """Ask it to leave the group and exit; killed if it does not."""
        self._ended_on_purpose = True
        if self._process.poll() is None:
            with contextlib.suppress(OSError):
                assert self._process.stdin is not None
                self._process.stdin.write("close\n")
                self._process.stdin.close()
            try:
                self._process.wait(timeout=CLOSE_WAIT_S)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"{self.describe()} did not close within {CLOSE_WAIT_S:g} s") from None
        self._join_readers()

    def kill(self) -> None:
        """SIGKILL: the member vanishes without leaving the group or committing."""
        self._ended_on_purpose = True
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()
        self._join_readers()

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=CLOSE_WAIT_S)

    def _read_events(self, stdout: IO[str]) -> None:
        for line in stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                self._stderr.append(f"(stdout) {line}")
                continue
            with self._lock:
                self._events.append(event)

    def _read_stderr(self, stderr: IO[str]) -> None:
        for line in stderr:
            self._stderr.append(line.rstrip())


SpawnMember = Callable[[MemberConfig], Member]


def python_member(script: Path, config: MemberConfig) -> Member:
    """Run a test module that doubles as a member program."""
    return Member(
        config.group_instance_id or config.client_id, [sys.executable, str(script), config.to_json()]
    )


@contextlib.contextmanager
def members_closed(members: list[Member]) -> Iterator[list[Member]]:
    """Close (or kill) every member in ``members`` on the way out, even those added later."""
    try:
        yield members
    finally:
        for member in members:
            with contextlib.suppress(AssertionError):
                member.close()


def wait_for(
    condition: Callable[[], bool], what: str, members: Iterable[Member] = (), timeout: float = WAIT_S
) -> None:
    """Poll until ``condition`` holds; fail with ``what`` and the members' reports after ``timeout``, or at
    once when one of ``members`` has crashed."""
    members = list(members)
    deadline = time.monotonic() + timeout
    while not condition():
        crashed = [member for member in members if member.crashed]
        if crashed or time.monotonic() > deadline:
            reason = "a member crashed" if crashed else f"gave up after {timeout:g} s"
            reports = "\n".join(member.describe() for member in members)
            raise AssertionError(f"{reason} waiting for {what}\n{reports}")
        time.sleep(_POLL_S)


def owners(members: Sequence[Member]) -> dict[int, list[Member]]:
    """Partition → the members that say they own it."""
    owned: dict[int, list[Member]] = collections.defaultdict(list)
    for member in members:
        for partition in member.assignment:
            owned[partition].append(member)
    return owned


def split_among(members: Sequence[Member], partitions: Collection[int]) -> bool:
    """Every partition owned by exactly one member, and every member owning some."""
    owned = owners(members)
    return (
        set(owned) == set(partitions)
        and all(len(holders) == 1 for holders in owned.values())
        and all(member.assignment for member in members)
    )


def wait_for_split(members: Sequence[Member], partitions: Collection[int]) -> dict[int, Member]:
    """Wait until the members split the partitions; returns each partition's owner."""
    wait_for(
        lambda: split_among(members, partitions),
        f"the members to split partitions {sorted(partitions)}",
        members,
    )
    return {partition: holders[0] for partition, holders in owners(members).items()}


# ------------------------------------------------------------------------------- producing and checking


def group_of(topic: str) -> str:
    return f"{topic}.group"


def produce_values(
    bootstrap: str, topic: str, partitions: Iterable[int], count: int, tag: str
) -> dict[int, list[int]]:
    """``count`` records ``<tag>-<partition>-<n>`` to each partition; returns the offsets acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    acknowledged: dict[int, list[int]] = collections.defaultdict(list)
    failures: list[str] = []

    def on_delivery(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(str(error))
        else:
            acknowledged[message.partition()].append(message.offset())

    for partition in partitions:
        for number in range(count):
            producer.produce(
                topic,
                value=f"{tag}-{partition}-{number}".encode(),
                partition=partition,
                on_delivery=on_delivery,
            )
    assert producer.flush(CLIENT_TIMEOUT_S) == 0, "records still unacknowledged"
    assert not failures, f"produce failed: {failures[:3]}"
    return {partition: sorted(offsets) for partition, offsets in acknowledged.items()}


def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    """The group's committed offsets by partition, as the cluster reports them to an admin client."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    future = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=CLIENT_TIMEOUT_S
    )[group]
    result = future.result(timeout=CLIENT_TIMEOUT_S)
    return {
        tp.partition: tp.offset
        for tp in result.topic_partitions
        if tp.offset != OFFSET_INVALID and tp.error is None
    }


def listed_groups(bootstrap: str) -> dict[str, str]:
    """Group id → state name, as ListGroups reports them."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = admin.list_consumer_groups(request_timeout=CLIENT_TIMEOUT_S).result(timeout=CLIENT_TIMEOUT_S)
    return {listing.group_id: listing.state.name for listing in result.valid}


def read_all(member: Member, ends: Mapping[int, int], start: int = 0) -> Callable[[], bool]:
    """Condition: the member has read every offset from ``start`` to each partition's end."""

    def done() -> bool:
        return all(
            set(range(start, end)) <= set(member.offsets_read(partition)) for partition, end in ends.items()
        )

    return done


def first_offsets(member: Member, partitions: Iterable[int]) -> dict[int, int | None]:
    return {partition: min(member.offsets_read(partition), default=None) for partition in partitions}


def strom_command(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``strom ARGS`` against the broker at ``bootstrap``."""
    return subprocess.run(
        [sys.executable, "-m", "strom.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "STROM_BOOTSTRAP": bootstrap},
        timeout=STROM_COMMAND_TIMEOUT_S,
        check=False,
    )


# --------------------------------------------------------------------------------------------- scenarios


def split_then_survive_sigkill(spawn: SpawnMember, bootstrap: str, topic: str) -> None:
    """Three members split six partitions, each owned by exactly one. One is killed with SIGKILL: once its
    session times out its partitions go to the other two, which resume exactly at its last commits."""
    create_topic_with_confluent(bootstrap, topic, partitions=GROUP_PARTITIONS)
    group = group_of(topic)
    everything = range(GROUP_PARTITIONS)
    base = MemberConfig(bootstrap, topic, group, commit_each=True)
    with members_closed([spawn(replace(base, client_id=f"member-{index}")) for index in range(3)]) as members:
        owner = wait_for_split(members, everything)
        assert {len(member.assignment) for member in members} == {2}, [
            member.describe() for member in members
        ]

        produce_values(bootstrap, topic, everything, 5, "first")
        wait_for(
            lambda: all(owner[partition].committed().get(partition) == 5 for partition in everything),
            "every member to commit the first records of its partitions",
            members,
        )
        victim = members[1]
        orphaned = victim.assignment
        victim.kill()
        survivors = [members[0], members[2]]
        new_owner = wait_for_split(survivors, everything)
        assert orphaned <= set(new_owner), "the killed member's partitions were not handed over"

        produce_values(bootstrap, topic, everything, 5, "second")
        for partition in everything:
            reader = new_owner[partition]
            wait_for(
                lambda reader=reader, partition=partition: 9 in reader.offsets_read(partition),
                f"{reader.name} to read partition {partition} to its end",
                survivors,
            )
        for partition in orphaned:
            taken_over = new_owner[partition].offsets_read(partition)
            assert min(taken_over) == 5 and sorted(taken_over) == list(range(5, 10)), (
                f"the killed member's partition {partition} was read from {sorted(taken_over)}, not from "
                "its committed offset 5 on"
            )
        for partition in everything:
            read_by_anyone = {offset for member in members for offset in member.offsets_read(partition)}
            assert read_by_anyone == set(range(10)), (
                f"partition {partition}: offsets read {sorted(read_by_anyone)}"
            )


def reset_to_earliest_reads_everything(spawn: SpawnMember, bootstrap: str, topic: str) -> None:
    """A new group with auto.offset.reset=earliest starts at the first offset of every partition."""
    create_topic_with_confluent(bootstrap, topic, partitions=SMALL_PARTITIONS)
    ends = {partition: 4 for partition in range(SMALL_PARTITIONS)}
    produce_values(bootstrap, topic, ends, 4, "old")
    config = MemberConfig(bootstrap, topic, group_of(topic), auto_offset_reset="earliest")
    with members_closed([spawn(config)]) as (member,):
        wait_for(read_all(member, ends), "the member to read every record", [member])
        assert first_offsets(member, ends) == {partition: 0 for partition in ends}


def reset_to_latest_skips_old_records(spawn: SpawnMember, bootstrap: str, topic: str) -> None:
    """A new group with auto.offset.reset=latest reads only what is written after it joined."""
    create_topic_with_confluent(bootstrap, topic, partitions=SMALL_PARTITIONS)
    partitions = range(SMALL_PARTITIONS)
    produce_values(bootstrap, topic, partitions, 4, "old")
    config = MemberConfig(bootstrap, topic, group_of(topic), auto_offset_reset="latest")
    with members_closed([spawn(config)]) as (member,):
        wait_for(
            lambda: member.assignment == set(partitions),
            "the member to be assigned every partition",
            [member],
        )
        # The member looks up the log end some time after its assignment: keep writing until it reads.
        deadline = time.monotonic() + WAIT_S
        while not all(member.offsets_read(partition) for partition in partitions):
            assert time.monotonic() < deadline, member.describe()
            produce_values(bootstrap, topic, [p for p in partitions if not member.offsets_read(p)], 1, "new")
            with contextlib.suppress(AssertionError):
                wait_for(lambda: all(member.offsets_read(p) for p in partitions), "records", timeout=1.0)
        old = [record for record in member.records() if record.value.startswith("old") or record.offset < 4]
        assert not old, f"records from before the member joined were read: {old[:3]}"


def auto_commit_commits_while_consuming(spawn: SpawnMember, bootstrap: str, topic: str) -> None:
    """With enable.auto.commit the read positions become the group's committed offsets while it consumes."""
    create_topic_with_confluent(bootstrap, topic, partitions=SMALL_PARTITIONS)
    ends = {partition: 4 for partition in range(SMALL_PARTITIONS)}
    produce_values(bootstrap, topic, ends, 4, "auto")
    group = group_of(topic)
    config = MemberConfig(bootstrap, topic, group, enable_auto_commit=True)
    with members_closed([spawn(config)]) as (member,):
        wait_for(read_all(member, ends), "the member to read every record", [member])
        wait_for(
            lambda: committed_offsets(bootstrap, group) == ends,
            "auto-commit to commit every partition's end",
            [member],
        )
        assert member.running, "the offsets must be committed by auto-commit, not by closing"


def no_auto_commit_commits_nothing(spawn: SpawnMember, bootstrap: str, topic: str) -> None:
    """Without auto-commit and without commits the group keeps no offsets: the next member starts over."""
    create_topic_with_confluent(bootstrap, topic, partitions=SMALL_PARTITIONS)
    ends = {partition: 4 for partition in range(SMALL_PARTITIONS)}
    produce_values(bootstrap, topic, ends, 4, "manual")
    group = group_of(topic)
    config = MemberConfig(bootstrap, topic, group, enable_auto_commit=False)
    with members_closed([spawn(config)]) as (first,):
        wait_for(read_all(first, ends), "the first member to read every record", [first])
        first.close()
    assert committed_offsets(bootstrap, group) == {}
    with members_closed([spawn(config)]) as (second,):
        wait_for(read_all(second, ends), "the second member to read every record", [second])
        assert first_offsets(second, ends) == {partition: 0 for partition in ends}


def restart_resumes_after_last_commit(spawn: SpawnMember, bootstrap: str, topic: str) -> None:
    """A member commits up to offset 2 of each partition and stops; its successor starts exactly there."""
    create_topic_with_confluent(bootstrap, topic, partitions=SMALL_PARTITIONS)
    ends = {partition: 5 for partition in range(SMALL_PARTITIONS)}
    produce_values(bootstrap, topic, ends, 5, "resume")
    group = group_of(topic)
    committing = MemberConfig(bootstrap, topic, group, commit_each=True, commit_limit=2)
    with members_closed([spawn(committing)]) as (first,):
        wait_for(read_all(first, ends), "the first member to read every record", [first])
        wait_for(
            lambda: first.committed() == {partition: 2 for partition in ends},
            "commits up to offset 2",
            [first],
        )
        first.close()
    assert committed_offsets(bootstrap, group) == {partition: 2 for partition in ends}
    with members_closed([spawn(replace(committing, commit_each=False))]) as (second,):
        wait_for(read_all(second, ends, start=2), "the second member to read to the end", [second])
        for partition in ends:
            assert second.offsets_read(partition) == [2, 3, 4], f"partition {partition}: {second.describe()}"


def static_member_restart_keeps_assignment(spawn: SpawnMember, bootstrap: str, topic: str) -> None:
    """A static member (group.instance.id) killed and restarted within its session timeout gets its old
    partitions back and the group does not rebalance: the others keep their assignment and generation."""
    create_topic_with_confluent(bootstrap, topic, partitions=GROUP_PARTITIONS)
    group = group_of(topic)
    everything = range(GROUP_PARTITIONS)
    configs = [
        MemberConfig(
            bootstrap, topic, group, client_id=f"static-{index}", group_instance_id=f"{group}.static-{index}"
        )
        for index in range(3)
    ]
    with members_closed([spawn(config) for config in configs]) as members:
        wait_for_split(members, everything)
        others = [members[0], members[2]]
        before = {
            member.name: (member.assignment, member.generation, len(member.rebalance_events()))
            for member in others
        }
        restarted_partitions, restarted_generation = members[1].assignment, members[1].generation

        members[1].kill()
        replacement = spawn(configs[1])
        members.append(replacement)
        wait_for(
            lambda: bool(replacement.assignment),
            "the restarted static member to be assigned",
            [replacement, *others],
        )
        assert replacement.assignment == restarted_partitions
        if restarted_generation is not None and replacement.generation is not None:
            assert replacement.generation == restarted_generation, "the restart opened a new generation"

        # Past the session timeout of the killed instance: had the broker kept its old member id, it would
        # have expired it by now and rebalanced.
        time.sleep(SESSION_TIMEOUT_MS / 1000 + 2 * HEARTBEAT_INTERVAL_MS / 1000)
        produce_values(bootstrap, topic, everything, 1, "after-restart")
        current = [members[0], replacement, members[2]]
        owner = {partition: member for member in current for partition in member.assignment}
        for partition in everything:
            wait_for(
                lambda partition=partition: any(
                    record.value.startswith("after-restart")
                    for record in owner[partition].records()
                    if record.partition == partition
                ),
                f"partition {partition}'s owner to read the record written after the restart",
                current,
            )
        after = {
            member.name: (member.assignment, member.generation, len(member.rebalance_events()))
            for member in others
        }
        assert after == before, f"the other members saw a rebalance: before {before}, after {after}"


def cooperative_rebalance_keeps_untouched_partitions(spawn: SpawnMember, bootstrap: str, topic: str) -> None:
    """With cooperative-sticky assignment a second member takes half the partitions; the first gives up only
    those (an eager rebalance revokes everything) and goes on consuming the rest where it was."""
    create_topic_with_confluent(bootstrap, topic, partitions=GROUP_PARTITIONS)
    everything = range(GROUP_PARTITIONS)
    base = MemberConfig(bootstrap, topic, group_of(topic), commit_each=True, assignor="cooperative-sticky")
    with members_closed([spawn(replace(base, client_id="first"))]) as members:
        first = members[0]
        wait_for(
            lambda: first.assignment == set(everything), "the first member to own every partition", members
        )
        produce_values(bootstrap, topic, everything, 3, "alone")
        wait_for(
            lambda: first.committed() == {partition: 3 for partition in everything},
            "the first member's commits",
            members,
        )

        second = spawn(replace(base, client_id="second"))
        members.append(second)
        wait_for_split(members, everything)
        moved, kept = second.assignment, first.assignment
        assert len(moved) == len(kept) == GROUP_PARTITIONS // 2
        assert first.revoked() == moved, f"revoked {sorted(first.revoked())}, but only {sorted(moved)} moved"

        produce_values(bootstrap, topic, everything, 3, "shared")
        for partition in everything:
            reader = first if partition in kept else second
            wait_for(
                lambda reader=reader, partition=partition: 5 in reader.offsets_read(partition),
                f"partition {partition} to be read to its end",
                members,
            )
        for partition in kept:
            assert first.offsets_read(partition) == list(range(6)), (
                f"partition {partition}: {first.describe()}"
            )
        for partition in moved:
            assert second.offsets_read(partition) == [3, 4, 5], f"partition {partition}: {second.describe()}"


def broker_restart_keeps_group_and_offsets(spawn: SpawnMember, broker: StromProcess, topic: str) -> None:
    """Groups and their committed offsets survive a broker restart; a member then resumes where they say."""
    bootstrap = broker.bootstrap
    create_topic_with_confluent(bootstrap, topic, partitions=SMALL_PARTITIONS)
    ends = {partition: 4 for partition in range(SMALL_PARTITIONS)}
    produce_values(bootstrap, topic, ends, 4, "before-restart")
    group = group_of(topic)
    config = MemberConfig(bootstrap, topic, group, commit_each=True)
    with members_closed([spawn(config)]) as (first,):
        wait_for(lambda: first.committed() == ends, "the member's commits", [first])
        first.close()

    broker.restart()
    assert broker.bootstrap == bootstrap, "the broker came back on another port"
    # The coordinator may still be loading the group's records when the broker starts answering.
    wait_for(lambda: group in listed_groups(bootstrap), "the group to be listed again")
    assert listed_groups(bootstrap)[group] == "EMPTY"
    assert committed_offsets(bootstrap, group) == ends

    produce_values(bootstrap, topic, ends, 2, "after-restart")
    with members_closed([spawn(replace(config, commit_each=False))]) as (second,):
        wait_for(
            read_all(second, {partition: 6 for partition in ends}, start=4),
            "the member to read the new records",
            [second],
        )
        assert first_offsets(second, ends) == {partition: 4 for partition in ends}


# --------------------------------------------------------------------------------- inside a member process


class MemberOutput:
    """The member side of the protocol for Python members: events out, the ``close`` request in."""

    def __init__(self) -> None:
        self.close_requested = threading.Event()
        self._assignment: set[int] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._watch_stdin, daemon=True).start()

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields})
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def assigned(self, partitions: Iterable[int], generation: int | None = None) -> None:
        added = sorted(set(partitions))
        self._assignment.update(added)
        self.emit("assigned", partitions=added, assignment=sorted(self._assignment), generation=generation)

    def revoked(
        self, partitions: Iterable[int], generation: int | None = None, *, lost: bool = False
    ) -> None:
        removed = sorted(set(partitions))
        self._assignment.difference_update(removed)
        self.emit(
            "lost" if lost else "revoked",
            partitions=removed,
            assignment=sorted(self._assignment),
            generation=generation,
        )

    def record(self, partition: int, offset: int, value: bytes | None) -> None:
        self.emit("record", partition=partition, offset=offset, value=(value or b"").decode(errors="replace"))

    def _watch_stdin(self) -> None:
        for line in sys.stdin:
            if line.strip() == "close":
                break
        self.close_requested.set()


def member_config_from_argv() -> MemberConfig:
    """The MemberConfig a member program was started with."""
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} MEMBER_CONFIG_JSON")
    return MemberConfig.from_json(sys.argv[1])


@dataclass
class CommitTracker:
    """What ``commit_each`` still has to commit: the next offset per partition, never past the limit."""

    config: MemberConfig
    done: dict[int, int] = field(default_factory=dict)

    def due(self, partition: int, offset: int) -> int | None:
        """The offset to commit after handling ``offset`` of ``partition``, or None."""
        if not self.config.commit_each:
            return None
        target = offset + 1
        if self.config.commit_limit is not None:
            target = min(target, self.config.commit_limit)
        if self.done.get(partition, -1) >= target:
            return None
        return target

    def record_commit(self, partition: int, offset: int) -> None:
        self.done[partition] = offset
