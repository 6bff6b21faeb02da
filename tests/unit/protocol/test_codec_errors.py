"""Kafka error codes and the exception that carries one."""

from __future__ import annotations

from kio.schema.errors import ErrorCode as KioErrorCode

from strom.protocol.errors import ErrorCode, KafkaError


def test_codes_and_retriable_flags_match_an_independent_list() -> None:
    ours = {(code.name, code.value, code.retriable) for code in ErrorCode}
    theirs = {(code.name.upper(), int(code.value), code.retriable) for code in KioErrorCode}
    assert ours == theirs


def test_well_known_codes() -> None:
    assert ErrorCode.UNKNOWN_SERVER_ERROR == -1
    assert ErrorCode.NONE == 0
    assert ErrorCode.OFFSET_OUT_OF_RANGE == 1
    assert ErrorCode.UNKNOWN_TOPIC_OR_PARTITION == 3 and ErrorCode.UNKNOWN_TOPIC_OR_PARTITION.retriable
    assert ErrorCode.UNSUPPORTED_VERSION == 35 and not ErrorCode.UNSUPPORTED_VERSION.retriable
    assert ErrorCode.NOT_LEADER_OR_FOLLOWER.retriable


def test_every_error_has_a_message() -> None:
    assert all(code.message for code in ErrorCode if code is not ErrorCode.NONE)


def test_from_code() -> None:
    assert ErrorCode.from_code(36) is ErrorCode.TOPIC_ALREADY_EXISTS
    assert ErrorCode.from_code(30000) is ErrorCode.UNKNOWN_SERVER_ERROR


def test_kafka_error() -> None:
    error = KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, "Topic 'orders' already exists.")
    assert error.code is ErrorCode.TOPIC_ALREADY_EXISTS
    assert error.message == "Topic 'orders' already exists."
    assert not error.retriable
    assert str(error) == "TOPIC_ALREADY_EXISTS: Topic 'orders' already exists."
    default = KafkaError(ErrorCode.NOT_COORDINATOR)
    assert default.message is None
    assert default.retriable
    assert str(default) == f"NOT_COORDINATOR: {ErrorCode.NOT_COORDINATOR.message}"
