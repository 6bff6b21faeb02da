"""Offset and time indexes: Kafka's entry formats, binary-search lookups, truncation, persistence."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.log.index import CorruptIndexError, OffsetIndex, TimeIndex


def _offset_index(tmp_path: Path, base: int = 100, max_bytes: int = 1024) -> OffsetIndex:
    return OffsetIndex(tmp_path / f"{base:020d}.index", base, max_bytes)


def _time_index(tmp_path: Path, base: int = 100, max_bytes: int = 1200) -> TimeIndex:
    return TimeIndex(tmp_path / f"{base:020d}.timeindex", base, max_bytes)


class TestOffsetIndex:
    def test_lookup_finds_the_floor_entry(self, tmp_path: Path) -> None:
        index = _offset_index(tmp_path)
        for offset, position in ((104, 500), (110, 1200), (111, 1300)):
            index.append(offset, position)
        assert index.lookup(99) == (100, 0)
        assert index.lookup(103) == (100, 0)
        assert index.lookup(104) == (104, 500)
        assert index.lookup(109) == (104, 500)
        assert index.lookup(10**9) == (111, 1300)
        assert index.floor_position(1299) == 1200 and index.floor_position(10) == 0
        index.close()

    def test_entries_must_increase(self, tmp_path: Path) -> None:
        index = _offset_index(tmp_path)
        index.append(104, 500)
        with pytest.raises(ValueError):
            index.append(104, 600)
        with pytest.raises(ValueError):
            index.append(105, 500)
        index.close()

    def test_full(self, tmp_path: Path) -> None:
        index = _offset_index(tmp_path, max_bytes=20)  # room for two 8-byte entries
        index.append(101, 10)
        assert not index.is_full
        index.append(102, 20)
        assert index.is_full
        index.close()

    def test_persist_writes_kafka_format(self, tmp_path: Path) -> None:
        index = _offset_index(tmp_path)
        index.append(104, 500)
        index.persist()
        index.append(110, 1200)
        index.persist()
        assert index.path.read_bytes() == struct.pack(">iiii", 4, 500, 10, 1200)
        index.truncate_to(110)
        assert index.path.read_bytes() == struct.pack(">ii", 4, 500)
        index.append(107, 900)
        index.persist()
        index.fsync()
        index.close()
        loaded = _offset_index(tmp_path)
        loaded.load(segment_size=1000)
        assert (loaded.lookup(108), len(loaded)) == ((107, 900), 2)
        loaded.close()

    @pytest.mark.parametrize(
        ("content", "segment_size"),
        [
            (b"\x00\x00\x00", 1000),  # not a whole entry
            (struct.pack(">iiii", 5, 100, 5, 200), 1000),  # offsets not increasing
            (struct.pack(">ii", 5, 2000), 1000),  # position past the segment
        ],
    )
    def test_corrupt_files_are_detected(self, tmp_path: Path, content: bytes, segment_size: int) -> None:
        index = _offset_index(tmp_path)
        index.path.write_bytes(content)
        with pytest.raises(CorruptIndexError):
            index.load(segment_size)
        index.close()

    @settings(max_examples=40, deadline=None)
    @given(
        gaps=st.lists(st.tuples(st.integers(1, 50), st.integers(1, 5000)), max_size=60),
        probes=st.lists(st.integers(0, 4000), min_size=1, max_size=30),
    )
    def test_lookup_matches_a_scan(self, tmp_path_factory: pytest.TempPathFactory, gaps, probes) -> None:  # type: ignore[no-untyped-def]
        index = _offset_index(tmp_path_factory.mktemp("idx"), base=0, max_bytes=1 << 20)
        entries: list[tuple[int, int]] = []
        offset = position = 0
        for offset_gap, position_gap in gaps:
            offset, position = offset + offset_gap, position + position_gap
            index.append(offset, position)
            entries.append((offset, position))
        for probe in probes:
            assert index.lookup(probe) == max((e for e in entries if e[0] <= probe), default=(0, 0))
        index.close()


class TestTimeIndex:
    def test_only_increasing_timestamps_are_kept(self, tmp_path: Path) -> None:
        index = _time_index(tmp_path)
        index.maybe_append(-1, 100)  # batches without timestamps are never indexed
        index.maybe_append(1000, 102)
        index.maybe_append(1000, 105)
        index.maybe_append(900, 106)
        index.maybe_append(2000, 110)
        assert len(index) == 2
        assert index.lookup(999) == (-1, 100)
        assert index.lookup(1500) == (1000, 102)
        assert index.lookup(5000) == (2000, 110)
        assert index.last_entry() == (2000, 110)
        index.close()

    def test_truncate_and_reload(self, tmp_path: Path) -> None:
        index = _time_index(tmp_path)
        for number in range(5):
            index.maybe_append(1000 + number, 100 + number * 3)
        index.persist()
        assert index.path.read_bytes()[:12] == struct.pack(">qi", 1000, 0)
        index.truncate_to(106)
        assert index.last_entry() == (1001, 103)
        assert len(index.path.read_bytes()) == 24
        index.close()
        loaded = _time_index(tmp_path)
        loaded.load(next_offset=110)
        assert loaded.last_entry() == (1001, 103)
        loaded.close()

    def test_entry_beyond_the_segment_is_corrupt(self, tmp_path: Path) -> None:
        index = _time_index(tmp_path)
        index.path.write_bytes(struct.pack(">qi", 5, 20))
        with pytest.raises(CorruptIndexError):
            index.load(next_offset=110)
        index.close()
