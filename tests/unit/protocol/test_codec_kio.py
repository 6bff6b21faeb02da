"""Differential tests against kio, an independent codec generated from a newer copy of Kafka's schemas.

For every API, version and direction both implement, samples built from kio's own entity classes go
both ways: kio encodes, Strom decodes the same values field by field and re-encodes the same bytes;
Strom encodes the translated values, and kio decodes them back to the sample.
"""

from __future__ import annotations

from typing import Any

import pytest
from codec_support import case_id, decode, differences, encode
from kio_samples import (
    NOT_COMPARABLE,
    KioSampler,
    comparable,
    kio_consumer_protocol_class,
    kio_decode,
    kio_encode,
    kio_sample,
    kio_to_ours,
    kio_versions,
    to_ours,
)

from strom.protocol.messages import APIS, consumer_protocol
from strom.protocol.primitives import Writer

SEEDS = ("kio-1", "kio-2")


def _cases() -> list[Any]:
    return [pytest.param(*case, id=case_id(*case)) for case in kio_versions() if comparable(*case)]


def _not_comparable_cases() -> list[Any]:
    return [pytest.param(*case, id=case_id(*case)) for case in kio_versions() if not comparable(*case)]


@pytest.mark.parametrize(("api_key", "side", "version"), _cases())
def test_same_values_and_bytes_as_kio(api_key: int, side: str, version: int) -> None:
    for seed in SEEDS:
        entity = kio_sample(api_key, side, version, seed)
        theirs = kio_encode(entity)
        expected = kio_to_ours(entity, api_key, side)

        decoded, end = decode(api_key, side, theirs, version)
        assert end == len(theirs)
        assert differences(decoded, expected) == []
        assert encode(api_key, side, decoded, version) == theirs

        ours = encode(api_key, side, expected, version)
        assert kio_decode(type(entity), ours) == (entity, len(ours))


@pytest.mark.parametrize(("api_key", "side", "version"), _not_comparable_cases())
def test_documented_differences_from_kio_still_hold(api_key: int, side: str, version: int) -> None:
    """kio's schema has a field Strom's lacks (see NOT_COMPARABLE): once it is gone, compare the case."""
    entity = kio_sample(api_key, side, version, SEEDS[0])
    with pytest.raises(AssertionError, match="has no counterpart"):
        kio_to_ours(entity, api_key, side)


def test_documented_differences_name_real_cases() -> None:
    known = {(APIS[key].name, side, version) for key, side, version in kio_versions()}
    assert set(NOT_COMPARABLE) <= known


@pytest.mark.parametrize("kind", ["subscription", "assignment"])
def test_consumer_protocol_same_values_and_bytes_as_kio(kind: str) -> None:
    our_class = getattr(consumer_protocol, f"ConsumerProtocol{kind.capitalize()}")
    low = getattr(consumer_protocol, f"{kind.upper()}_MIN_VERSION")
    high = getattr(consumer_protocol, f"{kind.upper()}_MAX_VERSION")
    for version in range(low, high + 1):
        kio_class = kio_consumer_protocol_class(kind, version)
        entity = KioSampler(f"kio:{kind}:v{version}").entity(kio_class)
        theirs = kio_encode(entity)
        expected = to_ours(entity, our_class)

        decoded, end = getattr(consumer_protocol, f"decode_{kind}")(memoryview(theirs), 0, version)
        assert end == len(theirs)
        assert differences(decoded, expected) == []
        w = Writer()
        getattr(consumer_protocol, f"encode_{kind}")(expected, version, w)
        ours = w.getvalue()
        assert ours == theirs
        assert kio_decode(kio_class, ours) == (entity, len(ours))
