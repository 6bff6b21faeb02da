"""The broker's static configuration: Java .properties parsing and typed, validated access to it.

Static configs are what the broker starts with (server.properties plus command-line overrides). Dynamic
configs set at runtime live in the metadata log; configs.py resolves the two together.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strom.metadata.configs import BROKER_CONFIGS, ConfigError, validate_broker_config
from strom.protocol.errors import ErrorCode

#: node.id when neither node.id nor broker.id is configured (Kafka's sample KRaft config uses 1).
DEFAULT_NODE_ID = 1

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_WHITESPACE = " \t\f"
_KEY_TERMINATORS = "=:" + _WHITESPACE
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def parse_properties(text: str) -> dict[str, str]:
    """Parse the text of a Java .properties file the way java.util.Properties.load does.

    Lines starting with '#' or '!' are comments; a key is separated from its value by '=', ':' or
    whitespace; a line ending in an odd number of backslashes continues on the next line (whose leading
    whitespace is dropped); backslash escapes (\\t, \\n, \\uXXXX, \\=, ...) are decoded. Later keys win.
    """
    properties: dict[str, str] = {}
    lines = _LINE_BREAK.split(text)
    index = 0
    while index < len(lines):
        logical = lines[index].lstrip(_WHITESPACE)
        index += 1
        if not logical or logical[0] in "#!":
            continue
        while _continues(logical):
            logical = logical[:-1]
            if index == len(lines):
                break
            logical += lines[index].lstrip(_WHITESPACE)
            index += 1
        key, value = _split_entry(logical)
        properties[_unescape(key)] = _unescape(value)
    return properties


def load_properties(path: Path) -> dict[str, str]:
    """Parse a .properties file (read as UTF-8, which covers the ISO-8859-1 files that are plain ASCII)."""
    return parse_properties(path.read_text(encoding="utf-8"))


def _continues(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _split_entry(line: str) -> tuple[str, str]:
    position = 0
    while position < len(line) and line[position] not in _KEY_TERMINATORS:
        position += 2 if line[position] == "\\" else 1
    key = line[:position]
    rest = line[position:].lstrip(_WHITESPACE)
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(_WHITESPACE)
    return key, rest


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    position = 0
    while position < len(text):
        char = text[position]
        position += 1
        if char != "\\":
            out.append(char)
            continue
        if position == len(text):
            break
        escaped = text[position]
        position += 1
        if escaped == "u":
            digits = text[position : position + 4]
            if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError("Malformed \\uxxxx encoding.")
            out.append(chr(int(digits, 16)))
            position += 4
        else:
            out.append(_ESCAPES.get(escaped, escaped))
    return "".join(out)


# ---------------------------------------------------------------------------------------------- listeners
_LISTENER = re.compile(
    r"(?P<name>[A-Za-z0-9_.-]+)://(?:\[(?P<ipv6>[0-9A-Fa-f:.%]*)\]|(?P<host>[^:\[\]/]*)):(?P<port>[0-9]+)"
)


#: What Kafka's own single-node server.properties sets for a development node, and so does Strom for a node
#: that is a cluster of one (at most one quorum voter) unless the configuration says otherwise: internal
#: topics can't have more replicas than there are brokers, and a new group need not wait 3 s for more members.
SINGLE_NODE_DEFAULTS = {
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
}


def with_single_node_defaults(properties: Mapping[str, str]) -> dict[str, str]:
    """`properties` plus SINGLE_NODE_DEFAULTS for what they leave unset, for a one-node cluster.

    Applied where a node's configuration is assembled (`strom serve`), not hidden in the components, so that
    DescribeConfigs reports the values in force as static broker configs."""
    result = dict(properties)
    voters = [v for v in result.get("controller.quorum.voters", "").split(",") if v.strip()]
    if len(voters) <= 1:
        for key, value in SINGLE_NODE_DEFAULTS.items():
            result.setdefault(key, value)
    return result


@dataclass(frozen=True, slots=True)
class Listener:
    """One entry of listeners/advertised.listeners; host "" means every interface (or, advertised: ours)."""

    name: str
    host: str
    port: int
    security_protocol: str


def parse_listeners(
    value: str, protocol_map: Mapping[str, str], config_name: str = "listeners"
) -> list[Listener]:
    """Parse "NAME://host:port,..."; raise ConfigError for malformed entries or unknown listener names."""
    listeners = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        match = _LISTENER.fullmatch(entry)
        if match is None or int(match["port"]) > 65535:
            raise ConfigError(ErrorCode.INVALID_CONFIG, f"Unable to parse {entry} to a broker endpoint")
        name = match["name"].upper()
        protocol = protocol_map.get(name)
        if protocol is None:
            raise ConfigError(
                ErrorCode.INVALID_CONFIG,
                f"No security protocol defined for listener {name} (in {config_name})",
            )
        host = match["ipv6"] if match["ipv6"] is not None else match["host"]
        listeners.append(Listener(name, host, int(match["port"]), protocol))
    names = [listener.name for listener in listeners]
    if len(set(names)) != len(names):
        raise ConfigError(
            ErrorCode.INVALID_CONFIG, f"Each listener must have a different name in {config_name}"
        )
    return listeners


# ---------------------------------------------------------------------------------------------- broker config
class BrokerConfig(Mapping[str, str]):
    """The broker's static configuration, validated at construction.

    As a Mapping it holds exactly the configured values (what DescribeConfigs reports as
    STATIC_BROKER_CONFIG); typed getters return the configured value or Kafka's default.
    """

    def __init__(self, properties: Mapping[str, str] | None = None) -> None:
        configured = dict(properties or {})
        for name, value in configured.items():
            validate_broker_config(name, value)
        node_id, broker_id = configured.get("node.id"), configured.get("broker.id")
        if node_id is not None and broker_id is not None and int(node_id) != int(broker_id):
            raise ConfigError(
                ErrorCode.INVALID_CONFIG,
                f"The values for broker.id ({broker_id}) and node.id ({node_id}) "
                "must be the same if both are set",
            )
        if node_id is None and broker_id is not None:
            configured["node.id"] = broker_id
        elif broker_id is None and node_id is not None:
            configured["broker.id"] = node_id
        self._configured = configured
        self.listeners()  # fail at startup, not at first use
        self.advertised_listeners()

    @classmethod
    def from_file(cls, path: Path, overrides: Mapping[str, str] | None = None) -> BrokerConfig:
        """server.properties with command-line overrides (--override name=value) applied on top."""
        properties = load_properties(path)
        properties.update(overrides or {})
        return cls(properties)

    # Mapping of configured values
    def __getitem__(self, name: str) -> str:
        return self._configured[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._configured)

    def __len__(self) -> int:
        return len(self._configured)

    # typed access
    def value(self, name: str) -> Any:
        """The typed value of a known broker config: as configured, else its default (None for null)."""
        definition = BROKER_CONFIGS[name]
        raw = self._configured.get(name)
        return definition.default if raw is None else definition.parse(raw)

    def get_int(self, name: str) -> int:
        return int(self._not_null(name))

    def get_bool(self, name: str) -> bool:
        return bool(self._not_null(name))

    def get_float(self, name: str) -> float:
        return float(self._not_null(name))

    def get_str(self, name: str) -> str | None:
        value = self.value(name)
        return None if value is None else str(value)

    def get_list(self, name: str) -> list[str]:
        return list(self.value(name) or [])

    def _not_null(self, name: str) -> Any:
        value = self.value(name)
        if value is None:
            raise KeyError(f"broker config {name} has no value")
        return value

    @property
    def node_id(self) -> int:
        node_id: int = self.value("node.id")
        return DEFAULT_NODE_ID if node_id < 0 else node_id

    @property
    def rack(self) -> str | None:
        return self.get_str("broker.rack")

    def log_dirs(self) -> list[Path]:
        """log.dirs (comma-separated), else log.dir."""
        dirs = self.get_str("log.dirs")
        if dirs:
            return [Path(d.strip()) for d in dirs.split(",") if d.strip()]
        return [Path(self.get_str("log.dir") or "")]

    def log_dir(self) -> Path:
        """The data directory (the first of log.dirs)."""
        return self.log_dirs()[0]

    def listeners(self) -> list[Listener]:
        return parse_listeners(self.get_str("listeners") or "", self._protocol_map())

    def advertised_listeners(self) -> list[Listener]:
        advertised = self.get_str("advertised.listeners")
        if advertised is None:
            return self.listeners()
        return parse_listeners(advertised, self._protocol_map(), "advertised.listeners")

    def listener(self) -> tuple[str, int]:
        """(host, port) to bind for clients: the first listener that is not a controller listener."""
        return self._client_listener(self.listeners())

    def advertised_listener(self) -> tuple[str, int]:
        """(host, port) clients are told to connect to; an empty host becomes this machine's name."""
        host, port = self._client_listener(self.advertised_listeners())
        return (host or socket.getfqdn()), port

    def _client_listener(self, listeners: list[Listener]) -> tuple[str, int]:
        controller_names = {
            n.strip().upper() for n in (self.get_str("controller.listener.names") or "").split(",")
        }
        for listener in listeners:
            if listener.name not in controller_names:
                return listener.host, listener.port
        raise ConfigError(ErrorCode.INVALID_CONFIG, "No listener for clients is configured in listeners")

    def _protocol_map(self) -> dict[str, str]:
        protocol_map = {}
        for entry in (self.get_str("listener.security.protocol.map") or "").split(","):
            name, separator, protocol = entry.partition(":")
            if not separator:
                raise ConfigError(
                    ErrorCode.INVALID_CONFIG, f"Invalid value {entry} for listener.security.protocol.map"
                )
            protocol_map[name.strip().upper()] = protocol.strip().upper()
        return protocol_map
