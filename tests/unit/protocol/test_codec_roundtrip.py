"""Every API, version and direction: a sample survives encode -> decode -> encode unchanged."""

from __future__ import annotations

import pytest
from codec_samples import SCHEMAS_MISSING, api_versions, sample, sample_data, schemas_available

from strom.protocol.messages import APIS, consumer_protocol
from strom.protocol.primitives import Writer

pytestmark = pytest.mark.skipif(not schemas_available(), reason=SCHEMAS_MISSING)


def _cases() -> list[object]:
    return [
        pytest.param(key, side, version, id=f"{APIS[key].name}-{side}-v{version}")
        for key, version in api_versions()
        for side in ("request", "response")
    ]


@pytest.mark.parametrize(("api_key", "side", "version"), _cases())
def test_round_trip(api_key: int, side: str, version: int) -> None:
    module = APIS[api_key].module
    encode = getattr(module, f"encode_{side}")
    decode = getattr(module, f"decode_{side}")
    message = sample(api_key, side, version)

    w = Writer()
    encode(message, version, w)
    data = w.getvalue()
    decoded, end = decode(memoryview(data), 0, version)

    assert end == len(data)
    assert decoded == message
    again = Writer()
    encode(decoded, version, again)
    assert again.getvalue() == data


@pytest.mark.parametrize("suffix", ["subscription", "assignment"])
def test_consumer_protocol_round_trip(suffix: str) -> None:
    low = getattr(consumer_protocol, f"{suffix.upper()}_MIN_VERSION")
    high = getattr(consumer_protocol, f"{suffix.upper()}_MAX_VERSION")
    for version in range(low, high + 1):
        message = sample_data(consumer_protocol, suffix, version)
        w = Writer()
        getattr(consumer_protocol, f"encode_{suffix}")(message, version, w)
        data = w.getvalue()
        decoded, end = getattr(consumer_protocol, f"decode_{suffix}")(memoryview(data), 0, version)
        assert (decoded, end) == (message, len(data))
