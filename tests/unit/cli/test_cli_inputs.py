"""Parsing of command-line values and of producer input lines."""

from __future__ import annotations

import argparse
from datetime import datetime

import pytest

from strom.cli.client import key_value, non_negative_int, positive_int
from strom.cli.consume import parse_timestamp
from strom.cli.produce import split_key, strip_line_ending


def test_key_value_splits_at_the_first_equals_sign() -> None:
    assert key_value("retention.ms=1000") == ("retention.ms", "1000")
    assert key_value("sasl.jaas=a=b") == ("sasl.jaas", "a=b")
    assert key_value("empty=") == ("empty", "")


@pytest.mark.parametrize("text", ["no-equals", "=value"])
def test_key_value_rejects_malformed_pairs(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        key_value(text)


def test_number_types() -> None:
    assert positive_int("3") == 3
    assert non_negative_int("0") == 0
    for bad in ("0", "-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
    for bad in ("-1", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            non_negative_int(bad)


def test_timestamps_in_epoch_milliseconds_pass_through() -> None:
    assert parse_timestamp("1700000000123") == 1_700_000_000_123


def test_iso_timestamps_with_a_zone_are_exact_to_the_millisecond() -> None:
    assert parse_timestamp("2023-11-14T22:13:20.123Z") == 1_700_000_000_123
    assert parse_timestamp("2023-11-15T07:13:20.123+09:00") == 1_700_000_000_123


def test_iso_timestamps_without_a_zone_are_local_time() -> None:
    expected = int(datetime(2024, 5, 1, 12, 0).astimezone().timestamp()) * 1000
    assert parse_timestamp("2024-05-01T12:00:00") == expected


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01", "-5"])
def test_bad_timestamps_are_usage_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_timestamp(text)


@pytest.mark.parametrize(
    ("raw", "line"),
    [(b"a\n", b"a"), (b"a\r\n", b"a"), (b"a", b"a"), (b"\n", b""), (b"a\r", b"a\r"), (b"\r\n", b"")],
)
def test_only_the_line_ending_is_stripped(raw: bytes, line: bytes) -> None:
    assert strip_line_ending(raw) == line


def test_split_key_at_the_first_separator() -> None:
    assert split_key(b"k:v:w", b":") == (b"k", b"v:w")
    assert split_key(b":v", b":") == (b"", b"v")
    assert split_key(b"k::v", b"::") == (b"k", b"v")


def test_without_a_separator_the_key_is_null() -> None:
    assert split_key(b"k:v", None) == (None, b"k:v")


def test_a_line_missing_the_separator_is_rejected() -> None:
    with pytest.raises(ValueError):
        split_key(b"no separator here", b"\t")
