"""The differential tests reach every message version the broker advertises, without Kafka's schemas."""

from __future__ import annotations

from codec_support import SIDES, case_id
from kafka_python_samples import kafka_python_versions
from kio_samples import comparable, kio_versions

from strom.server.handlers import HANDLERS


def compared_with_a_reference_codec() -> set[tuple[int, str, int]]:
    """(api_key, side, version) that test_codec_kio or test_codec_kafka_python check."""
    return {case for case in kio_versions() if comparable(*case)} | set(kafka_python_versions())


def test_every_version_the_broker_advertises_is_compared_with_a_reference_codec() -> None:
    advertised = {
        (key, side, version)
        for key, handler in HANDLERS.items()
        for version in range(handler.min_version, handler.max_version + 1)
        for side in SIDES
    }
    assert advertised  # the broker advertises something
    missing = advertised - compared_with_a_reference_codec()
    assert sorted(case_id(*case) for case in missing) == []
