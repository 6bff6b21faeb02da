"""File and directory naming shared by the log layer (Kafka's names, so its tools recognise the layout)."""

from __future__ import annotations

import os
from pathlib import Path

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
DELETED_SUFFIX = ".deleted"  # segment files waiting out file.delete.delay.ms
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
DELETE_DIR_SUFFIX = "-delete"  # partition directories being removed


def segment_file_stem(base_offset: int) -> str:
    """Segment files are named by their base offset, zero-padded to 20 digits."""
    return f"{base_offset:020d}"


def parse_segment_stem(stem: str) -> int | None:
    """The base offset encoded in a segment file name, or None if the name is not one."""
    return int(stem) if len(stem) == 20 and stem.isdigit() else None


def log_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def parse_log_dir_name(name: str) -> tuple[str, int]:
    """Split "<topic>-<partition>"; ValueError for anything else (including "-delete" / "-future" dirs)."""
    topic, sep, partition = name.rpartition("-")
    if not sep or not topic or not partition.isdigit():
        raise ValueError(f"{name!r} is not a <topic>-<partition> directory name")
    return topic, int(partition)


def fsync_dir(directory: Path) -> None:
    """Make renames, creations and deletions inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash leaves either the old or the new content, never a mix. A
    failed write (a full disk) removes its temporary file, leaving the old content and no garbage behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
