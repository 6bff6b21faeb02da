"""Log compaction: keeping the latest record per key in old segments of compacted topics.

`manager.LogCleaner` schedules cleanings and swaps their output in; `clean.clean` is one cleaning.
"""

from strom.log.cleaner.manager import CLEANER_OFFSET_CHECKPOINT, CleanerConfig, LogCleaner

__all__ = ["CLEANER_OFFSET_CHECKPOINT", "CleanerConfig", "LogCleaner"]
