"""``partition.metadata``: the id of the topic a partition directory belongs to (Kafka's file and format).

    version: 0
    topic_id: <the id in Kafka's text form: URL-safe base64 without padding>

Topic names are reused: a topic deleted and created again gets a new id. A log directory whose file names
another id than the topic's is a leftover of the deleted topic (its removal was interrupted), so the broker
drops it instead of serving its records as the new topic's.
"""

from __future__ import annotations

import base64
import logging
import uuid
from pathlib import Path

from strom.log.files import write_atomically

logger = logging.getLogger(__name__)

PARTITION_METADATA_FILE = "partition.metadata"
_VERSION = 0


def read_topic_id(directory: Path) -> uuid.UUID | None:
    """The topic id recorded in ``directory``; None when there is no file or it cannot be read (a directory
    from before the file existed, or a torn write: it is written again)."""
    try:
        text = (directory / PARTITION_METADATA_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    try:
        if int(fields["version"]) != _VERSION:
            raise ValueError(f"unknown version {fields['version']}")
        encoded = fields["topic_id"].strip()
        return uuid.UUID(bytes=base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (KeyError, ValueError) as exc:
        logger.warning("ignoring unreadable %s in %s: %s", PARTITION_METADATA_FILE, directory, exc)
        return None


def write_topic_id(directory: Path, topic_id: uuid.UUID) -> None:
    encoded = base64.urlsafe_b64encode(topic_id.bytes).decode().rstrip("=")
    write_atomically(
        directory / PARTITION_METADATA_FILE, f"version: {_VERSION}\ntopic_id: {encoded}\n".encode()
    )
