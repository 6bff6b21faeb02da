from pathlib import Path

import pytest

from strom.metadata.configs import ConfigError
from strom.metadata.properties import BrokerConfig, Listener, load_properties, parse_properties


def test_comments_blank_lines_and_all_separators():
    text = "# a comment\n! another\n\n  a=1\nb : 2\nc 3\nd\te\nf=\ng\n"
    assert parse_properties(text) == {"a": "1", "b": "2", "c": "3", "d": "e", "f": "", "g": ""}


def test_value_keeps_inner_separators_and_trailing_text():
    assert parse_properties("listeners=PLAINTEXT://:9092,X://h:1\nk = a = b\n") == {
        "listeners": "PLAINTEXT://:9092,X://h:1",
        "k": "a = b",
    }


def test_line_continuations_drop_leading_whitespace_of_next_line():
    text = "fruits = apple, banana, \\\n        cherry\nnext=1\n"
    assert parse_properties(text) == {"fruits": "apple, banana, cherry", "next": "1"}


def test_even_number_of_backslashes_is_not_a_continuation():
    assert parse_properties("path=c:\\\\\nnext=1") == {"path": "c:\\", "next": "1"}


def test_comment_line_ending_in_backslash_does_not_continue():
    assert parse_properties("# comment \\\nkey=value\n") == {"key": "value"}


def test_escapes_in_keys_and_values():
    text = "my\\ key\\=x=tab\\there\\u00e9\\n\nweird\\:name:v\n"
    assert parse_properties(text) == {"my key=x": "tab\there\u00e9\n", "weird:name": "v"}


def test_malformed_unicode_escape_is_an_error():
    with pytest.raises(ValueError, match="Malformed"):
        parse_properties("k=\\u12")


def test_crlf_and_cr_line_endings_and_last_key_wins():
    assert parse_properties("a=1\r\nb=2\ra=3") == {"a": "3", "b": "2"}


def test_load_properties_reads_a_file(tmp_path):
    path = tmp_path / "server.properties"
    path.write_text("node.id=3\nlog.dirs=/data/a, /data/b\n", encoding="utf-8")
    assert load_properties(path) == {"node.id": "3", "log.dirs": "/data/a, /data/b"}


def test_broker_config_is_a_mapping_of_configured_values_with_typed_defaults():
    config = BrokerConfig({"num.partitions": "4"})
    assert dict(config) == {"num.partitions": "4"}
    assert config.get_int("num.partitions") == 4
    assert config.get_int("socket.request.max.bytes") == 104857600
    assert config.get_int("message.max.bytes") == 1048588
    assert config.get_bool("auto.create.topics.enable") is True
    assert config.get_bool("delete.topic.enable") is True
    assert config.get_int("offsets.topic.num.partitions") == 50
    assert config.get_int("log.retention.hours") == 168
    assert config.get_list("log.cleanup.policy") == ["delete"]
    assert config.get_float("log.cleaner.min.cleanable.ratio") == 0.5
    assert config.get_str("advertised.listeners") is None
    with pytest.raises(KeyError):
        config.get_int("log.retention.ms")


def test_invalid_static_values_fail_construction():
    with pytest.raises(ConfigError, match="num.partitions"):
        BrokerConfig({"num.partitions": "zero"})


def test_node_id_and_broker_id_are_synonyms():
    assert BrokerConfig({"broker.id": "5"}).node_id == 5
    assert BrokerConfig({"node.id": "6"})["broker.id"] == "6"
    assert BrokerConfig({}).node_id == 1
    with pytest.raises(ConfigError, match="must be the same"):
        BrokerConfig({"node.id": "1", "broker.id": "2"})


def test_log_dirs_take_precedence_over_log_dir():
    assert BrokerConfig({"log.dirs": " /a , /b ", "log.dir": "/c"}).log_dirs() == [Path("/a"), Path("/b")]
    assert BrokerConfig({"log.dir": "/c"}).log_dir() == Path("/c")
    assert BrokerConfig({}).log_dir() == Path("/tmp/kafka-logs")


def test_listener_parsing():
    config = BrokerConfig(
        {
            "listeners": "CONTROLLER://:9093,PLAINTEXT://127.0.0.1:9092,V6://[::1]:9094",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,V6:PLAINTEXT",
        }
    )
    assert config.listeners()[2] == Listener("V6", "::1", 9094, "PLAINTEXT")
    assert config.listener() == ("127.0.0.1", 9092)
    assert config.advertised_listener() == ("127.0.0.1", 9092)


def test_default_listener_binds_every_interface_on_9092():
    assert BrokerConfig({}).listener() == ("", 9092)


def test_advertised_listeners_override_listeners():
    config = BrokerConfig(
        {"listeners": "PLAINTEXT://0.0.0.0:9092", "advertised.listeners": "PLAINTEXT://kafka.example:19092"}
    )
    assert config.advertised_listener() == ("kafka.example", 19092)


@pytest.mark.parametrize(
    "listeners", ["PLAINTEXT://host", "PLAINTEXT://h:99999", "NOPE://h:1", "PLAINTEXT://a:1,PLAINTEXT://b:2"]
)
def test_bad_listeners_fail_construction(listeners):
    with pytest.raises(ConfigError):
        BrokerConfig({"listeners": listeners})


def test_from_file_applies_overrides(tmp_path):
    path = tmp_path / "server.properties"
    path.write_text("num.partitions=2\nnode.id=1\n")
    config = BrokerConfig.from_file(path, {"num.partitions": "8"})
    assert config.get_int("num.partitions") == 8
    assert config.node_id == 1
