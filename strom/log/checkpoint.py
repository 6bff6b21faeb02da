"""Offset checkpoint files (recovery-point-offset-checkpoint, log-start-offset-checkpoint) in Kafka's format:

0                  <- format version
2                  <- number of entries
orders 0 1200      <- topic partition offset
orders 1 877
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from strom.log.files import write_atomically

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 0

TopicPartition = tuple[str, int]


class MalformedCheckpointError(ValueError):
    pass


def read_checkpoint(path: Path) -> dict[TopicPartition, int]:
    """The offsets in ``path``; {} when it does not exist. MalformedCheckpointError on a bad file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    lines = text.splitlines()
    try:
        version = int(lines[0])
        count = int(lines[1])
    except (IndexError, ValueError) as exc:
        raise MalformedCheckpointError(f"{path}: bad header") from exc
    if version != CHECKPOINT_VERSION:
        raise MalformedCheckpointError(f"{path}: unrecognized version {version}")
    entries = lines[2:]
    if len(entries) != count:
        raise MalformedCheckpointError(f"{path}: expected {count} entries, found {len(entries)}")
    offsets: dict[TopicPartition, int] = {}
    for line in entries:
        parts = line.split(" ")
        if len(parts) != 3:
            raise MalformedCheckpointError(f"{path}: malformed line {line!r}")
        try:
            offsets[(parts[0], int(parts[1]))] = int(parts[2])
        except ValueError as exc:
            raise MalformedCheckpointError(f"{path}: malformed line {line!r}") from exc
    return offsets


def read_checkpoint_or_empty(path: Path) -> dict[TopicPartition, int]:
    """Like read_checkpoint, but a damaged file only costs a full recovery (as in Kafka): warn, return {}."""
    try:
        return read_checkpoint(path)
    except MalformedCheckpointError as exc:
        logger.warning("ignoring damaged checkpoint: %s", exc)
        return {}


def write_checkpoint(path: Path, offsets: Mapping[TopicPartition, int]) -> None:
    lines = [str(CHECKPOINT_VERSION), str(len(offsets))]
    lines += [f"{topic} {partition} {offset}" for (topic, partition), offset in sorted(offsets.items())]
    write_atomically(path, ("\n".join(lines) + "\n").encode("utf-8"))
