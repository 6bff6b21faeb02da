"""Small helpers for emitting Python source: indented lines, local names, module-level symbols."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

INDENT = "    "
MAX_LINE = 110  # the project's line length; longer generated lines are wrapped

# `struct` format characters spelled as identifier-safe letters, for names like `_unpack_hiq`.
_FORMAT_LETTERS = {"b": "b", "h": "h", "i": "i", "q": "q", "H": "H", "I": "I", "d": "d", "?": "o"}


def bytes_literal(data: bytes) -> str:
    """A bytes literal in the project's quote style: `b"\\x00\\x02"`."""
    return 'b"' + "".join(f"\\x{byte:02x}" for byte in data) + '"'


def format_suffix(fmt: str) -> str:
    """`"16sih?"` -> `"uiho"` (a uuid is a `16s` run)."""
    out: list[str] = []
    i = 0
    while i < len(fmt):
        if fmt.startswith("16s", i):
            out.append("u")
            i += 3
        else:
            out.append(_FORMAT_LETTERS[fmt[i]])
            i += 1
    return "".join(out)


@dataclass
class ModuleSymbols:
    """Module-level names the generated functions refer to, collected while emitting them."""

    unpackers: set[str] = field(default_factory=set)  # struct formats used for decoding
    packers: set[str] = field(default_factory=set)  # struct formats used for encoding
    helpers: set[str] = field(default_factory=set)  # names imported from strom.protocol.primitives
    default_structs: dict[str, str] = field(default_factory=dict)  # constant name -> struct qualname
    aliases: set[str] = field(default_factory=set)  # module-level shortcuts, see MODULE_ALIASES
    uses_uuid: bool = False

    def unpack(self, fmt: str) -> str:
        self.unpackers.add(fmt)
        return f"_unpack_{format_suffix(fmt)}"

    def pack(self, fmt: str) -> str:
        self.packers.add(fmt)
        return f"_pack_{format_suffix(fmt)}"

    def helper(self, name: str) -> str:
        self.helpers.add(name)
        return HELPER_ALIASES[name]

    def alias(self, name: str) -> str:
        self.aliases.add(name)
        return name

    def default_struct(self, qualname: str) -> str:
        const = "_DEFAULT_" + qualname.replace(".", "_")
        self.default_structs[const] = qualname
        return const


# Module-level shortcuts that save an attribute lookup in loops.
MODULE_ALIASES: dict[str, str] = {
    "_struct_pack": "struct.pack",
    "_struct_unpack_from": "struct.unpack_from",
}

# Names imported from strom.protocol.primitives, and the private aliases generated code uses.
HELPER_ALIASES: dict[str, str] = {
    "DecodeError": "DecodeError",
    "EncodeError": "EncodeError",
    "UnsupportedVersionError": "UnsupportedVersionError",
    "Writer": "Writer",
    "Records": "Records",
    "UUID_ZERO": "UUID_ZERO",
    "bad_length": "_bad_length",
    "truncated": "_truncated",
    "null_not_allowed": "_null_not_allowed",
    "read_unsigned_varint": "_read_uvarint",
    "encode_unsigned_varint": "_uvarint",
    "compact_length": "_compact_length",
    "skip_tagged_fields": "_skip_tagged_fields",
    "write_records": "_write_records",
}


class Code:
    """Accumulates indented lines of one function or class."""

    def __init__(self, level: int = 0) -> None:
        self.lines: list[str] = []
        self.level = level

    def line(self, text: str) -> None:
        if not text:
            self.lines.append("")
            return
        self.lines.extend(wrap_line(INDENT * self.level, text))

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        indent = INDENT * self.level
        if header.startswith(("if ", "elif ")) and " or " in header and len(indent + header) > MAX_LINE:
            keyword, _, condition = header[:-1].partition(" ")
            operands = _split_top_level(condition, " or ")
            self.lines.append(f"{indent}{keyword} (")
            self.lines.append(f"{indent}{INDENT}{operands[0]}")
            self.lines.extend(f"{indent}{INDENT}or {operand}" for operand in operands[1:])
            self.lines.append(f"{indent}):")
        else:
            self.line(header)
        self.level += 1
        try:
            yield
        finally:
            self.level -= 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class LocalNames:
    """Allocates local variable names so that one name always holds one static type.

    mypy checks the generated modules; reusing a name for values of different types (the same field
    name in two structs, one nullable and one not) would be an error, so such reuse gets a new name.
    The first assignment of each name carries its annotation.
    """

    def __init__(self) -> None:
        self._types: dict[str, str] = {}
        self._declared: set[str] = set()

    def name(self, base: str, pytype: str) -> str:
        """A name that holds only values of `pytype` in this function."""
        candidate = base
        suffix = 2
        while True:
            known = self._types.get(candidate)
            if known is None:
                self._types[candidate] = pytype
                return candidate
            if known == pytype:
                return candidate
            candidate = f"{base}_{suffix}"
            suffix += 1

    def assignment(self, name: str, expr: str) -> str:
        """`name = expr`, annotated with the name's type the first time it is assigned."""
        if name in self._declared:
            return f"{name} = {expr}"
        self._declared.add(name)
        return f"{name}: {self._types[name]} = {expr}"

    def mark_assigned(self, name: str) -> None:
        """Record an assignment that cannot carry an annotation (tuple unpacking, `for` targets)."""
        self._declared.add(name)


def _code_positions(text: str) -> Iterator[int]:
    """Indices of the characters of `text` that are outside string literals."""
    quote = ""
    escaped = False
    for i, c in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        else:
            yield i


def _split_top_level(text: str, separator: str) -> list[str]:
    """`text` split at `separator`, but not inside brackets or string literals."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i in _code_positions(text):
        c = text[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and i >= start and text.startswith(separator, i):
            parts.append(text[start:i].strip())
            start = i + len(separator)
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return parts


def _final_call_opening(text: str) -> int | None:
    """Where the bracket closed by the line's final ")" opens, if the line ends with one."""
    if not text.endswith(")"):
        return None
    stack: list[int] = []
    for i in _code_positions(text):
        if text[i] in "([{":
            stack.append(i)
        elif text[i] in ")]}" and stack:
            opened = stack.pop()
            if i == len(text) - 1:
                return opened
    return None


def wrap_line(indent: str, text: str, width: int = MAX_LINE) -> list[str]:
    """Split an over-long line the way a formatter would: trailing comment above, then the
    arguments of its final call on their own lines, else the right-hand side in parentheses."""
    if len(indent) + len(text) <= width:
        return [indent + text]
    for suffix in (",", " from exc", " from None"):
        if text.endswith(suffix):
            lines = wrap_line(indent, text[: -len(suffix)], width - len(suffix))
            lines[-1] += suffix
            return lines
    code, sep, comment = text.rpartition("  # ")
    if sep and code.count('"') % 2 == 0:
        return [f"{indent}# {comment}", *wrap_line(indent, code, width)]
    inner_indent = indent + INDENT
    opened = _final_call_opening(text)
    if opened is None or opened == len(text) - 2 or len(indent) + opened >= width:
        target, equals, value = text.partition(" = ")
        if not equals or value.startswith("("):
            return [indent + text]  # nothing sensible to split
        return [f"{indent}{target} = (", *wrap_line(inner_indent, value), f"{indent})"]
    head, inner = text[: opened + 1], text[opened + 1 : -1]
    arguments = _split_top_level(inner, ",")
    if len(inner_indent) + len(inner) <= MAX_LINE or len(arguments) <= 1:
        body = wrap_line(inner_indent, inner)
    else:
        body = []
        for argument in arguments:
            body.extend(wrap_line(inner_indent, argument + ","))
    return [indent + head, *body, indent + text[-1]]
