"""Every API, version and direction: a sample survives encode -> decode -> encode unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from codec_samples import PROBED, sample, sample_source
from codec_support import SIDES, case_id, decode, differences, encode, our_versions


def _cases() -> list[Any]:
    return [
        pytest.param(key, side, version, id=case_id(key, side, version))
        for key, version in our_versions()
        for side in SIDES
    ]


@pytest.mark.parametrize(("api_key", "side", "version"), _cases())
def test_round_trip(api_key: int, side: str, version: int) -> None:
    message = sample(api_key, side, version)
    data = encode(api_key, side, message, version)
    decoded, end = decode(api_key, side, data, version)

    assert end == len(data)
    if sample_source(api_key, side, version) != PROBED:  # a probed sample may hold fields the wire drops
        assert differences(decoded, message) == []
    assert encode(api_key, side, decoded, version) == data
