"""Emits one straight-line encoding function per message version.

The generated function appends to the writer's bytearray (`out`) directly; adjacent fixed-width fields
share one `pack` call and nested structs are written inline.  Records go through `write_records`, which
may splice an opaque records object into the writer instead of copying it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from tools.codegen.codewriter import Code, LocalNames, ModuleSymbols, bytes_literal
from tools.codegen.decoder import MAX_TAGGED_FIELDS
from tools.codegen.pytypes import element_type, local_type, non_default_test
from tools.codegen.schema import FIXED_FORMATS, FIXED_SIZES, FieldSpec, SchemaError, StructSpec

_USES_OUT = re.compile(r"\bout\b")


class EncoderEmitter:
    """Writes the body of one `_encode_*_vN(msg, w)` function."""

    def __init__(self, symbols: ModuleSymbols, version: int, flexible: bool, code: Code) -> None:
        self.symbols = symbols
        self.version = version
        self.flexible = flexible
        self.code = code
        self.names = LocalNames()
        self.out = "out"  # the bytearray being appended to; a scratch buffer inside tagged fields

    @contextmanager
    def writing_to(self, buffer_name: str) -> Iterator[None]:
        saved = self.out
        self.out = buffer_name
        try:
            yield
        finally:
            self.out = saved

    def assign(self, name: str, expr: str) -> None:
        self.code.line(self.names.assignment(name, expr))

    def write_uvarint(self, expr: str) -> None:
        """Append an unsigned varint, with the one-byte case inline."""
        with self.code.block(f"if {expr} < 128:"):
            self.code.line(f"{self.out}.append({expr})")
        with self.code.block("else:"):
            self.code.line(f"{self.out} += {self.symbols.helper('encode_unsigned_varint')}({expr})")

    # -- structs ----------------------------------------------------------------------------------

    def struct_body(self, spec: StructSpec, obj: str, depth: int) -> None:
        """Emit the encoding of the struct held in local `obj`."""
        self.check_absent_fields(spec, obj)
        for group in spec.wire_groups(self.version):
            f = group[0]
            if f.is_fixed:
                self.fixed_run(group, obj)
            else:
                self.value(f, f"{obj}.{f.attr}", f.nullable_in(self.version), depth)
        if self.flexible:
            self.tagged_section(spec, obj, depth)
        elif spec.tagged_fields(self.version):
            raise SchemaError(f"{spec.qualname}: tagged fields in non-flexible v{self.version}")

    def check_absent_fields(self, spec: StructSpec, obj: str) -> None:
        """Like Kafka, refuse to silently drop a non-default value the version cannot carry,
        unless the schema marks the field ignorable."""
        for f in spec.absent_fields(self.version):
            if f.ignorable:
                continue
            with self.code.block(f"if {non_default_test(f, f'{obj}.{f.attr}', self.symbols)}:"):
                message = f"{f.attr} is set, but this version cannot carry it"
                self.code.line(f'raise {self.symbols.helper("EncodeError")}("{message}")')

    def fixed_run(self, run: list[FieldSpec], obj: str) -> None:
        fmt = "".join(FIXED_FORMATS[f.type_name] for f in run)
        args = [f"{obj}.{f.attr}.bytes" if f.type_name == "uuid" else f"{obj}.{f.attr}" for f in run]
        self.code.line(f"{self.out} += {self.symbols.pack(fmt)}({', '.join(args)})")

    def not_null(self, f: FieldSpec, expr: str, base: str) -> str:
        """A local holding `expr`, checked not to be None where the type allows None but this
        version cannot encode it."""
        holder = self.names.name(base, local_type(f, True))
        self.assign(holder, expr)
        with self.code.block(f"if {holder} is None:"):
            message = f"{f.attr} is None, but it is not nullable in this version"
            self.code.line(f'raise {self.symbols.helper("EncodeError")}("{message}")')
        return holder

    def value(self, f: FieldSpec, expr: str, nullable: bool, depth: int) -> None:
        """Emit the encoding of one value of field `f`, read from `expr`."""
        if f.is_array:
            self.array(f, expr, nullable, depth)
        elif f.struct is not None:
            self.struct_value(f, expr, nullable, depth)
        elif f.is_fixed:
            value = f"{expr}.bytes" if f.type_name == "uuid" else expr
            self.code.line(f"{self.out} += {self.symbols.pack(FIXED_FORMATS[f.type_name])}({value})")
        elif f.type_name == "records":
            if self.out != "out":
                raise SchemaError(f"{f.name}: records cannot be tagged")
            compact = f.compact_in(self.version, self.flexible)
            self.code.line(f"{self.symbols.helper('write_records')}(w, {expr}, {compact}, {nullable})")
        else:
            self.length_prefixed(f, expr, nullable)

    # -- variable-length values -------------------------------------------------------------------

    def length_prefixed(self, f: FieldSpec, expr: str, nullable: bool) -> None:
        """string or bytes: a length prefix, then the bytes."""
        compact = f.compact_in(self.version, self.flexible)
        is_string = f.type_name == "string"
        if nullable:
            holder = self.names.name("_str" if is_string else "_raw", local_type(f, True))
            self.assign(holder, expr)
            with self.code.block(f"if {holder} is None:"):
                null = bytes_literal(b"\xff" * (2 if is_string else 4))
                self.code.line(f"{self.out}.append(0)" if compact else f"{self.out} += {null}")
            with self.code.block("else:"):
                self.write_payload(f, holder, compact)
        elif f.ever_nullable:
            self.write_payload(f, self.not_null(f, expr, "_str" if is_string else "_raw"), compact)
        else:
            self.write_payload(f, expr, compact)

    def write_payload(self, f: FieldSpec, expr: str, compact: bool) -> None:
        if f.type_name == "string":
            data = self.names.name("_utf8", "bytes")
            self.assign(data, f"{expr}.encode()")
        else:
            data = self.names.name("_data", element_type(f))
            self.assign(data, expr)
        if compact:
            self.code.line(f"_n = len({data}) + 1")
            if f.type_name == "string":
                with self.code.block("if _n < 128:"):
                    self.code.line(f"{self.out}.append(_n)")
                with self.code.block("else:"):
                    length = f'{self.symbols.helper("compact_length")}(_n, "{f.attr}")'
                    self.code.line(f"{self.out} += {length}")
            else:
                self.write_uvarint("_n")
        else:
            fmt = "h" if f.type_name == "string" else "i"
            self.code.line(f"{self.out} += {self.symbols.pack(fmt)}(len({data}))")
        self.code.line(f"{self.out} += {data}")

    def array(self, f: FieldSpec, expr: str, nullable: bool, depth: int) -> None:
        compact = f.compact_in(self.version, self.flexible)
        if not nullable and f.ever_nullable:
            self.array_items(f, self.not_null(f, expr, f"_s{depth}"), compact, depth)
            return
        items = self.names.name(f"_s{depth}", local_type(f, nullable))
        self.assign(items, expr)
        if nullable:
            with self.code.block(f"if {items} is None:"):
                null = bytes_literal(b"\xff\xff\xff\xff")
                self.code.line(f"{self.out}.append(0)" if compact else f"{self.out} += {null}")
            with self.code.block("else:"):
                self.array_items(f, items, compact, depth)
        else:
            self.array_items(f, items, compact, depth)

    def array_items(self, f: FieldSpec, items: str, compact: bool, depth: int) -> None:
        if compact:
            self.code.line(f"_n = len({items}) + 1")
            self.write_uvarint("_n")
        else:
            self.code.line(f"{self.out} += {self.symbols.pack('i')}(len({items}))")
        if f.struct is None and f.is_fixed_element and f.type_name != "uuid":
            fmt = FIXED_FORMATS[f.type_name]
            pack = self.symbols.alias("_struct_pack")
            self.code.line(f'{self.out} += {pack}(f">{{len({items})}}{fmt}", *{items})')
            return
        item = self.names.name(f"_item{depth + 1}", element_type(f))
        self.names.mark_assigned(item)
        with self.code.block(f"for {item} in {items}:"):
            if f.struct is not None:
                self.struct_body(f.struct, item, depth + 1)
            else:
                self.value(f.element(), item, False, depth + 1)

    def struct_value(self, f: FieldSpec, expr: str, nullable: bool, depth: int) -> None:
        assert f.struct is not None
        if not nullable and f.ever_nullable:
            self.struct_body(f.struct, self.not_null(f, expr, f"_obj{depth + 1}"), depth + 1)
            return
        obj = self.names.name(f"_obj{depth + 1}", local_type(f, nullable))
        self.assign(obj, expr)
        if not nullable:
            self.struct_body(f.struct, obj, depth + 1)
            return
        # A nullable struct is preceded by an int8 marker: -1 for null, 1 otherwise (KIP-893).
        with self.code.block(f"if {obj} is None:"):
            self.code.line(f"{self.out}.append(255)")
        with self.code.block("else:"):
            self.code.line(f"{self.out}.append(1)")
            self.struct_body(f.struct, obj, depth + 1)

    # -- tagged fields ----------------------------------------------------------------------------

    def tagged_section(self, spec: StructSpec, obj: str, depth: int) -> None:
        """Known tagged fields are written only when they differ from their defaults, as Kafka does."""
        tagged = spec.tagged_fields(self.version)
        if not tagged:
            self.code.line(f"{self.out}.append(0)  # no tagged fields")
            return
        if len(tagged) > MAX_TAGGED_FIELDS:
            raise SchemaError(f"{spec.qualname}: too many tagged fields")
        tests = [non_default_test(f, f"{obj}.{f.attr}", self.symbols) for f in tagged]
        count = self.names.name(f"_nt{depth}", "int")
        self.assign(count, "0")
        for test in tests:
            with self.code.block(f"if {test}:"):
                self.code.line(f"{count} += 1")
        self.code.line(f"{self.out}.append({count})")
        for f, test in zip(tagged, tests, strict=True):
            with self.code.block(f"if {test}:"):
                self.tagged_value(f, obj, depth)

    def tagged_value(self, f: FieldSpec, obj: str, depth: int) -> None:
        """Tag, size, then the value; the size of a variable-width value comes from a scratch buffer."""
        tag = f.tag or 0
        uvarint = self.symbols.helper("encode_unsigned_varint")
        if f.is_fixed and tag < 128:
            self.code.line(f"{self.out} += {bytes_literal(bytes((tag, FIXED_SIZES[f.type_name])))}")
            self.value(f, f"{obj}.{f.attr}", False, depth)
            return
        scratch = self.names.name(f"_tagged{depth}", "bytearray")
        self.assign(scratch, "bytearray()")
        with self.writing_to(scratch):
            self.value(f, f"{obj}.{f.attr}", f.nullable_in(self.version), depth)
        self.code.line(
            f"{self.out} += {bytes_literal(bytes((tag,)))}"
            if tag < 128
            else f"{self.out} += {uvarint}({tag})"
        )
        self.code.line(f"{self.out} += {uvarint}(len({scratch}))")
        self.code.line(f"{self.out} += {scratch}")


def emit_encoder(
    symbols: ModuleSymbols, root: StructSpec, version: int, flexible: bool, function_name: str
) -> str:
    """Source of `def function_name(msg, w) -> None` for one version."""
    code = Code()
    writer = symbols.helper("Writer")
    with code.block(f"def {function_name}(msg: {root.qualname}, w: {writer}) -> None:"):
        body = Code(level=code.level)
        EncoderEmitter(symbols, version, flexible, body).struct_body(root, "msg", 0)
        if not body.lines:
            code.line("pass  # nothing to write in this version")
        elif any(_USES_OUT.search(line) for line in body.lines):
            code.line("out = w.buf")
        code.lines.extend(body.lines)
    return code.text()
