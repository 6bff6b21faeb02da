"""``strom topics``: create, list, describe, alter and delete topics through the Kafka admin API."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from strom.cli.client import (
    CliError,
    add_client_arguments,
    client_config,
    create_client,
    fetch_metadata,
    kafka_error_of,
    kafka_error_text,
    key_value,
    positive_int,
    print_error,
    print_warning,
    wait_future,
)
from strom.cli.output import format_table, print_json

# Kafka's own notion of internal topics (org.apache.kafka.common.internals.Topic); librdkafka's metadata does
# not carry the is_internal flag, so ``topics list`` recognises them by name.
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})

SENSITIVE_PLACEHOLDER = "(sensitive)"

Handler = Callable[[argparse.Namespace, AdminClient, Any], int]


@dataclass(frozen=True)
class ConfigSetting:
    """One topic config as describe shows it."""

    name: str
    value: str | None
    source: str
    is_default: bool
    is_sensitive: bool


@dataclass(frozen=True)
class PartitionState:
    """One partition's placement and offsets; watermarks are None when the cluster could not say."""

    partition: int
    leader: int
    replicas: list[int]
    isr: list[int]
    low_watermark: int | None
    high_watermark: int | None


@dataclass(frozen=True)
class TopicState:
    """Everything ``topics describe`` reports about one topic; configs is None when they could not be read."""

    name: str
    partitions: list[PartitionState]
    configs: list[ConfigSetting] | None

    @property
    def internal(self) -> bool:
        return self.name in INTERNAL_TOPICS

    @property
    def replication_factor(self) -> int:
        return max((len(partition.replicas) for partition in self.partitions), default=0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``topics`` actions on the ``topics`` sub-parser."""
    actions = parser.add_subparsers(dest="topics_action", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="create a topic", description="Create a topic.")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--partitions", type=positive_int, help="number of partitions (default: the broker's num.partitions)"
    )
    create.add_argument(
        "--replication-factor",
        type=positive_int,
        help="copies of each partition (default: the broker's default.replication.factor)",
    )
    create.add_argument(
        "--config",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="topic config, e.g. --config cleanup.policy=compact (repeatable)",
    )
    create.add_argument(
        "--if-not-exists", action="store_true", help="succeed quietly when the topic already exists"
    )
    create.set_defaults(topics_handler=_create)

    list_ = actions.add_parser("list", help="list topics", description="List the topics of the cluster.")
    list_.add_argument("--internal", action="store_true", help="include internal topics such as offsets")
    list_.add_argument("--json", action="store_true", help="machine-readable output")
    list_.set_defaults(topics_handler=_list)

    describe = actions.add_parser(
        "describe",
        help="show partitions, offsets and configs of topics",
        description="Show partitions (leader, replicas, ISR, watermarks) and non-default configs of topics.",
    )
    describe.add_argument("names", nargs="+", metavar="NAME")
    describe.add_argument("--all-configs", action="store_true", help="show every config, defaults included")
    describe.add_argument("--json", action="store_true", help="machine-readable output")
    describe.set_defaults(topics_handler=_describe)

    alter = actions.add_parser(
        "alter",
        help="add partitions or change topic configs",
        description="Add partitions to a topic or change its configs (an incremental alter: configs not "
        "named keep their values).",
    )
    alter.add_argument("name", metavar="NAME")
    alter.add_argument("--partitions", type=positive_int, help="new total number of partitions")
    alter.add_argument(
        "--set",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="set a topic config (repeatable)",
    )
    alter.add_argument(
        "--delete-config",
        action="append",
        default=[],
        metavar="KEY",
        help="revert a topic config to its default (repeatable)",
    )
    alter.set_defaults(topics_handler=_alter, topics_precheck=_check_alter_request)

    delete = actions.add_parser("delete", help="delete topics", description="Delete topics.")
    delete.add_argument("names", nargs="+", metavar="NAME")
    delete.set_defaults(topics_handler=_delete)

    for action_parser in (create, list_, describe, alter, delete):
        add_client_arguments(action_parser)


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``topics`` action; returns the exit status."""
    precheck: Callable[[argparse.Namespace], None] | None = getattr(args, "topics_precheck", None)
    if precheck is not None:
        precheck(args)
    admin = create_client(AdminClient, client_config(args))
    metadata = fetch_metadata(admin, args)
    handler: Handler = args.topics_handler
    return handler(args, admin, metadata)


def _create(args: argparse.Namespace, admin: AdminClient, metadata: Any) -> int:
    new_topic = NewTopic(
        args.name,
        num_partitions=args.partitions if args.partitions is not None else -1,
        replication_factor=args.replication_factor if args.replication_factor is not None else -1,
        config=dict(args.config),
    )
    futures = admin.create_topics([new_topic], request_timeout=args.timeout, operation_timeout=args.timeout)
    try:
        wait_future(futures[args.name], args)
    except KafkaException as exc:
        error = kafka_error_of(exc)
        if args.if_not_exists and error is not None and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            print(f"Topic {args.name} already exists.")
            return 0
        raise CliError(f"cannot create topic '{args.name}': {kafka_error_text(exc)}") from None
    print(f"Created topic {args.name}.")
    return 0


def _list(args: argparse.Namespace, admin: AdminClient, metadata: Any) -> int:
    rows = []
    for name in sorted(metadata.topics):
        if name in INTERNAL_TOPICS and not args.internal:
            continue
        partitions = metadata.topics[name].partitions.values()
        replication_factor = max((len(partition.replicas) for partition in partitions), default=0)
        rows.append((name, len(partitions), replication_factor))
    if args.json:
        print_json(
            [
                {
                    "name": name,
                    "partitions": partition_count,
                    "replication_factor": replication_factor,
                    "internal": name in INTERNAL_TOPICS,
                }
                for name, partition_count, replication_factor in rows
            ]
        )
    elif rows:
        print(format_table(("TOPIC", "PARTITIONS", "REPLICATION"), rows))
    return 0


def _describe(args: argparse.Namespace, admin: AdminClient, metadata: Any) -> int:
    status = 0
    found = []
    for name in dict.fromkeys(args.names):
        if name in metadata.topics:
            found.append(metadata.topics[name])
        else:
            print_error(f"topic '{name}' does not exist")
            status = 1
    configs = _read_configs(admin, [topic.topic for topic in found], args)
    watermarks = _read_watermarks(admin, found, args)
    states = [_topic_state(topic, configs.get(topic.topic), watermarks) for topic in found]
    if args.json:
        print_json([topic_state_json(state, args.all_configs) for state in states])
    elif states:
        print("\n\n".join(render_topic_state(state, args.all_configs) for state in states))
    return status


def _topic_state(
    topic: Any,
    configs: list[ConfigSetting] | None,
    watermarks: dict[tuple[str, int], tuple[int | None, int | None]],
) -> TopicState:
    """Combine a topic's metadata, configs and watermarks."""
    partitions = []
    for partition in sorted(topic.partitions.values(), key=lambda partition: partition.id):
        low, high = watermarks.get((topic.topic, partition.id), (None, None))
        partitions.append(
            PartitionState(
                partition=partition.id,
                leader=partition.leader,
                replicas=list(partition.replicas),
                isr=list(partition.isrs),
                low_watermark=low,
                high_watermark=high,
            )
        )
    return TopicState(name=topic.topic, partitions=partitions, configs=configs)


def _check_alter_request(args: argparse.Namespace) -> None:
    """Usage mistakes of ``topics alter``, caught before connecting."""
    if args.partitions is None and not args.set and not args.delete_config:
        raise CliError("nothing to alter: give --partitions, --set or --delete-config", exit_code=2)
    both = {key for key, _ in args.set} & set(args.delete_config)
    if both:
        raise CliError(f"both set and deleted: {', '.join(sorted(both))}", exit_code=2)


def _alter(args: argparse.Namespace, admin: AdminClient, metadata: Any) -> int:
    if args.name not in metadata.topics:
        raise CliError(f"topic '{args.name}' does not exist")

    if args.set or args.delete_config:
        entries = [
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET) for key, value in args.set
        ]
        entries += [
            ConfigEntry(key, None, incremental_operation=AlterConfigOpType.DELETE)
            for key in args.delete_config
        ]
        resource = ConfigResource(ResourceType.TOPIC, args.name, incremental_configs=entries)
        futures = admin.incremental_alter_configs([resource], request_timeout=args.timeout)
        try:
            wait_future(futures[resource], args)
        except KafkaException as exc:
            raise CliError(f"cannot alter configs of topic '{args.name}': {kafka_error_text(exc)}") from None
        print(f"Updated configs of topic {args.name}.")

    if args.partitions is not None:
        partition_futures = admin.create_partitions(
            [NewPartitions(args.name, args.partitions)],
            request_timeout=args.timeout,
            operation_timeout=args.timeout,
        )
        try:
            wait_future(partition_futures[args.name], args)
        except KafkaException as exc:
            raise CliError(f"cannot add partitions to topic '{args.name}': {kafka_error_text(exc)}") from None
        print(f"Topic {args.name} now has {args.partitions} partitions.")
    return 0


def _delete(args: argparse.Namespace, admin: AdminClient, metadata: Any) -> int:
    names = list(dict.fromkeys(args.names))
    futures = admin.delete_topics(names, request_timeout=args.timeout, operation_timeout=args.timeout)
    status = 0
    for name in names:
        try:
            wait_future(futures[name], args)
        except KafkaException as exc:
            print_error(f"cannot delete topic '{name}': {kafka_error_text(exc)}")
            status = 1
        else:
            print(f"Deleted topic {name}.")
    return status


def _read_configs(
    admin: AdminClient, names: list[str], args: argparse.Namespace
) -> dict[str, list[ConfigSetting]]:
    """Configs of each topic, by name; a topic whose configs could not be read is left out with a warning."""
    if not names:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    futures = admin.describe_configs(resources, request_timeout=args.timeout)
    configs = {}
    for resource in resources:
        try:
            entries = wait_future(futures[resource], args)
        except KafkaException as exc:
            print_warning(f"cannot read configs of topic '{resource.name}': {kafka_error_text(exc)}")
            continue
        configs[resource.name] = sorted(
            (config_setting(entry) for entry in entries.values()), key=lambda setting: setting.name
        )
    return configs


def _read_watermarks(
    admin: AdminClient, topics: Iterable[Any], args: argparse.Namespace
) -> dict[tuple[str, int], tuple[int | None, int | None]]:
    """(low, high) watermark of every partition, keyed by (topic, partition)."""
    partitions = [
        TopicPartition(topic.topic, partition) for topic in topics for partition in topic.partitions
    ]
    if not partitions:
        return {}
    low = _list_offsets(admin, partitions, OffsetSpec.earliest(), args)
    high = _list_offsets(admin, partitions, OffsetSpec.latest(), args)
    return {key: (low.get(key), high.get(key)) for key in {*low, *high}}


def _list_offsets(
    admin: AdminClient, partitions: list[TopicPartition], spec: OffsetSpec, args: argparse.Namespace
) -> dict[tuple[str, int], int]:
    futures = admin.list_offsets({partition: spec for partition in partitions}, request_timeout=args.timeout)
    offsets = {}
    for partition, future in futures.items():
        try:
            offsets[(partition.topic, partition.partition)] = wait_future(future, args).offset
        except KafkaException as exc:
            print_warning(
                f"cannot read offsets of {partition.topic}-{partition.partition}: {kafka_error_text(exc)}"
            )
    return offsets


def config_setting(entry: ConfigEntry) -> ConfigSetting:
    """Our view of a described config entry; a config is default when the cluster's default applies."""
    source = ConfigSource(entry.source)
    return ConfigSetting(
        name=entry.name,
        value=entry.value,
        source=source.name,
        is_default=bool(entry.is_default) or source is ConfigSource.DEFAULT_CONFIG,
        is_sensitive=bool(entry.is_sensitive),
    )


def _shown_configs(state: TopicState, all_configs: bool) -> list[ConfigSetting]:
    return [setting for setting in state.configs or [] if all_configs or not setting.is_default]


def _display_value(setting: ConfigSetting) -> str | None:
    return SENSITIVE_PLACEHOLDER if setting.is_sensitive else setting.value


def render_topic_state(state: TopicState, all_configs: bool) -> str:
    """Aligned text for one described topic."""
    lines = [
        f"Topic: {state.name}",
        f"  Partitions: {len(state.partitions)}  Replication factor: {state.replication_factor}"
        + ("  Internal: yes" if state.internal else ""),
    ]
    shown = _shown_configs(state, all_configs)
    if state.configs is None:
        lines.append("  Configs: unavailable")
    elif not shown:
        lines.append("  Configs: none" if all_configs else "  Configs: all default")
    else:
        lines.append("  Configs:")
        config_rows = [(setting.name, _display_value(setting), setting.source) for setting in shown]
        lines.append(format_table(("NAME", "VALUE", "SOURCE"), config_rows, indent="    "))
    partition_rows = [
        (
            partition.partition,
            partition.leader,
            _node_list(partition.replicas),
            _node_list(partition.isr),
            partition.low_watermark,
            partition.high_watermark,
        )
        for partition in state.partitions
    ]
    lines.append(
        format_table(("PARTITION", "LEADER", "REPLICAS", "ISR", "LOW", "HIGH"), partition_rows, indent="  ")
    )
    return "\n".join(lines)


def topic_state_json(state: TopicState, all_configs: bool) -> dict[str, Any]:
    """JSON document for one described topic; ``configs`` maps name to value (null when sensitive)."""
    return {
        "name": state.name,
        "internal": state.internal,
        "partition_count": len(state.partitions),
        "replication_factor": state.replication_factor,
        "partitions": [
            {
                "partition": partition.partition,
                "leader": partition.leader,
                "replicas": partition.replicas,
                "isr": partition.isr,
                "low_watermark": partition.low_watermark,
                "high_watermark": partition.high_watermark,
            }
            for partition in state.partitions
        ],
        "configs": None
        if state.configs is None
        else {setting.name: setting.value for setting in _shown_configs(state, all_configs)},
    }


def _node_list(node_ids: list[int]) -> str:
    return ",".join(str(node_id) for node_id in node_ids)
