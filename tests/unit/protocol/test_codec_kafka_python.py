"""Differential tests against kafka-python's protocol classes: byte-for-byte equal encodings.

kafka-python (`kafka.protocol.*`) has one class per request and response, usable at every version up
to its newest; we compare every version both sides implement.  It models authorized-operations bit
fields as sets of operation numbers, which the converter bridges.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import warnings
from typing import Any

import pytest
from codec_samples import SCHEMAS_MISSING, api_versions, sample, schemas_available

from strom.protocol.messages import APIS
from strom.protocol.primitives import Writer

pytestmark = pytest.mark.skipif(not schemas_available(), reason=SCHEMAS_MISSING)

NOT_COMPARABLE = {
    "ListClientMetricsResources": "kafka-python has the API under its later name with renamed fields",
}


def _kafka_python_classes() -> dict[tuple[int, str], type]:
    classes: dict[tuple[int, str], type] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its schema loading uses old importlib APIs
        import kafka.protocol
        from kafka.protocol.api_message import ApiMessage

        for info in pkgutil.walk_packages(kafka.protocol.__path__, "kafka.protocol."):
            if ".old" in info.name or ".schemas" in info.name:
                continue
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if (
                    inspect.isclass(value)
                    and issubclass(value, ApiMessage)
                    and value is not ApiMessage
                    and value.__module__ == module.__name__
                ):
                    classes[(value.API_KEY, value.type)] = value
    return classes


CLASSES = _kafka_python_classes()


def _cases() -> list[object]:
    cases = []
    for key, version in api_versions():
        spec = APIS[key]
        for side in ("request", "response"):
            cls = CLASSES.get((key, side))
            if cls is None or version > cls.max_version:
                continue
            reason = NOT_COMPARABLE.get(spec.name)
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            cases.append(pytest.param(key, side, version, id=f"{spec.name}-{side}-v{version}", marks=marks))
    return cases


def to_kafka_python(ours: Any, cls: Any, version: int) -> Any:
    """kafka-python's object with the same values; tagged fields only when not default, as it expects."""
    defaults = type(ours)()
    kwargs: dict[str, Any] = {}
    for our_field in dataclasses.fields(ours):
        name = our_field.name
        if name not in cls.fields and name.endswith("authorized_operations"):
            name = "authorized_operations"
        field = cls.fields.get(name)
        if field is None or not field.for_version_q(version):
            continue
        value = getattr(ours, our_field.name)
        if field.tagged_field_q(version) and value == getattr(defaults, our_field.name):
            continue
        if getattr(field, "type_str", None) == "bitfield":
            kwargs[name] = {bit for bit in range(32) if (value & 0xFFFFFFFF) >> bit & 1}
        elif value is None:
            kwargs[name] = None
        elif field.is_struct():
            kwargs[name] = to_kafka_python(value, field.data_class, version)
        elif field.is_struct_array():
            kwargs[name] = [to_kafka_python(item, field.data_class, version) for item in value]
        else:
            kwargs[name] = value
    return cls(**kwargs)


@pytest.mark.parametrize(("api_key", "side", "version"), _cases())
def test_same_bytes_as_kafka_python(api_key: int, side: str, version: int) -> None:
    message = sample(api_key, side, version, seed="kafka-python")
    w = Writer()
    getattr(APIS[api_key].module, f"encode_{side}")(message, version, w)
    theirs = to_kafka_python(message, CLASSES[(api_key, side)], version).encode(version=version)
    assert w.getvalue() == bytes(theirs)
