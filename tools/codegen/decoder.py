"""Emits one straight-line decoding function per message version.

Nested structs are decoded inline (no call per element) and adjacent fixed-width fields share one
`unpack_from`.  The generated code may raise IndexError, struct.error or ValueError on bad input; the
dispatch function that calls it turns those into DecodeError.
"""

from __future__ import annotations

from tools.codegen.codewriter import INDENT, MAX_LINE, Code, LocalNames, ModuleSymbols
from tools.codegen.pytypes import default_literal, element_type, local_type
from tools.codegen.schema import FIXED_FORMATS, FIXED_SIZES, FieldSpec, SchemaError, StructSpec

# Tagged-field counts are written as one byte, so a struct may know at most this many tags.
MAX_TAGGED_FIELDS = 127


def min_value_size(f: FieldSpec, version: int, flexible: bool) -> int:
    """The fewest bytes one value of `f` (one element, for arrays) can occupy in `version`."""
    compact = f.compact_in(version, flexible)
    if f.struct is not None:
        return min_encoded_size(f.struct, version, flexible)
    if f.type_name in FIXED_SIZES:
        return FIXED_SIZES[f.type_name]
    if f.type_name == "string":
        return 1 if compact else 2
    return 1 if compact else 4  # bytes and records


def min_encoded_size(spec: StructSpec, version: int, flexible: bool) -> int:
    """The fewest bytes one instance of `spec` can occupy in `version` (bounds array lengths)."""
    size = 1 if flexible else 0  # the tagged-field count
    for f in spec.regular_fields(version):
        if f.is_array:
            size += 1 if f.compact_in(version, flexible) else 4
        elif f.struct is not None and f.nullable_in(version):
            size += 1
        else:
            size += min_value_size(f, version, flexible)
    return size


class DecoderEmitter:
    """Writes the body of one `_decode_*_vN(buf, pos)` function."""

    def __init__(self, symbols: ModuleSymbols, version: int, flexible: bool, code: Code) -> None:
        self.symbols = symbols
        self.version = version
        self.flexible = flexible
        self.code = code
        self.names = LocalNames()

    # -- plumbing ---------------------------------------------------------------------------------

    def assign(self, name: str, expr: str) -> None:
        self.code.line(self.names.assignment(name, expr))

    def raise_(self, helper: str, *args: str) -> None:
        self.code.line(f"raise {self.symbols.helper(helper)}({', '.join(args)})")

    def read_uvarint_into(self, name: str, inline_two_bytes: bool = False) -> None:
        """`name = <unsigned varint at pos>`, with the one-byte case inline (and the two-byte case,
        for lengths of record sets and byte strings, which are rarely under 128)."""
        read_uvarint = self.symbols.helper("read_unsigned_varint")
        self.code.line(f"{name} = buf[pos]")
        self.code.line("pos += 1")
        with self.code.block(f"if {name} > 127:"):
            if not inline_two_bytes:
                self.code.line(f"{name}, pos = {read_uvarint}(buf, pos - 1)")
                return
            self.code.line("_next = buf[pos]")
            with self.code.block("if _next < 128:"):
                self.code.line(f"{name} = ({name} & 127) | (_next << 7)")
                self.code.line("pos += 1")
            with self.code.block("else:"):
                self.code.line(f"{name}, pos = {read_uvarint}(buf, pos - 1)")

    def read_length_into(self, name: str, type_name: str) -> None:
        """A classic (non-compact) length prefix: int16 for strings, int32 otherwise."""
        fmt, size = ("h", 2) if type_name == "string" else ("i", 4)
        self.code.line(f"({name},) = {self.symbols.unpack(fmt)}(buf, pos)")
        self.code.line(f"pos += {size}")

    # -- structs ----------------------------------------------------------------------------------

    def struct_body(self, spec: StructSpec, depth: int) -> str:
        """Emit the decoding of one struct's fields; return the expression that constructs it."""
        values: dict[str, str] = {}
        for group in spec.wire_groups(self.version):
            if group[0].is_fixed:
                self.fixed_run(group, depth, values)
            else:
                values[group[0].attr] = self.field(group[0], depth)
        if self.flexible:
            self.tagged_section(spec, depth, values)
        elif spec.tagged_fields(self.version):
            raise SchemaError(f"{spec.qualname}: tagged fields in non-flexible v{self.version}")
        return self.constructor(spec, values)

    def constructor(self, spec: StructSpec, values: dict[str, str]) -> str:
        """Positional constructor call: decoded locals, and defaults for fields this version lacks."""
        last = max((i for i, f in enumerate(spec.fields) if f.attr in values), default=-1)
        args = [values.get(f.attr) or default_literal(f, self.symbols) for f in spec.fields[: last + 1]]
        return f"{spec.qualname}({', '.join(args)})"

    def fixed_run(self, run: list[FieldSpec], depth: int, values: dict[str, str]) -> None:
        fmt = "".join(FIXED_FORMATS[f.type_name] for f in run)
        names = [self.names.name(f"{f.attr}_{depth}", element_type(f)) for f in run]
        for f, name in zip(run, names, strict=True):
            self.names.mark_assigned(name)
            values[f.attr] = name
        target = f"({names[0]},)" if len(names) == 1 else ", ".join(names)
        line = f"{target} = {self.symbols.unpack(fmt)}(buf, pos)"
        if len(INDENT * self.code.level + line) <= MAX_LINE:
            self.code.line(line)
        else:
            self.code.line("(")
            for name in names:
                self.code.line(f"{INDENT}{name},")
            self.code.line(f") = {self.symbols.unpack(fmt)}(buf, pos)")
        self.code.line(f"pos += {sum(FIXED_SIZES[f.type_name] for f in run)}")
        for f, name in zip(run, names, strict=True):
            if f.type_name == "uuid":
                self.symbols.uses_uuid = True
                self.code.line(f"{name} = uuid.UUID(bytes={name})")

    def field(self, f: FieldSpec, depth: int) -> str:
        """Emit the decoding of one variable-width field; return the local holding its value."""
        nullable = f.nullable_in(self.version)
        target = self.names.name(f"{f.attr}_{depth}", local_type(f, nullable))
        self.value(f, target, nullable, depth)
        return target

    def value(self, f: FieldSpec, target: str, nullable: bool, depth: int) -> None:
        if f.is_array:
            self.array(f, target, nullable, depth)
        elif f.struct is not None:
            self.struct_value(f.struct, target, nullable, depth)
        elif f.is_fixed:
            fmt = FIXED_FORMATS[f.type_name]
            raw = self.names.name(f"_raw_{f.type_name}", "Any")
            self.names.mark_assigned(raw)
            self.code.line(f"({raw},) = {self.symbols.unpack(fmt)}(buf, pos)")
            self.code.line(f"pos += {FIXED_SIZES[f.type_name]}")
            if f.type_name == "uuid":
                self.symbols.uses_uuid = True
                self.assign(target, f"uuid.UUID(bytes={raw})")
            else:
                self.assign(target, raw)
        else:
            self.length_prefixed(f, target, nullable)

    # -- variable-length values -------------------------------------------------------------------

    def length_prefixed(self, f: FieldSpec, target: str, nullable: bool) -> None:
        """string, bytes or records: a length prefix, then that many bytes."""
        compact = f.compact_in(self.version, self.flexible)
        label = f'"{f.attr}"'
        if f.type_name == "string":
            convert = "buf[pos:_end].tobytes().decode()"
        elif f.type_name == "records" or f.zero_copy:
            convert = "buf[pos:_end]"  # zero copy: a view of the input buffer
        else:
            convert = "buf[pos:_end].tobytes()"
        if compact:
            self.read_uvarint_into("_n", inline_two_bytes=f.type_name != "string")
            if nullable:
                with self.code.block("if _n == 0:"):
                    self.assign(target, "None")
                with self.code.block("else:"):
                    self.compact_payload(f, target, convert)
            else:
                with self.code.block("if _n == 0:"):
                    self.raise_("null_not_allowed", label)
                self.compact_payload(f, target, convert)
            return
        self.read_length_into("_n", f.type_name)
        if nullable:
            with self.code.block("if _n == -1:"):
                self.assign(target, "None")
            with self.code.block("elif _n < 0 or pos + _n > _blen:"):
                self.raise_("bad_length", label, "_n")
            with self.code.block("else:"):
                self.classic_payload(target, convert)
        else:
            with self.code.block("if _n < 0 or pos + _n > _blen:"):
                self.raise_("bad_length", label, "_n")
            self.classic_payload(target, convert)

    def compact_payload(self, f: FieldSpec, target: str, convert: str) -> None:
        """After a compact length `_n` (length + 1, not null): check it, then take the bytes."""
        self.code.line("_end = pos + _n - 1")
        limit = " or _n > 0x8000" if f.type_name == "string" else ""
        with self.code.block(f"if _end > _blen{limit}:"):
            self.raise_("bad_length", f'"{f.attr}"', "_n - 1")
        self.assign(target, convert)
        self.code.line("pos = _end")

    def classic_payload(self, target: str, convert: str) -> None:
        """After a checked int16/int32 length `_n`: take the bytes."""
        self.code.line("_end = pos + _n")
        self.assign(target, convert)
        self.code.line("pos = _end")

    def array(self, f: FieldSpec, target: str, nullable: bool, depth: int) -> None:
        count = f"_n{depth}"
        if f.compact_in(self.version, self.flexible):
            self.read_uvarint_into(count)
            self.code.line(f"{count} -= 1")
        else:
            self.read_length_into(count, "array")
        elem_size = max(1, min_value_size(f.element(), self.version, self.flexible))
        scaled = count if elem_size == 1 else f"{count} * {elem_size}"
        bad = f"{count} < 0 or {scaled} > _blen - pos"
        if nullable:
            with self.code.block(f"if {count} == -1:"):
                self.assign(target, "None")
            with self.code.block(f"elif {bad}:"):
                self.raise_("bad_length", f'"{f.attr}"', count)
            with self.code.block("else:"):
                self.array_items(f, target, count, scaled, depth)
        else:
            with self.code.block(f"if {bad}:"):
                self.raise_("bad_length", f'"{f.attr}"', count)
            self.array_items(f, target, count, scaled, depth)

    def array_items(self, f: FieldSpec, target: str, count: str, scaled: str, depth: int) -> None:
        if f.struct is None and f.is_fixed_element and f.type_name != "uuid":
            fmt = FIXED_FORMATS[f.type_name]
            unpack = self.symbols.alias("_struct_unpack_from")
            self.assign(target, f'list({unpack}(f">{{{count}}}{fmt}", buf, pos))')
            self.code.line(f"pos += {scaled}")
            return
        self.assign(target, "[]")
        with self.code.block(f"for _ in range({count}):"):
            self.code.line(f"{target}.append({self.element(f, depth + 1)})")

    def element(self, f: FieldSpec, depth: int) -> str:
        """Emit the decoding of one array element; return an expression for it."""
        if f.struct is not None:
            return self.struct_body(f.struct, depth)
        item = self.names.name(f"_item{depth}", element_type(f))
        self.value(f.element(), item, False, depth)
        return item

    def struct_value(self, spec: StructSpec, target: str, nullable: bool, depth: int) -> None:
        if not nullable:
            self.assign(target, self.struct_body(spec, depth + 1))
            return
        # A nullable struct is preceded by an int8 marker; a negative marker means null (KIP-893).
        self.code.line("_marker = buf[pos]")
        self.code.line("pos += 1")
        with self.code.block("if _marker > 127:"):
            self.assign(target, "None")
        with self.code.block("else:"):
            self.assign(target, self.struct_body(spec, depth + 1))

    # -- tagged fields ----------------------------------------------------------------------------

    def tagged_section(self, spec: StructSpec, depth: int, values: dict[str, str]) -> None:
        tagged = spec.tagged_fields(self.version)
        if not tagged:
            with self.code.block("if buf[pos]:"):
                self.code.line(f"pos = {self.symbols.helper('skip_tagged_fields')}(buf, pos)")
            with self.code.block("else:"):
                self.code.line("pos += 1")
            return
        if len(tagged) > MAX_TAGGED_FIELDS:
            raise SchemaError(f"{spec.qualname}: too many tagged fields")
        for f in tagged:
            # Absent tags keep their default, which may be null even where the wire value is not.
            holds_null = f.nullable_in(self.version) or f.default is None
            target = self.names.name(f"{f.attr}_{depth}", local_type(f, holds_null))
            self.assign(target, default_literal(f, self.symbols))
            values[f.attr] = target
        count = f"_nt{depth}"
        tag_end = f"_tag_end{depth}"
        read_uvarint = self.symbols.helper("read_unsigned_varint")
        self.read_uvarint_into(count)
        with self.code.block(f"for _ in range({count}):"):
            self.code.line(f"_tag, pos = {read_uvarint}(buf, pos)")
            self.code.line(f"_size{depth}, pos = {read_uvarint}(buf, pos)")
            self.code.line(f"{tag_end} = pos + _size{depth}")
            with self.code.block(f"if {tag_end} > _blen:"):
                self.raise_("truncated", '"tagged field"')
            for index, f in enumerate(tagged):
                with self.code.block(f"{'if' if index == 0 else 'elif'} _tag == {f.tag}:"):
                    self.value(f, values[f.attr], f.nullable_in(self.version), depth + 1)
                    with self.code.block(f"if pos != {tag_end}:"):
                        self.raise_("bad_length", f'"{f.attr}"', f"_size{depth}")
            with self.code.block("else:"):
                self.code.line(f"pos = {tag_end}  # unknown tag: skipped (KIP-482)")


def emit_decoder(
    symbols: ModuleSymbols, root: StructSpec, version: int, flexible: bool, function_name: str
) -> str:
    """Source of `def function_name(buf, pos) -> tuple[Root, int]` for one version."""
    code = Code()
    with code.block(f"def {function_name}(buf: memoryview, pos: int) -> tuple[{root.qualname}, int]:"):
        code.line("_blen = len(buf)")
        result = DecoderEmitter(symbols, version, flexible, code).struct_body(root, 0)
        line = f"return {result}, pos"
        if len(INDENT * code.level + line) <= MAX_LINE:
            code.line(line)
        else:
            with code.block("return ("):
                code.line(f"{result},")
                code.line("pos,")
            code.line(")")
    return code.text()
