"""Differential tests against kafka-python's protocol classes: byte-for-byte equal encodings.

kafka-python builds its classes from its own copy of Kafka's schemas and accepts every version up to
its newest, so it also checks versions kio lacks.  For every API, version and direction both
implement, a sample built from kafka-python's field metadata is encoded by both sides, and Strom
decodes kafka-python's bytes to the same values.
"""

from __future__ import annotations

from typing import Any

import pytest
from codec_support import case_id, decode, differences, encode
from kafka_python_samples import (
    kafka_python_encode,
    kafka_python_sample,
    kafka_python_to_ours,
    kafka_python_versions,
)

SEEDS = ("kafka-python-1", "kafka-python-2")


def _cases() -> list[Any]:
    return [pytest.param(*case, id=case_id(*case)) for case in kafka_python_versions()]


@pytest.mark.parametrize(("api_key", "side", "version"), _cases())
def test_same_bytes_as_kafka_python(api_key: int, side: str, version: int) -> None:
    for seed in SEEDS:
        message = kafka_python_sample(api_key, side, version, seed)
        theirs = kafka_python_encode(message, version)
        expected = kafka_python_to_ours(message, api_key, side, version)

        assert encode(api_key, side, expected, version) == theirs
        decoded, end = decode(api_key, side, theirs, version)
        assert end == len(theirs)
        assert differences(decoded, expected) == []
